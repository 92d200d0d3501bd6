"""Keras backend: :func:`deepmr_kipoi.predictive.from_keras` members (imported lazily).

Works with Keras 3 (``keras``) and Keras 2 (``tf_keras``, legacy h5 models) models; which one a
model belongs to is read from its class.

Receptive-field caching: where PyTorch is installed and every layer of the model has a PyTorch
counterpart (:mod:`~deepmr_kipoi.predictive._keras_torch`), the member rebuilds the network in
PyTorch, checks the rebuilt network against the Keras model on its first batch, and from then on
predicts with it: sequences as full passes, mutants through the receptive-field cache. Otherwise
(a layer it cannot follow, named in :attr:`KerasMember.ism_reason`, or a failed check) the Keras
model runs full passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive._member import DropoutLayer, MaskFn, Member, output_to_2d
from deepmr_kipoi.predictive.transforms import apply_transforms

logger = logging.getLogger(__name__)

# GaussianDropout/AlphaDropout are not handled: they are not a 0/1 mask times 1/(1 - rate)
_ELEMENT = ("Dropout",)
_CHANNEL = ("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D")


def _to_numpy(t) -> np.ndarray:
    if hasattr(t, "numpy"):
        t = t.numpy()
    return np.asarray(t)


def _walk(layer):
    for sub in getattr(layer, "layers", ()):
        yield sub
        yield from _walk(sub)


def _is_keras_model(model) -> bool:
    root = type(model).__module__.split(".")[0]
    return (
        root in ("keras", "tf_keras", "tensorflow") and hasattr(model, "layers") and callable(model)
    )


class KerasMember(Member):
    """A Keras model as a deterministic member (see :func:`deepmr_kipoi.predictive.from_keras`)."""

    backend = "keras"

    def __init__(
        self,
        model,
        feature_names,
        layout: str = "NLC",
        alphabet: str = "ACGT",
        output: Callable | None = None,
        transforms=None,
        sequence_length: int | None = None,
        fast_ism: bool = True,
    ):
        if not _is_keras_model(model):
            raise DeepMRInputError(
                f"from_keras needs a Keras model (keras or tf_keras), got {type(model).__name__}"
            )
        if output is not None and not callable(output):
            raise DeepMRInputError(
                "output must be a callable mapping the raw model output to an (N, F) array"
            )
        self.model = model
        self.output = output
        super().__init__(feature_names, alphabet, layout, sequence_length, transforms)
        self._dropout = []
        for layer in _walk(model):
            kind = type(layer).__name__
            if kind in _ELEMENT + _CHANNEL:
                info = DropoutLayer(layer.name, float(layer.rate), kind in _CHANNEL)
                self._dropout.append((layer, info))
        # the PyTorch rebuild: None not tried yet, False unavailable (see _rebuilt)
        self._torch = None if fast_ism else False
        self._torch_reason = (
            "fast_ism=False" if not fast_ism else "not decided yet: the first batch decides"
        )

    @property
    def dropout_layers(self) -> tuple[DropoutLayer, ...]:
        return tuple(info for _, info in self._dropout)

    @property
    def fast_ism(self) -> bool:
        """True when the network runs rebuilt in PyTorch with its receptive-field cache."""
        rebuilt = self._rebuilt()
        return rebuilt is not None and rebuilt.fast_ism

    @property
    def ism_path(self) -> str:
        rebuilt = self._rebuilt()
        return rebuilt.ism_path if rebuilt is not None else "full"

    @property
    def ism_reason(self) -> str:
        rebuilt = self._rebuilt()
        if rebuilt is None:
            return self._torch_reason
        return f"rebuilt in PyTorch: {rebuilt.ism_reason}"

    def _rebuilt(self, x=None):
        """The PyTorch member of the rebuilt network, checked against Keras on ``x`` (prepared
        input; default: four seeded random sequences), or None where it is not available."""
        if self._torch is not None:
            return self._torch or None
        if x is None:
            if self.sequence_length is None:
                return None  # the first batch decides
            from deepmr_kipoi import sequences

            x = self.prepare(sequences.random_sequences(4, self.sequence_length, seed=0))
        self._torch = False
        try:
            import torch

            from deepmr_kipoi.predictive._fastism_trace import Unsupported
            from deepmr_kipoi.predictive._keras_torch import keras_to_torch
            from deepmr_kipoi.predictive._torch import OPTIMIZE_RTOL, TorchMember, TorchOptions
        except ImportError:
            self._torch_reason = "PyTorch is not installed: the Keras model runs full passes"
            return None
        try:
            # ordinary tensors even when the first call comes inside torch.inference_mode()
            with torch.inference_mode(False):
                module = keras_to_torch(self.model)
        except Unsupported as err:
            self._torch_reason = f"{err}: the Keras model runs full passes"
            logger.info("fast ISM off for the Keras model (%s)", err)
            return None
        options = TorchOptions(
            layout=self.layout,
            alphabet=self.alphabet,
            output=self.output,
            sequence_length=self.sequence_length,
            device="cpu",
        )
        member = TorchMember(module, self.feature_names, options)
        rows = x[:4]
        want = self._keras_forward(rows, rows.shape[0], None)
        try:
            got = member._forward(torch.from_numpy(np.ascontiguousarray(rows)), rows.shape[0], None)
        except Exception as exc:  # noqa: BLE001 - e.g. an output mapping written for Keras tensors
            self._torch_reason = (
                f"the PyTorch rebuild's outputs fail ({type(exc).__name__}: {exc}): "
                "the Keras model runs full passes"
            )
            logger.warning("fast ISM off for the Keras model (%s)", self._torch_reason)
            return None
        err = float(np.abs(got - want).max())
        if not err <= OPTIMIZE_RTOL * (float(np.abs(want).max()) or 1.0):
            self._torch_reason = (
                f"the PyTorch rebuild differs from the Keras model by {err:.3g}: "
                "the Keras model runs full passes"
            )
            logger.warning("fast ISM off for the Keras model (%s)", self._torch_reason)
            return None
        self._torch = member
        return member

    def _forward(self, x, n: int, masks: MaskFn | None) -> np.ndarray:
        rebuilt = self._rebuilt(x)
        if rebuilt is None:
            return self._keras_forward(x, n, masks)
        import torch

        return rebuilt._forward(torch.from_numpy(np.ascontiguousarray(x)), n, masks)

    def predict_mutants(self, reference, mutants, masks: MaskFn | None = None) -> np.ndarray:
        """Mutants of one reference, through the PyTorch rebuild's cache where there is one.

        Returns
        -------
        numpy.ndarray, shape (M, F), float32
        """
        return self.predict_mutants_samples(reference, mutants, [masks])[0]

    def predict_mutants_samples(self, reference, mutants, masks_list) -> np.ndarray:
        """Mutants of one reference under several MC-dropout mask sets (see
        :meth:`TorchMember.predict_mutants_samples`); full Keras passes without the rebuild.

        Returns
        -------
        numpy.ndarray, shape (S, M, F), float32
        """
        rebuilt = self._rebuilt(self.prepare(np.asarray(mutants, dtype=np.float32)[:4]))
        if rebuilt is None:
            return np.stack([self.predict(mutants, m) for m in masks_list])
        raw = rebuilt.predict_mutants_samples(reference, mutants, masks_list)
        return np.stack([apply_transforms(r, self.transforms) for r in raw])

    def _keras_forward(self, x, n: int, masks: MaskFn | None) -> np.ndarray:
        patched = []
        if masks is not None:
            for k, (layer, info) in enumerate(self._dropout):
                layer.call = _masked_call(k, layer, info, masks)
                patched.append(layer)
        try:
            raw = self.model(x, training=False)
        finally:
            for layer in patched:
                # the instance attribute shadowed the class's call; deleting it restores the original
                del layer.call
        out = self.output(raw) if self.output is not None else raw
        return output_to_2d(out, n, len(self.feature_names), _to_numpy)


def _mask_shape(layer, info: DropoutLayer, shape: tuple) -> tuple:
    if info.channelwise:
        channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
        if channels_first:
            return (shape[0],) + (1,) * (len(shape) - 1)
        return (1,) * (len(shape) - 1) + (shape[-1],)
    noise = getattr(layer, "noise_shape", None)
    if noise is None:
        return shape
    # a user noise_shape (batch axis first) shares one draw along its 1-axes
    return tuple(s if ns is None else int(ns) for s, ns in zip(shape, tuple(noise)[1:]))


def _masked_call(k: int, layer, info: DropoutLayer, masks: MaskFn):
    def call(inputs, training=None, **kwargs):
        shape = tuple(int(s) for s in inputs.shape[1:])
        mask = masks(k, _mask_shape(layer, info, shape), info.rate)
        return inputs * mask

    return call
