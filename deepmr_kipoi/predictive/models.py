"""The predictive-model protocol and its sampled models: deep ensembles, MC dropout, one member.

The protocol, the samples and how ISM pairs a mutant with its reference are described in
:mod:`deepmr_kipoi.predictive`; :func:`move_to_device` puts a model's PyTorch members on a device.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from deepmr_kipoi import sequences
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive._member import Member

logger = logging.getLogger(__name__)


@runtime_checkable
class PredictiveModel(Protocol):
    """What the ISM engine and the pipeline need from a model with uncertainty.

    Attributes
    ----------
    feature_names : tuple of str, length F
    sequence_length : int or None
        Input length the model needs, when fixed.
    alphabet : str
        The model's own channel order (inputs are always ACGT; this is provenance).
    n_samples : int
        S, the number of deterministic samples (1: no uncertainty, effect SEs are undefined).

    Optional attribute ``fast_ism`` (bool, default False): when True the ISM engine hands each
    reference's mutants to :meth:`predict_mutants` (so it can reuse the reference's computation)
    instead of batching mutants of several references together through :meth:`predict_samples`.
    """

    feature_names: tuple[str, ...]
    sequence_length: int | None
    alphabet: str
    n_samples: int

    def predict_samples(self, onehot, batch_size: int | None = None) -> np.ndarray:
        """``(N, L, 4)`` ACGT one-hot -> ``(S, N, F)`` float32."""
        ...

    def predict_mutants(self, reference, mutants) -> np.ndarray:
        """``reference (L, 4)`` and its ``mutants (M, L, 4)`` -> ``(S, M, F)`` float32."""
        ...


def _check_members(members) -> list[Member]:
    members = list(members)
    if not members:
        raise DeepMRInputError(
            "no members given; pass at least one from_torch/from_keras/from_function member"
        )
    for m in members:
        if not isinstance(m, Member):
            raise DeepMRInputError(
                f"members must be from_torch/from_keras/from_function members, got {type(m).__name__}"
            )
    names = members[0].feature_names
    for i, m in enumerate(members[1:], 1):
        if m.feature_names != names:
            raise DeepMRInputError(
                f"member {i} has different feature_names from member 0; all members must agree"
            )
    lengths = {m.sequence_length for m in members} - {None}
    if len(lengths) > 1:
        raise DeepMRInputError(
            f"members need different sequence lengths {sorted(lengths)}; use one architecture"
        )
    return members


class _SampledModel:
    """Shared behaviour of the predictive models: batching, validation, the mutant hook."""

    def __init__(self, members: Sequence[Member]):
        self._members = _check_members(members)
        self.feature_names = self._members[0].feature_names
        lengths = {m.sequence_length for m in self._members} - {None}
        self.sequence_length = lengths.pop() if lengths else None
        self.alphabet = self._members[0].alphabet

    @property
    def members(self) -> tuple[Member, ...]:
        """The deterministic members."""
        return tuple(self._members)

    def rename_features(self, names: Sequence[str]) -> None:
        """Give the outputs new names (same order, same number); the predictions are unchanged.

        Raises
        ------
        DeepMRInputError
            A different number of names than outputs, empty or repeated names.
        """
        names = tuple(str(n) for n in names)
        if len(names) != len(self.feature_names):
            raise DeepMRInputError(
                f"{len(names)} feature names given for a model with {len(self.feature_names)} outputs "
                f"({', '.join(self.feature_names[:3])}{', ...' if len(self.feature_names) > 3 else ''}); "
                "give one name per output"
            )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated or not all(names):
            raise DeepMRInputError(
                f"feature names must be unique and non-empty (repeated: {', '.join(repeated) or 'none'})"
            )
        for member in self._members:
            member.feature_names = names
        self.feature_names = names

    @property
    def fast_ism(self) -> bool:
        """True when every member caches the reference's computation for its mutants."""
        return all(m.fast_ism for m in self._members)

    def _check_input(self, onehot, name="onehot") -> np.ndarray:
        x = sequences.check_onehot(onehot, name=name)
        if self.sequence_length is not None and x.shape[1] != self.sequence_length:
            raise DeepMRInputError(
                f"{name} has length {x.shape[1]} but the model takes {self.sequence_length}; resize the "
                "sequences (sequences.resize_center / read_fasta(length=...))"
            )
        return x

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_samples(self, onehot, batch_size: int | None = None) -> np.ndarray:
        """Predict every sample on every sequence.

        Parameters
        ----------
        onehot : array_like, shape (N, L, 4)
            ACGT one-hot; N bases as all-zero columns.
        batch_size : int, optional
            Sequences per forward pass (default: all at once).

        Returns
        -------
        numpy.ndarray, shape (S, N, F), float32 (float64 where the model computes in float64)
            Transformed predictions of each sample.
        """
        x = self._check_input(onehot)
        n = x.shape[0]
        if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
            raise DeepMRInputError(
                f"batch_size must be a positive integer or None, got {batch_size!r}"
            )
        step = n if batch_size is None else int(batch_size)
        out = None
        for a in range(0, n, max(step, 1)):
            batch = self._predict_batch(x[a : a + step])
            if out is None or batch.dtype.itemsize > out.dtype.itemsize:
                # a float64 model keeps its precision (the rows done so far are exact in it)
                dtype = np.float64 if batch.dtype == np.float64 else np.float32
                wider = np.empty((self.n_samples, n, len(self.feature_names)), dtype=dtype)
                if out is not None:
                    wider[:, :a] = out[:, :a]
                out = wider
            out[:, a : a + step] = batch
        if out is None:  # no sequences
            out = np.empty((self.n_samples, 0, len(self.feature_names)), dtype=np.float32)
        return out

    def predict_mutants(self, reference, mutants) -> np.ndarray:
        """Predict the mutants of one reference (the fast-ISM hook: members may cache the reference).

        Parameters
        ----------
        reference : array_like, shape (L, 4)
            The ACGT one-hot reference the mutants derive from.
        mutants : array_like, shape (M, L, 4)

        Returns
        -------
        numpy.ndarray, shape (S, M, F), float32
        """
        ref = np.asarray(reference)
        mut = self._check_input(mutants, name="mutants")
        if ref.shape != mut.shape[1:]:
            raise DeepMRInputError(
                f"reference has shape {ref.shape} but mutants have {mut.shape[1:]}; they must match"
            )
        return self._predict_mutants(ref, mut)

    def _predict_mutants(self, reference: np.ndarray, mutants: np.ndarray) -> np.ndarray:
        return np.stack([m.predict_mutants(reference, mutants) for m in self._members])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_samples={self.n_samples}, features={len(self.feature_names)}, "
            f"backend={self._members[0].backend})"
        )


class DeepEnsemble(_SampledModel):
    """Independently trained members as samples (a deep ensemble, Lakshminarayanan et al. 2017).

    Parameters
    ----------
    members : sequence of Member, length S >= 1
        Members with equal ``feature_names`` (e.g. one architecture, several training seeds, or any
        predictive functions).

    Notes
    -----
    Members that take the same prepared input (same backend, alphabet, layout, device) share one
    conversion of every batch, so an ensemble converts each mutant batch once.
    """

    def __init__(self, members: Sequence[Member]):
        super().__init__(members)
        if len(self._members) == 1:
            logger.warning(
                "DeepEnsemble of one member: effect standard errors are undefined (S = 1)"
            )

    @property
    def n_samples(self) -> int:
        return len(self._members)

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        prepared, out = {}, []
        for m in self._members:
            key = m.input_key
            if key not in prepared:
                prepared[key] = m.prepare(x)
            out.append(m.predict_prepared(prepared[key], x.shape[0]))
        return np.stack(out)  # float32, or float64 where a member computes in float64


class Deterministic(_SampledModel):
    """A single deterministic model: S = 1, so effects have no standard error (SE is NaN).

    Parameters
    ----------
    member : Member
    """

    n_samples = 1

    def __init__(self, member: Member):
        super().__init__([member])

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        m = self._members[0]
        return m.predict_prepared(m.prepare(x), x.shape[0])[None]


class MCDropout(_SampledModel):
    """Monte-Carlo dropout with a fixed dropout mask per sample (Gal & Ghahramani 2016).

    Sample s runs the network in inference mode (BatchNorm uses its running statistics) with every
    dropout layer replaced by multiplication with a fixed mask: keep each unit with probability
    ``1 - rate`` and scale it by ``1 / (1 - rate)``. The mask has one example's activation shape (one
    draw per channel for channel/spatial dropout) and is broadcast over the batch, so sample s is one
    deterministic function, used for the reference and every mutant alike (paired draws).

    Parameters
    ----------
    member : Member
        A torch member with ``nn.Dropout``/``Dropout1d``/``Dropout2d``/``Dropout3d`` modules or a Keras
        member with ``Dropout``/``SpatialDropout*`` layers. Dropout applied through a functional call
        inside ``forward`` (``F.dropout``) cannot be masked and is off in inference mode.
    n_samples : int, >= 2
        S, the number of mask draws.
    seed : int
        Masks are drawn from ``numpy.random.default_rng([seed, s, layer])``: the same seed gives the
        same masks, whatever the batch sizes or the order of calls.
    """

    def __init__(self, member: Member, n_samples: int = 30, seed: int = 0):
        super().__init__([member])
        if not member.dropout_layers:
            raise DeepMRInputError(
                f"the {member.backend} model has no dropout layer, so MC dropout gives no uncertainty; "
                "use DeepEnsemble([...]) of independently trained models instead"
            )
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 2:
            raise DeepMRInputError(
                f"n_samples must be an integer >= 2 (got {n_samples!r}); use Deterministic for S = 1"
            )
        if int(seed) != seed:
            raise DeepMRInputError(f"seed must be an integer, got {seed!r}")
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self._masks: dict[tuple, np.ndarray] = {}
        for layer in member.dropout_layers:
            if not 0.0 <= layer.rate < 1.0:
                raise DeepMRInputError(
                    f"dropout layer {layer.name} has rate {layer.rate}; MC dropout needs 0 <= rate < 1"
                )

    def mask(self, sample: int, layer: int, shape: tuple, rate: float) -> np.ndarray:
        """The fixed mask of one sample and dropout layer.

        Parameters
        ----------
        sample, layer : int
            Sample index s and dropout-layer index (order of ``member.dropout_layers``).
        shape : tuple of int
            Mask shape: one example's activation shape, 1 on broadcast axes.
        rate : float
            Drop probability.

        Returns
        -------
        numpy.ndarray of ``shape``, float32
            0 for dropped units, ``1 / (1 - rate)`` for kept ones.
        """
        key = (sample, layer, shape, rate)
        m = self._masks.get(key)
        if m is None:
            rng = np.random.default_rng([self.seed, sample, layer])
            keep = rng.random(shape) >= rate
            m = (keep / (1.0 - rate)).astype(np.float32)
            self._masks[key] = m
        return m

    def _predict_mutants(self, reference: np.ndarray, mutants: np.ndarray) -> np.ndarray:
        m = self._members[0]
        masks = [
            lambda k, shape, rate, s=s: self.mask(s, k, shape, rate) for s in range(self.n_samples)
        ]
        if hasattr(m, "predict_mutants_samples"):
            # the receptive-field cache computes what precedes the first dropout layer once
            return m.predict_mutants_samples(reference, mutants, masks)
        return np.stack([m.predict_mutants(reference, mutants, masks=f) for f in masks])

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        m = self._members[0]
        prepared = m.prepare(x)
        return np.stack(
            [
                m.predict_prepared(
                    prepared,
                    x.shape[0],
                    masks=lambda k, shape, rate, s=s: self.mask(s, k, shape, rate),
                )
                for s in range(self.n_samples)
            ]
        )


def move_to_device(model, device: str = "auto") -> str:
    """Put the PyTorch members of a model on a device; other members are left as they are.

    Parameters
    ----------
    model : PredictiveModel
        A ``DeepEnsemble``, ``MCDropout`` or ``Deterministic`` (anything with ``members``).
    device : {"auto", "cpu", "cuda"} or str
        ``"auto"``: CUDA when torch sees a GPU, else the CPU.

    Returns
    -------
    str
        The device the PyTorch members run on (``"cpu"`` when the model has none).
    """
    torch_members = [
        m for m in getattr(model, "members", ()) if getattr(m, "backend", "") == "torch"
    ]
    if not torch_members:
        if device not in ("auto", "cpu", None):
            raise DeepMRInputError(
                f"--device {device} applies to PyTorch models; this model has no PyTorch members "
                "(use --device auto or cpu)"
            )
        return "cpu"
    from deepmr_kipoi.predictive._torch import resolve_device

    target = resolve_device(device)
    for member in torch_members:
        if member.device != target:
            member.module.to(target)
            member.device = target
            member._plan = None  # activations of the cache live on the device
    return str(target)


def first_samples(model, n: int):
    """The model restricted to its first ``n`` samples, without computing the others.

    Parameters
    ----------
    model : PredictiveModel
        S samples.
    n : int
        ``1 <= n <= S``.

    Returns
    -------
    PredictiveModel or None
        ``model`` itself when ``n >= S``; a shallow copy that predicts only samples ``0..n-1`` of a
        :class:`DeepEnsemble` (its first ``n`` members) or :class:`MCDropout` (its first ``n``
        masks: mask ``s`` depends on ``(seed, s)`` only, so they are the same masks); None for any
        other model, whose samples cannot be chosen before it predicts them.
    """
    if n >= int(getattr(model, "n_samples", 0) or 0):
        return model
    if isinstance(model, DeepEnsemble):
        out = copy.copy(model)
        out._members = list(model.members[:n])
        return out
    if isinstance(model, MCDropout):
        out = copy.copy(model)
        out.n_samples = int(n)
        return out
    return None
