"""Keras backend: :func:`deepmr_kipoi.predictive.from_keras` members (imported lazily).

Works with Keras 3 (``keras``) and Keras 2 (``tf_keras``, legacy h5 models) models; which one a
model belongs to is read from its class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.predictive._member import DropoutLayer, MaskFn, Member, output_to_2d

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

    @property
    def dropout_layers(self) -> tuple[DropoutLayer, ...]:
        return tuple(info for _, info in self._dropout)

    def _forward(self, x, n: int, masks: MaskFn | None) -> np.ndarray:
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
