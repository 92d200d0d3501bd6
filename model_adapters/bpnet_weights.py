"""Reader of BPNet weights from a Keras h5 file, by layer name (numpy and h5py only).

The zoo's ``BPNet-OSKN`` is a Keras 2.2 / TensorFlow 1.14 model (``bpnet.model.h5``) that current
TensorFlow cannot run; :mod:`model_adapters.bpnet_torch` rebuilds the network in PyTorch from the
arrays read here, and :mod:`model_adapters.bpnet_oskn` is the adapter that does both. Layer names
(Keras 2.2 auto-numbering of the zoo model):

* body: ``conv1d_1`` (kernel 25), then ``conv1d_2`` ... ``conv1d_10``: 9 residual dilated
  convolutions (kernel 3, dilation 2, 4, ..., 512);
* per task, in the order Oct4, Sox2, Nanog, Klf4: a profile head ``conv2d_transpose_k`` and a counts
  head ``dense_(2k-1)``.

Dilation rates and the input length are read from the h5's ``model_config`` when it has one. The
layers of the bias ("control track") inputs have no bias term and take zero inputs in Kipoi's
wrapper, so they contribute nothing and are not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError

__all__ = ["N_DILATED", "TASKS", "BPNetLayerNames", "BPNetWeights", "read_bpnet_h5"]

TASKS = ("Oct4", "Sox2", "Nanog", "Klf4")
N_DILATED = 9


@dataclass(frozen=True)
class BPNetLayerNames:
    """Keras layer names of the zoo's BPNet-OSKN h5 (auto-numbered by Keras 2.2 at build time)."""

    first_conv: str = "conv1d_1"
    dilated: tuple[str, ...] = tuple(f"conv1d_{i}" for i in range(2, 2 + N_DILATED))
    profile: tuple[str, ...] = tuple(f"conv2d_transpose_{k}" for k in range(1, len(TASKS) + 1))
    counts: tuple[str, ...] = tuple(f"dense_{2 * k - 1}" for k in range(1, len(TASKS) + 1))


@dataclass(frozen=True)
class BPNetWeights:
    """BPNet weights in Keras layout, as read from an h5 file.

    Attributes
    ----------
    tasks : tuple of str
    conv1_kernel : ndarray, (K1, 4, F)
    conv1_bias : ndarray, (F,)
    dilated_kernels : tuple of ndarray, each (3, F, F)
    dilated_biases : tuple of ndarray, each (F,)
    dilation_rates : tuple of int
    profile_kernels : tuple of ndarray, each (KT, 1, S, F) (Keras Conv2DTranspose layout)
    profile_biases : tuple of ndarray, each (S,)
    counts_kernels : tuple of ndarray, each (F, S)
    counts_biases : tuple of ndarray, each (S,)
    sequence_length : int or None
        Input length of the Keras model's ``seq`` input (from the h5's ``model_config``), if fixed.
    source : str
        The file read.
    """

    tasks: tuple[str, ...]
    conv1_kernel: np.ndarray
    conv1_bias: np.ndarray
    dilated_kernels: tuple[np.ndarray, ...]
    dilated_biases: tuple[np.ndarray, ...]
    dilation_rates: tuple[int, ...]
    profile_kernels: tuple[np.ndarray, ...]
    profile_biases: tuple[np.ndarray, ...]
    counts_kernels: tuple[np.ndarray, ...]
    counts_biases: tuple[np.ndarray, ...]
    sequence_length: int | None = None
    source: str = ""

    @property
    def n_filters(self) -> int:
        return int(self.conv1_kernel.shape[2])

    @property
    def n_strands(self) -> int:
        return int(self.counts_kernels[0].shape[1])


def _layer_weights(root, name: str, path: str) -> dict[str, np.ndarray]:
    if name not in root:
        raise DeepMRInputError(
            f"{path} has no layer {name!r} (layers: {', '.join(list(root)[:12])} ...); it is not a "
            "BPNet-OSKN weight file"
        )
    group = root[name]
    names = [
        n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])
    ]
    if not names:
        names = []
        group.visititems(lambda key, obj: names.append(key) if hasattr(obj, "shape") else None)
    weights = {}
    for key in names:
        short = key.rsplit("/", 1)[-1].split(":", 1)[0]
        weights[short] = np.asarray(group[key], dtype=np.float32)
    return weights


def _model_config(h5file) -> dict | None:
    raw = h5file.attrs.get("model_config")
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _input_length(config: dict | None) -> int | None:
    """Sequence length of the ``seq`` input in a Keras model config (None when not fixed)."""
    for layer in (config or {}).get("config", {}).get("layers", []):
        cfg = layer.get("config", {})
        if layer.get("class_name") == "InputLayer" and cfg.get("name") == "seq":
            shape = cfg.get("batch_input_shape") or cfg.get("batch_shape") or []
            return int(shape[1]) if len(shape) == 3 and shape[1] is not None else None
    return None


def _dilation_rates(config: dict | None, names: BPNetLayerNames) -> tuple[int, ...]:
    default = tuple(2**i for i in range(1, len(names.dilated) + 1))
    if config is None:
        return default
    layers = {
        layer.get("config", {}).get("name"): layer
        for layer in config.get("config", {}).get("layers", [])
    }
    rates = []
    for layer_name, fallback in zip(names.dilated, default):
        cfg = layers.get(layer_name, {}).get("config", {})
        if cfg.get("padding", "same") != "same":
            raise DeepMRInputError(
                f"layer {layer_name} uses padding {cfg.get('padding')!r}; only 'same' is supported"
            )
        rate = cfg.get("dilation_rate", fallback)
        rates.append(int(rate[0] if isinstance(rate, list | tuple) else rate))
    return tuple(rates)


def read_bpnet_h5(
    path: str, tasks=TASKS, layer_names: BPNetLayerNames | None = None
) -> BPNetWeights:
    """Read BPNet weights from a Keras h5 file (whole-model save or weights-only) by layer name.

    Parameters
    ----------
    path : str
        The h5 file (the zoo's ``bpnet.model.h5`` or one with the same layer names).
    tasks : sequence of str
        Task names in head order.
    layer_names : BPNetLayerNames, optional
        Layer names (default: those of the zoo's BPNet-OSKN).

    Returns
    -------
    BPNetWeights

    Raises
    ------
    DeepMRInputError
        A layer is missing or has a shape that does not fit the architecture.
    """
    import h5py

    names = layer_names or BPNetLayerNames()
    tasks = tuple(tasks)
    if len(names.profile) < len(tasks) or len(names.counts) < len(tasks):
        raise DeepMRInputError(
            f"layer names cover {len(names.counts)} tasks, but {len(tasks)} tasks were given"
        )
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        first = _layer_weights(root, names.first_conv, path)
        dilated = [_layer_weights(root, n, path) for n in names.dilated]
        profile = [_layer_weights(root, n, path) for n in names.profile[: len(tasks)]]
        counts = [_layer_weights(root, n, path) for n in names.counts[: len(tasks)]]
        config = _model_config(f)
    n_filters = first["kernel"].shape[2]
    if first["kernel"].ndim != 3 or first["kernel"].shape[1] != 4:
        raise DeepMRInputError(
            f"{names.first_conv} kernel has shape {first['kernel'].shape}, expected (K, 4, F)"
        )
    for n, w in zip(names.dilated, dilated):
        if w["kernel"].shape[1:] != (n_filters, n_filters) or "bias" not in w:
            raise DeepMRInputError(
                f"{n} kernel has shape {w['kernel'].shape}, expected (3, {n_filters}, {n_filters}) with a bias"
            )
    for n, w in zip(names.profile, profile):
        if w["kernel"].ndim != 4 or w["kernel"].shape[1] != 1 or w["kernel"].shape[3] != n_filters:
            raise DeepMRInputError(
                f"{n} kernel has shape {w['kernel'].shape}, expected (K, 1, strands, {n_filters})"
            )
    for n, w in zip(names.counts, counts):
        if w["kernel"].shape[0] != n_filters or "bias" not in w:
            raise DeepMRInputError(
                f"{n} kernel has shape {w['kernel'].shape}, expected ({n_filters}, strands) with a bias"
            )
    return BPNetWeights(
        tasks=tasks,
        conv1_kernel=first["kernel"],
        conv1_bias=first["bias"],
        dilated_kernels=tuple(w["kernel"] for w in dilated),
        dilated_biases=tuple(w["bias"] for w in dilated),
        dilation_rates=_dilation_rates(config, names),
        profile_kernels=tuple(w["kernel"] for w in profile),
        profile_biases=tuple(w["bias"] for w in profile),
        counts_kernels=tuple(w["kernel"] for w in counts),
        counts_biases=tuple(w["bias"] for w in counts),
        sequence_length=_input_length(config),
        source=str(path),
    )
