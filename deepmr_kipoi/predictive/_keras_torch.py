"""A Keras model rebuilt in PyTorch, so that its mutants run through the receptive-field cache.

TensorFlow offers no way to run a convolution on a window of positions with the reference supplying
the context, which fast ISM needs; the common layers of the zoo's Keras models are therefore rebuilt
as PyTorch modules with the same weights, and the PyTorch cache
(:mod:`~deepmr_kipoi.predictive._torch_fastism`) runs them. Activations keep Keras' channels-last
layout, so flatten orders and dropout-mask shapes are Keras' own (MC-dropout masks drawn for the
rebuilt network equal those drawn for the Keras one).

Layers rebuilt: ``InputLayer``, ``Conv1D``/``Conv2D`` (``valid``, ``same`` at stride 1, ``causal``;
dilation), ``MaxPooling1D/2D``, ``AveragePooling1D/2D`` (``valid``), ``GlobalMaxPooling1D``,
``GlobalAveragePooling1D``, ``Dense`` (on vectors or per position), ``Flatten``, ``Reshape``,
``Permute``, ``Dropout`` (no ``noise_shape``), ``BatchNormalization`` (inference: a per-channel scale
and shift), ``Activation`` and the activations of convolutions and dense layers (linear, relu,
sigmoid, tanh, softmax, elu, selu, softplus, softsign, exponential, swish/silu, gelu), ``ReLU``,
``LeakyReLU``, ``ZeroPadding1D``, ``Cropping1D``, ``Add``, ``Subtract``, ``Multiply``, ``Average``,
``Concatenate``. Anything else (``Lambda`` layers, custom layers, nested models, shared layers,
several inputs) raises :class:`~deepmr_kipoi.predictive._fastism_trace.Unsupported` naming the
layer; the Keras member then runs full passes. The rebuilt module is checked against the Keras model
before use (:class:`~deepmr_kipoi.predictive._keras.KerasMember`).

A batch normalisation that alone reads the output of a convolution or dense layer without an
activation (DeepSTARR's blocks) is folded into that layer's weights and bias: two element-wise
passes fewer over every window of the cached ISM, the same affine map up to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepmr_kipoi.predictive._fastism_trace import Unsupported

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "gelu": lambda: nn.GELU(approximate="tanh"),
}


class _Exp(nn.Module):
    def forward(self, x):
        return torch.exp(x)


class _Softmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=-1)


def _activation(name, layer: str) -> nn.Module | None:
    """A Keras activation (by name) as a module; None for ``linear``."""
    if isinstance(name, dict):
        name = name.get("config", {}).get("name") or name.get("class_name")
    name = str(name or "linear").lower()
    if name == "linear":
        return None
    if name == "exponential":
        return _Exp()
    if name == "softmax":
        return _Softmax()
    if name in _ACTIVATIONS:
        return _ACTIVATIONS[name]()
    raise Unsupported(
        f"layer '{layer}' has the activation {name!r}, which has no PyTorch counterpart here"
    )


class _ChannelsLast(nn.Module):
    """A channels-first PyTorch layer (convolution, pooling) applied to channels-last activations."""

    def __init__(self, inner: nn.Module, spatial: int, after: nn.Module | None = None):
        super().__init__()
        self.inner, self.spatial, self.after = inner, spatial, after

    def forward(self, x):
        if self.spatial == 1:
            y = self.inner(x.transpose(1, 2)).transpose(1, 2)
        else:
            y = self.inner(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return y if self.after is None else self.after(y)


class _Affine(nn.Module):
    """Inference-mode batch normalisation over the last axis: ``x * scale + shift``."""

    def __init__(self, scale: np.ndarray, shift: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)))
        self.register_buffer("shift", torch.from_numpy(shift.astype(np.float32)))

    def forward(self, x):
        return x * self.scale + self.shift


class _Dense(nn.Module):
    def __init__(self, linear: nn.Linear, after: nn.Module | None):
        super().__init__()
        self.linear, self.after = linear, after

    def forward(self, x):
        y = self.linear(x)
        return y if self.after is None else self.after(y)


class _Lambda(nn.Module):
    """A parameter-free tensor operation (reshape, permute, pad, crop, global pooling, merges)."""

    def __init__(self, kind: str, arg=None):
        super().__init__()
        self.kind, self.arg = kind, arg

    def forward(self, *xs):
        x, kind, arg = xs[0], self.kind, self.arg
        if kind == "flatten":
            return x.reshape(x.shape[0], -1)
        if kind == "reshape":
            return x.reshape((x.shape[0],) + tuple(arg))
        if kind == "permute":
            return x.permute(0, *arg)
        if kind == "pad":
            return F.pad(x, (0, 0, arg[0], arg[1]))
        if kind == "crop":
            return x[:, arg[0] : x.shape[1] - arg[1]]
        if kind == "gmax":
            return x.amax(dim=1)
        if kind == "gavg":
            return x.mean(dim=1)
        if kind == "concat":
            return torch.cat(list(xs), dim=arg)
        out = xs[0]
        for other in xs[1:]:
            out = {
                "add": torch.add,
                "subtract": torch.sub,
                "multiply": torch.mul,
                "average": torch.add,
            }[kind](out, other)
        return out / len(xs) if kind == "average" else out


def _conv(cls, cfg, weights, name):
    n = 1 if cls == "Conv1D" else 2
    if cfg.get("data_format", "channels_last") != "channels_last" or cfg.get("groups", 1) != 1:
        raise Unsupported(f"layer '{name}' ({cls}) is channels-first or grouped")
    kernel = torch.from_numpy(np.asarray(weights[0], np.float32))
    # Keras kernels are (k..., in, out); PyTorch's (out, in, k...), both cross-correlations
    kernel = kernel.permute(n + 1, n, *range(n)).contiguous()
    strides, dilation = tuple(cfg["strides"]), tuple(cfg["dilation_rate"])
    padding = cfg["padding"]
    pad_module = None
    if padding == "same" and any(s != 1 for s in strides):
        raise Unsupported(f"layer '{name}' ({cls}) pads 'same' with a stride")
    if padding == "causal":
        pad_module = _Lambda("pad", (dilation[0] * (kernel.shape[-1] - 1), 0))
        padding = "valid"
    conv_cls = nn.Conv1d if n == 1 else nn.Conv2d
    conv = conv_cls(
        kernel.shape[1],
        kernel.shape[0],
        tuple(kernel.shape[2:]),
        strides,
        padding,
        dilation,
        bias=bool(cfg.get("use_bias", True)),
    )
    with torch.no_grad():
        conv.weight.copy_(kernel)
        if conv.bias is not None:
            conv.bias.copy_(torch.from_numpy(np.asarray(weights[1], np.float32)))
    module = _ChannelsLast(conv, n, _activation(cfg.get("activation"), name))
    return module if pad_module is None else nn.Sequential(pad_module, module)


def _pool(cls, cfg, name):
    n = 1 if cls.endswith("1D") else 2
    if (
        cfg.get("padding", "valid") != "valid"
        or cfg.get("data_format", "channels_last") != "channels_last"
    ):
        raise Unsupported(f"layer '{name}' ({cls}) pads 'same' or is channels-first")
    size = (
        tuple(cfg["pool_size"])
        if isinstance(cfg["pool_size"], list | tuple)
        else (cfg["pool_size"],) * n
    )
    strides = cfg.get("strides") or size
    strides = tuple(strides) if isinstance(strides, list | tuple) else (strides,) * n
    kind = {
        (1, "Max"): nn.MaxPool1d,
        (2, "Max"): nn.MaxPool2d,
        (1, "Ave"): nn.AvgPool1d,
        (2, "Ave"): nn.AvgPool2d,
    }[(n, cls[:3])]
    return _ChannelsLast(kind(size, strides), n)


def _dense(cfg, weights, name):
    kernel = np.asarray(weights[0], np.float32)
    linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=bool(cfg.get("use_bias", True)))
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
        if linear.bias is not None:
            linear.bias.copy_(torch.from_numpy(np.asarray(weights[1], np.float32)))
    return _Dense(linear, _activation(cfg.get("activation"), name))


def _batchnorm(cfg, weights, name):
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
    if axis != -1 and not (isinstance(axis, int) and axis > 0 and axis == cfg.get("_ndim", 0) - 1):
        raise Unsupported(
            f"layer '{name}' (BatchNormalization) normalises axis {axis}, not channels"
        )
    values = list(weights)
    gamma = values.pop(0) if cfg.get("scale", True) else None
    beta = values.pop(0) if cfg.get("center", True) else None
    mean, var = values
    scale = (gamma if gamma is not None else 1.0) / np.sqrt(var + cfg.get("epsilon", 1e-3))
    shift = (beta if beta is not None else 0.0) - mean * scale
    return _Affine(np.asarray(scale), np.asarray(shift))


def _pair(value):
    return tuple(value) if isinstance(value, list | tuple) else (int(value), int(value))


def convert_layer(cls: str, cfg: dict, weights: list, ndim: int):
    """One Keras layer as a PyTorch module (None for layers that pass their input on)."""
    name = cfg.get("name", cls)
    if cls == "InputLayer" or (cls == "Activation" and str(cfg.get("activation")) == "linear"):
        return None
    if cls in ("Conv1D", "Conv2D"):
        return _conv(cls, cfg, weights, name)
    if cls in ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"):
        return _pool(cls, cfg, name)
    if cls == "Dense":
        return _dense(cfg, weights, name)
    if cls == "BatchNormalization":
        return _batchnorm(dict(cfg, _ndim=ndim), weights, name)
    if cls == "Activation":
        return _activation(cfg.get("activation"), name)
    if cls == "Dropout":
        if cfg.get("noise_shape") is not None:
            raise Unsupported(f"layer '{name}' (Dropout) has a noise_shape")
        return nn.Dropout(float(cfg["rate"]))
    simple = {
        "Flatten": ("flatten", None),
        "GlobalMaxPooling1D": ("gmax", None),
        "GlobalAveragePooling1D": ("gavg", None),
        "Add": ("add", None),
        "Subtract": ("subtract", None),
        "Multiply": ("multiply", None),
        "Average": ("average", None),
    }
    if cls in simple:
        if cls.startswith("Global") and cfg.get("keepdims"):
            raise Unsupported(f"layer '{name}' ({cls}) keeps the pooled axis")
        return _Lambda(*simple[cls])
    if cls == "Reshape":
        return _Lambda("reshape", tuple(int(d) for d in cfg["target_shape"]))
    if cls == "Permute":
        return _Lambda("permute", tuple(int(d) for d in cfg["dims"]))
    if cls in ("ZeroPadding1D", "Cropping1D"):
        key = "padding" if cls == "ZeroPadding1D" else "cropping"
        return _Lambda("pad" if key == "padding" else "crop", _pair(cfg[key]))
    if cls == "Concatenate":
        return _Lambda("concat", int(cfg.get("axis", -1)))
    if (
        cls == "ReLU"
        and not cfg.get("max_value")
        and not cfg.get("threshold")
        and not cfg.get("negative_slope")
    ):
        return nn.ReLU()
    if cls == "LeakyReLU":
        return nn.LeakyReLU(float(cfg.get("alpha", cfg.get("negative_slope", 0.3))))
    raise Unsupported(f"layer '{name}' ({cls}) has no PyTorch counterpart here")


class KerasAsTorch(nn.Module):
    """The rebuilt network: one module per Keras layer, run in the Keras graph's order.

    Parameters
    ----------
    steps : list of (str, list of str)
        Each layer's name and the names of the layers it takes its inputs from, in graph order.
    modules : dict of str to nn.Module
        The rebuilt layers (layers that pass their input on have none).
    input_name : str
    outputs : list of str
    """

    def __init__(self, steps, modules, input_name: str, outputs):
        super().__init__()
        self.keys = {
            name: f"l{i}_" + "".join(c if c.isalnum() else "_" for c in name)
            for i, (name, _) in enumerate(steps)
        }
        self.layers = nn.ModuleDict({self.keys[n]: m for n, m in modules.items() if m is not None})
        self.steps = [(name, list(inputs)) for name, inputs in steps]
        self.input_name, self.outputs = input_name, list(outputs)

    def forward(self, x):
        values = {self.input_name: x}
        for name, inputs in self.steps:
            args = [values[i] for i in inputs]
            key = self.keys[name]
            values[name] = self.layers[key](*args) if key in self.layers else args[0]
        outs = [values[o] for o in self.outputs]
        return outs[0] if len(outs) == 1 else outs


def _history(arg, found: list) -> None:
    """The (layer, node, tensor) references in a Keras 3 node's arguments."""
    if isinstance(arg, dict):
        if arg.get("class_name") == "__keras_tensor__":
            found.append(tuple(arg["config"]["keras_history"]))
        else:
            for v in arg.values():
                _history(v, found)
    elif isinstance(arg, list | tuple):
        for v in arg:
            _history(v, found)


def _inbound(entry: dict) -> list[tuple]:
    """(layer, node, tensor) inputs of a functional model's layer, from either config format."""
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise Unsupported(f"layer '{entry['name']}' is called more than once (a shared layer)")
    if not nodes:
        return []
    node = nodes[0]
    found: list = []
    if isinstance(node, dict):
        _history(node.get("args", []), found)
    else:
        found = [tuple(ref[:3]) for ref in node]
    return found


def _refs(value) -> list[tuple]:
    if value and isinstance(value[0], str):
        return [tuple(value)]
    return [tuple(v) for v in value]


def _graph(model) -> tuple[list, str, list[str]]:
    """(steps, input name, output names) of a Sequential or functional Keras model."""
    if type(model).__name__ == "Sequential":
        layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
        steps, previous = [], "__input__"
        for layer in layers:
            steps.append((layer.name, [previous]))
            previous = layer.name
        return steps, "__input__", [previous]
    config = model.get_config()
    inputs = _refs(config.get("input_layers") or [])
    if len(inputs) != 1:
        raise Unsupported(
            f"the Keras model takes {len(inputs)} inputs; the cache follows one sequence"
        )
    steps = []
    for entry in config["layers"]:
        if entry["class_name"] in ("Functional", "Model", "Sequential"):
            raise Unsupported(f"layer '{entry['name']}' is a nested model")
        refs = _inbound(entry)
        if any(ref[2] != 0 for ref in refs):
            raise Unsupported(f"layer '{entry['name']}' takes a second output of a layer")
        if entry["class_name"] != "InputLayer":
            steps.append((entry["name"], [ref[0] for ref in refs]))
    outputs = _refs(config["output_layers"])
    return steps, inputs[0][0], [ref[0] for ref in outputs]


def _ndim(layer) -> int:
    try:
        return len(layer.input.shape)
    except Exception:  # noqa: BLE001 - a layer without a single input: its rank does not matter
        return 0


def _fold_batchnorm(steps, modules: dict, outputs) -> None:
    """Fold every batch normalisation (:class:`_Affine`) whose input is read by it alone and comes
    from a convolution or dense layer without an activation into that layer (in ``modules``)."""
    readers: dict[str, int] = {}
    for source in [i for _, inputs in steps for i in inputs] + list(outputs):
        readers[source] = readers.get(source, 0) + 1
    for name, inputs in steps:
        norm = modules.get(name)
        if not isinstance(norm, _Affine) or len(inputs) != 1 or readers.get(inputs[0]) != 1:
            continue
        layer = modules.get(inputs[0])
        if isinstance(layer, _ChannelsLast) and isinstance(layer.inner, nn.Conv1d | nn.Conv2d):
            linear = layer.inner
        elif isinstance(layer, _Dense):
            linear = layer.linear
        else:
            continue
        if layer.after is not None:
            continue
        with torch.no_grad():
            # output channels are the weight's first axis; the normalisation scales them
            linear.weight.mul_(norm.scale.reshape((-1,) + (1,) * (linear.weight.dim() - 1)))
            if linear.bias is None:
                linear.bias = nn.Parameter(torch.zeros_like(norm.shift))
            linear.bias.mul_(norm.scale).add_(norm.shift)
        modules[name] = None


def keras_to_torch(model) -> KerasAsTorch:
    """Rebuild a Keras model's layers in PyTorch (inference mode; see the module docstring).

    Parameters
    ----------
    model : keras.Model or tf_keras.Model
        Sequential or functional, one input.

    Returns
    -------
    KerasAsTorch
        Takes the Keras model's input layout (channels last) as a float32 tensor and returns its
        output (a list for several outputs).

    Raises
    ------
    Unsupported
        Naming the first layer that cannot be rebuilt and why.
    """
    steps, input_name, outputs = _graph(model)
    modules = {}
    for name, _ in steps:
        layer = model.get_layer(name)
        cls = type(layer).__name__
        modules[name] = convert_layer(cls, layer.get_config(), layer.get_weights(), _ndim(layer))
    _fold_batchnorm(steps, modules, outputs)
    return KerasAsTorch(steps, modules, input_name, outputs).eval()
