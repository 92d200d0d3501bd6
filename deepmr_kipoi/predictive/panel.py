"""A panel of models: several predictive models read together on the same sequences.

A :class:`ModelPanel` puts models side by side under labels, so that an exposure of one model can be
set against an outcome of another (two-sample Mendelian randomization in its literal form: the same
instruments, every point mutation of the same sequences, the exposure's effects from one model and
the outcome's from another). Its features are named ``"{label}/{feature}"``.

Sequences and windows. Every member sees the same common sequences, each through its own input
layout and alphabet (the members convert ACGT one-hot input themselves). The common length ``L`` is
the longest member input; a member that takes ``L_m < L`` bases sees the centred window
``[o_m, o_m + L_m)`` with ``o_m = ceil(L / 2) - ceil(L_m / 2)``, the centring of
``kipoiseq.Interval.resize`` (and :func:`deepmr_kipoi.sequences.resize_center`): it is exactly the
input the member's own dataloader cuts from the same genomic interval. A member that declares no
length takes the whole common sequence. A mutation outside a member's window cannot change its
predictions; the ISM engine does not run it through that member, and its effects on the member's
features are NaN ("not seen"), so it is never an instrument of those features and is dropped from
their fits as an outcome.

Samples. Members keep their own samples (ensemble members, dropout masks), weights, uncertainty and
calibration. The panel's sample ``s`` is the ``s``-th sample of every member: since each member's
samples are exchangeable draws (independently trained members, independently drawn masks), this is
a random pairing of the members' samples, and pairs of samples are independent draws of the joint
model. The panel has ``S = min_m S_m`` samples; members with more use their first ``S`` (a warning
says so) and, for deep ensembles and MC dropout, never compute the others. Pairs of features of
one member keep that member's paired samples, as in a single-model run; pairs across members read
independent errors (see the method page).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import numpy as np

from deepmr_kipoi import sequences
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive.models import first_samples

logger = logging.getLogger(__name__)

__all__ = ["LABEL_PATTERN", "ModelPanel", "member_offset", "split_feature"]

#: A panel label: letters, digits, ``_``, ``.`` and ``-`` (no ``/``, which separates it from the
#: feature in ``"{label}/{feature}"``).
LABEL_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def member_offset(length: int, member_length: int) -> int:
    """Start of a member's centred window in a common sequence of ``length`` bases.

    Parameters
    ----------
    length : int
        L, the common sequence length.
    member_length : int
        L_m <= L, the member's input length.

    Returns
    -------
    int
        ``ceil(L / 2) - ceil(L_m / 2)`` (kipoiseq's centring; for odd ``L - L_m`` the extra base is
        on the left of the window).
    """
    return (int(length) + 1) // 2 - (int(member_length) + 1) // 2


def split_feature(name: str) -> tuple[str, str]:
    """``"label/feature"`` -> ``("label", "feature")`` (the first ``/`` separates them)."""
    label, sep, feature = str(name).partition("/")
    return (label, feature) if sep else ("", label)


def check_label(label) -> str:
    """A panel label, checked: a non-empty string of letters, digits, ``_``, ``.`` or ``-``."""
    if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label):
        raise DeepMRInputError(
            f"panel label {label!r} is not usable; use letters, digits, '_', '.' or '-' "
            "(e.g. --model a=MODEL --model b=MODEL)"
        )
    return label


class ModelPanel:
    """Several predictive models under labels, read on the same sequences.

    Parameters
    ----------
    models : mapping of str to PredictiveModel
        ``{label: model}`` in the order the features are listed; each model with ``S_m >= 1``
        samples, its own alphabet, layout and input length.

    Attributes
    ----------
    labels : tuple of str
    models : tuple of PredictiveModel
    feature_names : tuple of str
        ``"{label}/{feature}"`` of every member's features, members in order.
    feature_groups : ndarray of int64, shape (F,)
        The member index of every feature.
    sequence_length : int or None
        The longest member input (None when no member declares one).
    n_samples : int
        ``min_m S_m``.
    sample_counts : tuple of int
        Every member's own ``S_m``; ``models`` holds each restricted to its first ``n_samples``
        samples (:func:`~deepmr_kipoi.predictive.models.first_samples`), so the others are never
        computed.
    alphabet : str
        ``"ACGT"``: the panel takes ACGT input; each member converts it to its own alphabet.
    """

    alphabet = "ACGT"
    fast_ism = False

    def __init__(self, models: Mapping[str, object]):
        if not isinstance(models, Mapping) or not models:
            raise DeepMRInputError(
                "a model panel needs a mapping {label: model} of at least one model"
            )
        self.labels = tuple(check_label(label) for label in models)
        self.models = tuple(models.values())
        for label, model in zip(self.labels, self.models):
            if not (hasattr(model, "predict_samples") and hasattr(model, "feature_names")):
                raise DeepMRInputError(
                    f"panel member {label!r} is a {type(model).__name__}, not a PredictiveModel "
                    "(feature_names, predict_samples)"
                )
        counts = [int(getattr(m, "n_samples", 1) or 1) for m in self.models]
        self.sample_counts = tuple(counts)
        self.n_samples = min(counts)
        if len(set(counts)) > 1:
            logger.warning(
                "panel members have %s samples; each uses its first %d (the panel pairs the "
                "members' samples one to one)",
                ", ".join(f"{lab}: {c}" for lab, c in zip(self.labels, counts)),
                self.n_samples,
            )
            # samples beyond the first S are never computed (ensemble members and dropout masks
            # can be chosen before predicting); other models predict them and drop them
            restricted = [first_samples(m, self.n_samples) for m in self.models]
            self.models = tuple(m if r is None else r for m, r in zip(self.models, restricted))
        self.feature_names = tuple(
            f"{label}/{f}" for label, m in zip(self.labels, self.models) for f in m.feature_names
        )
        self.feature_groups = np.concatenate(
            [np.full(len(m.feature_names), i, dtype=np.int64) for i, m in enumerate(self.models)]
        )
        lengths = [getattr(m, "sequence_length", None) for m in self.models]
        known = [int(n) for n in lengths if n is not None]
        self.sequence_length = max(known) if known else None

    @property
    def members(self) -> tuple:
        """Every member's deterministic members (for device placement and provenance)."""
        return tuple(x for m in self.models for x in getattr(m, "members", ()))

    def feature_slices(self) -> list[slice]:
        """The slice of :attr:`feature_names` each member's features take."""
        out, start = [], 0
        for m in self.models:
            out.append(slice(start, start + len(m.feature_names)))
            start += len(m.feature_names)
        return out

    def spans(self, length: int) -> list[tuple[int, int]]:
        """Each member's window ``[o_m, o_m + L_m)`` in a common sequence of ``length`` bases.

        Raises
        ------
        DeepMRInputError
            A member needs more bases than ``length``.
        """
        out = []
        for label, m in zip(self.labels, self.models):
            n = getattr(m, "sequence_length", None)
            if n is None:
                out.append((0, int(length)))
                continue
            if n > length:
                raise DeepMRInputError(
                    f"sequences have {length} bases but panel member {label!r} takes {n}; give "
                    f"sequences of at least {n} bases"
                )
            start = member_offset(length, n)
            out.append((start, start + int(n)))
        return out

    def predict_samples(self, onehot, batch_size: int | None = None) -> np.ndarray:
        """Every member's first S samples on its window of every sequence.

        Parameters
        ----------
        onehot : array_like, shape (N, L, 4)
            ACGT one-hot common sequences.
        batch_size : int, optional
            Passed to every member.

        Returns
        -------
        numpy.ndarray, shape (S, N, F), float32
        """
        x = sequences.check_onehot(onehot)
        parts = []
        for m, (a, b) in zip(self.models, self.spans(x.shape[1])):
            pred = np.asarray(m.predict_samples(x[:, a:b], batch_size=batch_size))
            parts.append(pred[: self.n_samples].astype(np.float32, copy=False))
        return np.concatenate(parts, axis=-1)

    def predict_mutants(self, reference, mutants) -> np.ndarray:
        """``reference (L, 4)`` and its ``mutants (M, L, 4)`` -> ``(S, M, F)`` float32."""
        ref = np.asarray(reference)
        mut = sequences.check_onehot(mutants, name="mutants")
        parts = []
        for m, (a, b) in zip(self.models, self.spans(mut.shape[1])):
            if getattr(m, "fast_ism", False):
                pred = m.predict_mutants(ref[a:b], mut[:, a:b])
            else:
                pred = m.predict_samples(mut[:, a:b])
            parts.append(np.asarray(pred)[: self.n_samples].astype(np.float32, copy=False))
        return np.concatenate(parts, axis=-1)

    def __repr__(self) -> str:
        inner = ", ".join(f"{lab}={type(m).__name__}" for lab, m in zip(self.labels, self.models))
        return (
            f"ModelPanel({inner}; n_samples={self.n_samples}, features={len(self.feature_names)})"
        )
