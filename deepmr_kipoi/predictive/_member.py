"""Deterministic predictive members: one function from ACGT one-hot ``(N, L, 4)`` to ``(N, F)``.

A member owns the conversion from the library's ACGT ``(N, L, 4)`` one-hot to its model's alphabet and
input layout (:meth:`Member.prepare`), the forward pass, the ``output`` mapping of raw outputs to
``(N, F)`` and the per-feature transforms. Members whose network has dropout layers can run with fixed
dropout masks supplied by :class:`~deepmr_kipoi.predictive.MCDropout`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepmr_kipoi import sequences
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive.transforms import apply_transforms, resolve_transforms

#: ``mask_fn(layer_index, mask_shape, rate) -> float32 array of mask_shape``: the kept units scaled by
#: ``1 / (1 - rate)``, the dropped ones 0; ``mask_shape`` is one example's activation shape with 1 on
#: broadcast axes (channel dropout), and the mask is broadcast over the batch
MaskFn = Callable[[int, tuple, float], np.ndarray]


@dataclass(frozen=True)
class DropoutLayer:
    """A dropout layer that MC dropout can fix a mask for.

    Attributes
    ----------
    name : str
        Layer/module name in the network.
    rate : float
        Drop probability.
    channelwise : bool
        True for channel (spatial) dropout: one draw per channel, shared along the sequence.
    """

    name: str
    rate: float
    channelwise: bool


def model_precision(values) -> np.ndarray:
    """``values`` as float64 when the model gave float64, else as float32.

    Mutant minus reference is taken in this precision: rounding a float64 model's outputs to
    float32 first loses every digit of an effect that is small against the outputs' offset.

    Parameters
    ----------
    values : array_like

    Returns
    -------
    numpy.ndarray
    """
    arr = np.asarray(values)
    return arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=False)


def output_to_2d(out: Any, n: int, n_features: int | None, to_numpy: Callable[[Any], np.ndarray]):
    """Check a member's (post-``output``) prediction and return it as ``(n, F)`` in the model's own
    precision (:func:`model_precision`: float64 where the model computes in float64, else float32)."""
    if isinstance(out, tuple | list | dict):
        raise DeepMRInputError(
            f"the model returned a {type(out).__name__} of outputs; pass output=callable mapping it to one (N, F) array"
        )
    arr = model_precision(to_numpy(out))
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise DeepMRInputError(
            f"the model output has shape {arr.shape}, expected (N={n}, F); pass output=callable that selects "
            "or reduces it to (N, F)"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise DeepMRInputError(
            f"the model gives {arr.shape[1]} features but {n_features} feature_names were given; make them match"
        )
    return arr


class Member:
    """Base class of deterministic members (see the module docstring).

    Parameters
    ----------
    feature_names : sequence of str, length F
    alphabet : str
        The model's channel order, e.g. ``"ACGT"`` or ``"AGCT"``.
    layout : str
        The model's input layout (:data:`deepmr_kipoi.sequences.LAYOUTS`).
    sequence_length : int or None
        The input length the model needs, when fixed.
    transforms : None, str, mapping or sequence
        Per-feature output transforms (:func:`~deepmr_kipoi.predictive.transforms.resolve_transforms`).
    """

    backend = "numpy"

    def __init__(self, feature_names, alphabet, layout, sequence_length, transforms):
        if feature_names is None or isinstance(feature_names, str) or not len(feature_names):
            raise DeepMRInputError(
                "feature_names must be a non-empty list of output names, e.g. ['task_0', 'task_1']"
            )
        self.feature_names = tuple(str(f) for f in feature_names)
        if len(set(self.feature_names)) != len(self.feature_names):
            raise DeepMRInputError(
                "feature_names contain duplicates; give every output a unique name"
            )
        self.alphabet = sequences.check_alphabet(alphabet)
        if layout not in sequences.LAYOUTS:
            raise DeepMRInputError(
                f"layout must be one of {', '.join(sequences.LAYOUTS)}, got {layout!r}"
            )
        self.layout = layout
        if sequence_length is not None and (
            int(sequence_length) != sequence_length or sequence_length < 1
        ):
            raise DeepMRInputError(
                f"sequence_length must be a positive integer or None, got {sequence_length!r}"
            )
        self.sequence_length = None if sequence_length is None else int(sequence_length)
        self.transforms = resolve_transforms(transforms, self.feature_names)

    @property
    def dropout_layers(self) -> tuple[DropoutLayer, ...]:
        """Dropout layers MC dropout can fix masks for (empty: none)."""
        return ()

    @property
    def fast_ism(self) -> bool:
        """Whether :meth:`predict_mutants` reuses the reference's computation (receptive-field caching)."""
        return False

    @property
    def ism_path(self) -> str:
        """How mutants are predicted: ``"cached"`` (receptive-field cache) or ``"full"`` passes."""
        return "full"

    @property
    def ism_reason(self) -> str:
        """Why :attr:`ism_path` is what it is (one line, for run records)."""
        return f"the {self.backend} backend has no receptive-field cache"

    def predict_mutants(self, reference, mutants, masks: MaskFn | None = None) -> np.ndarray:
        """Predict mutants of one reference (here: plain predictions; backends may cache).

        Parameters
        ----------
        reference : array_like, shape (L, 4)
            ACGT one-hot reference the mutants derive from.
        mutants : array_like, shape (M, L, 4)
            ACGT one-hot mutants.
        masks : callable, optional
            Fixed dropout masks (MC dropout).

        Returns
        -------
        numpy.ndarray, shape (M, F), float32
        """
        return self.predict(mutants, masks)

    @property
    def input_key(self) -> tuple:
        """Members with equal keys accept the same prepared input, so an ensemble prepares it once."""
        return (self.backend, self.alphabet, self.layout)

    def prepare(self, onehot: np.ndarray) -> Any:
        """Convert ACGT ``(N, L, 4)`` float32 one-hot to this model's alphabet and layout (numpy)."""
        x = sequences.reorder_alphabet(onehot, sequences.ALPHABET, self.alphabet)
        return np.ascontiguousarray(sequences.to_layout(x, self.layout), dtype=np.float32)

    def _forward(self, x: Any, n: int, masks: MaskFn | None) -> np.ndarray:
        raise NotImplementedError

    def predict_prepared(self, x: Any, n: int, masks: MaskFn | None = None) -> np.ndarray:
        """Predict ``n`` prepared inputs; ``masks`` fixes the dropout masks (None: inference mode).

        Returns
        -------
        numpy.ndarray, shape (n, F), float32
            Transformed predictions.
        """
        if masks is not None and not self.dropout_layers:
            raise DeepMRInputError("this member has no dropout layers to mask")
        return apply_transforms(self._forward(x, n, masks), self.transforms)

    def predict(self, onehot, masks: MaskFn | None = None) -> np.ndarray:
        """Predict ACGT one-hot sequences.

        Parameters
        ----------
        onehot : array_like, shape (N, L, 4)
            ACGT one-hot (N bases as all-zero columns).
        masks : callable, optional
            Fixed dropout masks (used by MC dropout); None runs in inference mode.

        Returns
        -------
        numpy.ndarray, shape (N, F), float32
        """
        x = sequences.check_onehot(onehot)
        if self.sequence_length is not None and x.shape[1] != self.sequence_length:
            raise DeepMRInputError(
                f"sequences have length {x.shape[1]} but the model takes {self.sequence_length}; resize them "
                "(sequences.resize_center)"
            )
        return self.predict_prepared(self.prepare(x), x.shape[0], masks)


class FunctionMember(Member):
    """A member around a numpy function of ACGT one-hot (see :func:`deepmr_kipoi.predictive.from_function`)."""

    backend = "function"

    def __init__(
        self, fn: Callable, feature_names: Sequence[str], sequence_length=None, transforms=None
    ):
        if not callable(fn):
            raise DeepMRInputError(
                f"fn must be callable (N, L, 4) -> (N, F), got {type(fn).__name__}"
            )
        super().__init__(feature_names, "ACGT", "NLC", sequence_length, transforms)
        self.fn = fn

    def _forward(self, x, n, masks):
        return output_to_2d(self.fn(x), n, len(self.feature_names), np.asarray)
