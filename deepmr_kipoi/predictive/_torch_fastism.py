"""Receptive-field caching for the mutants of one reference through a PyTorch network (fast ISM).

A point mutation changes a convolution's output only within the convolution's receptive field of the
mutated base, so most of every mutant's activations equal the reference's. The network is traced once
with ``torch.fx`` into a graph; per reference the graph is run once on the reference, keeping every
node's activation (kept for the next batch of the same reference while the weights are unchanged:
an ISM hands one reference's mutants over in several batches); then each batch of mutants is
propagated as *windows*: for every mutant only the stretch of the sequence axis that can differ
from the reference is computed, and the reference fills in the rest wherever an operation needs
context (Yuzu, Schreiber et al. 2022; fastISM, Sasse et al. 2022, use the same principle).

Windowed operations (on the sequence axis of ``(N, C, L)`` activations, or of 4-d ones):

* ``Conv1d`` / ``F.conv1d`` (zero padding, any stride, dilation and groups); ``MaxPool1d``,
  ``AvgPool1d`` and their functional forms (no padding, no ceil mode): the window grows by the
  receptive field and the reference supplies the context. ``Conv2d``/``MaxPool2d``/``AvgPool2d``
  likewise when the input has a singleton spatial axis (``(N, C, 1, L)`` or ``(N, C, L, 1)``, as in
  the Kipoi DeepSEA and Basset models) and their kernels span only the sequence axis;
* element-wise layers and functions (activations, eval-mode ``BatchNorm1d``/``BatchNorm2d`` with
  running statistics, dropout in inference mode or with a fixed MC-dropout mask);
* ``+ - * /`` between windowed values and/or constants (residual connections take the union window);
* slices along the sequence axis (output cropping) and mean/sum over it (global pooling), which is
  the reference's value plus the window's change; channel selection; ``transpose``/``permute``
  (the sequence axis moves along, so channels-last inputs work); zero padding (``F.pad``,
  ``ConstantPad*d``/``ZeroPad*d``).

Convolutions with a singleton spatial axis run as 1-d ones; stride-1 convolutions with enough input
channels, and a dense layer after a flatten (``Flatten``, ``view(N, -1)``; dropout and element-wise
layers between them are followed), compute only the change the window makes, added to the
reference's output (:mod:`~deepmr_kipoi.predictive._fastism_delta`).

Anything else (other reshapes, layers after the first dense layer, ...) receives the full activation:
the reference's, repeated per mutant, with the window written in. The result is exact up to float32
rounding: the same sums are computed over shorter stretches. Each member checks its fast path against full forward passes
on its first batch and falls back to them (logged) on any disagreement or unsupported construct.
"""

from __future__ import annotations

import logging
import operator

import torch
import torch.nn.functional as F

from deepmr_kipoi.predictive._fastism_delta import Flat, dense_change
from deepmr_kipoi.predictive._fastism_trace import Unsupported, _OneInput, _ShapeTracer
from deepmr_kipoi.predictive._fastism_windows import (
    _BINARY,
    _BINARY_METHODS,
    _CONV_FUNCTIONS,
    _CONVS,
    _DROPOUT_MODULES,
    _OUT_OF_PLACE,
    _POOL_FUNCTIONS,
    _POOLS,
    _REDUCTIONS,
    _SHAPE_FUNCTIONS,
    _SHAPE_METHODS,
    _UNARY_FUNCTIONS,
    _UNARY_METHODS,
    _UNARY_MODULES,
    ConvSpec,
    PoolSpec,
    _as_tensor,
    _axis_shape,
    _batch_concat,
    _binary,
    _bind,
    _concat,
    _conv,
    _crop,
    _delta,
    _flip,
    _in_place,
    _index_select,
    _move_axes,
    _pad,
    _per_row,
    _pool,
    _positions,
    _reduce,
    _shape_only,
    _stack,
    _Window,
)

logger = logging.getLogger(__name__)


class FastISMPlan:
    """A traced network that propagates mutant windows (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        Takes one tensor, ``(N, C, L)`` or with singleton spatial axes such as ``(N, C, 1, L)`` and
        ``(N, C, L, 1)`` (its other ``forward`` arguments keep their defaults).
    dropout_modules : sequence of torch.nn.Module
        Dropout modules in MC-dropout mask order.
    axis : int
        The input's sequence axis (2 for ``(N, C, L)`` and ``(N, C, L, 1)``, 3 for ``(N, C, 1, L)``).
    example : torch.Tensor, optional
        A prepared input ``(1, ...)`` of the shape the plan will see: ``len()``, ``size()`` and
        ``shape`` queries on non-batch axes are then answered while tracing (see
        :class:`_ShapeProxy`), so the plan serves inputs of this shape only. None: plain
        ``torch.fx`` tracing, any shape.

    Raises
    ------
    Unsupported
        When ``torch.fx`` cannot trace the module.
    """

    def __init__(self, module: torch.nn.Module, dropout_modules=(), axis: int = 2, example=None):
        self.axis = int(axis)
        root = _OneInput(module)
        tracer = _ShapeTracer(example)
        try:
            graph = tracer.trace(root)
        except Exception as err:  # noqa: BLE001 - any tracing failure means: no fast path
            raise Unsupported(
                f"torch.fx cannot trace the model ({type(err).__name__}: {err})"
            ) from err
        #: submodules traced as one opaque node (run on full activations): path -> reason
        self.opaque = {path.removeprefix("module."): why for path, why in tracer.opaque.items()}
        self.graph_module = torch.fx.GraphModule(tracer.root, graph)
        self.graph_module.graph.eliminate_dead_code()
        self.nodes = list(self.graph_module.graph.nodes)
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise Unsupported("the traced model takes more than one input")
        self.modules = dict(self.graph_module.named_modules())
        self.dropout_index = {
            name: k
            for k, mod in enumerate(dropout_modules)
            for name, m in self.modules.items()
            if m is mod
        }
        #: whether the network has a convolution that windows could run through
        self.has_convolution = any(self._is_conv(n) for n in self.nodes)
        #: convolutions the last :meth:`mutants` call ran on windows (0: no gain over full passes)
        self.windowed_convolutions = 0
        #: dense layers after a flatten the last :meth:`mutants` call computed from the change only
        self.dense_from_change = 0
        tainted = set(placeholders)
        for n in self.nodes:
            if any(a in tainted for a in n.all_input_nodes):
                tainted.add(n)
        self.depends_on_input = tainted
        masked = {n for n in self.nodes if n.op == "call_module" and n.target in self.dropout_index}
        for n in self.nodes:
            if any(a in masked for a in n.all_input_nodes):
                masked.add(n)
        #: nodes whose value depends on the MC-dropout masks (the rest is shared by all samples)
        self.depends_on_masks = masked
        before_conv = set()
        for n in reversed(self.nodes):
            if self._is_conv(n) or any(u in before_conv for u in n.users):
                before_conv.add(n)
        #: nodes upstream of a convolution: a window lost there costs the cache its gain
        self.before_convolution = before_conv
        #: names of layers windows could not pass on the way to a convolution (last mutants call)
        self.unfollowed: list[str] = []
        # (reference input, weight versions, activations) of the last reference run without
        # MC-dropout masks: an ISM hands one reference's mutants over in several batches
        self._last_reference = None

    def reference(self, x: torch.Tensor, masks=None, shared: dict | None = None) -> dict:
        """Every node's activation for one prepared reference ``x`` (1, C, L) (or the 4-d layouts).

        ``shared``: the activations of an earlier call with other MC-dropout masks; the nodes that do
        not depend on the masks are taken from it instead of being recomputed.
        """
        env = {}
        for node in self.nodes:
            if node.op == "output":
                break
            if shared is not None and node not in self.depends_on_masks:
                env[node] = shared[node]
            else:
                env[node] = self._full(node, env, x, masks)
        return env

    def mutants(self, ref_env: dict, x: torch.Tensor, masks=None):
        """The network's output for prepared mutants ``x`` (M, ...) of the reference of ``ref_env``."""
        return self._propagate(ref_env, x, masks, None)[0]

    def mutants_samples(self, ref_x: torch.Tensor, x: torch.Tensor, masks_list) -> list:
        """The outputs for mutants ``x`` (M, ...) of reference ``ref_x`` (1, ...) under each set of
        MC-dropout masks in ``masks_list``: everything that does not depend on the masks (the layers
        before the first dropout layer, reference and windows alike) is computed once for all."""
        outs, ref_shared, win_shared = [], None, None
        for masks in masks_list:
            ref_env = self._reference_env(ref_x, masks, ref_shared)
            out, env = self._propagate(ref_env, x, masks, win_shared)
            if ref_shared is None:
                ref_shared, win_shared = ref_env, env
            outs.append(out)
        return outs

    def _reference_env(self, ref_x: torch.Tensor, masks, shared: dict | None) -> dict:
        """:meth:`reference`, reusing the activations of the last reference run without masks when
        ``ref_x`` and the weights are unchanged (with masks: its nodes that do not depend on them)."""
        versions = self._weight_versions()
        last = self._last_reference
        same = (
            last is not None
            and last[1] == versions
            and last[0].shape == ref_x.shape
            and last[0].device == ref_x.device
            and torch.equal(last[0], ref_x)
        )
        if masks is not None:
            return self.reference(
                ref_x, masks, shared if shared is not None or not same else last[2]
            )
        if same:
            return last[2]
        env = self.reference(ref_x)
        self._last_reference = (ref_x.clone(), versions, env)
        return env

    def _weight_versions(self) -> tuple:
        """Version counters of every parameter and buffer (any in-place update changes them).
        Inference tensors (constants traced inside ``torch.inference_mode``) have none and count
        as fixed, as for the prepared weights of :mod:`._fastism_delta`."""
        return tuple(
            -1 if t.is_inference() else t._version
            for t in (*self.graph_module.parameters(), *self.graph_module.buffers())
        )

    def _propagate(self, ref_env: dict, x: torch.Tensor, masks, shared: dict | None):
        ref_x = ref_env[self.nodes[0]]
        if shared is None:
            env = {self.nodes[0]: self._input_window(ref_x, x)}
            self.windowed_convolutions = 0
            self.dense_from_change = 0
            self.unfollowed = []
        else:
            env = {n: v for n, v in shared.items() if n not in self.depends_on_masks}
        for node in self.nodes[1:]:
            if node.op == "output":
                out = torch.fx.node.map_arg(
                    node.args[0], lambda n: _as_tensor(env[n]) if n in env else ref_env[n]
                )
                return out, env
            if node in env:
                continue
            if node not in self.depends_on_input:
                env[node] = ref_env[node]
            else:
                env[node] = self._windowed(node, env, ref_env[node], masks)
        raise Unsupported("the traced graph has no output")

    def _input_window(self, ref_x: torch.Tensor, x: torch.Tensor) -> _Window:
        """The mutants ``x`` as windows around the positions where they differ from ``ref_x``."""
        axis, length = self.axis, x.shape[self.axis]
        changed = (x != ref_x).movedim(axis, -1).reshape(x.shape[0], -1, length).any(dim=1)
        if changed.any():
            first = changed.float().argmax(1)
            last = length - 1 - changed.flip(1).float().argmax(1)
            width = int((last - first).max()) + 1
        else:
            first, width = torch.zeros(x.shape[0], dtype=torch.long, device=x.device), 1
        start = first.clamp(max=length - width)
        index = _positions(start, width).reshape(_axis_shape(x.shape[0], width, x.dim(), axis))
        shape = list(x.shape)
        shape[axis] = width
        return _Window(ref_x, x.gather(axis, index.expand(shape)), start, axis)

    def _is_conv(self, node) -> bool:
        return (node.op == "call_module" and isinstance(self.modules[node.target], _CONVS)) or (
            node.op == "call_function" and node.target in _CONV_FUNCTIONS
        )

    def layer_name(self, node) -> str:
        """A graph node as the user knows it: the module path, else the function or method name."""
        if node.op == "call_module":
            return node.target.removeprefix("module.")
        return getattr(node.target, "__name__", str(node.target))

    def _target(self, node):
        return self.modules[node.target] if node.op == "call_module" else node.target

    def _full(self, node, env, x, masks):
        if node.op == "placeholder":
            return x
        if node.op == "get_attr":
            obj = self.graph_module
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return obj
        args = torch.fx.node.map_aggregate(
            torch.fx.node.map_arg(node.args, lambda n: env[n]), _as_tensor
        )
        kwargs = torch.fx.node.map_aggregate(
            torch.fx.node.map_arg(node.kwargs, lambda n: env[n]), _as_tensor
        )
        if node.op not in ("call_module", "call_function", "call_method"):
            raise Unsupported(f"graph node kind {node.op}")
        if node.op == "call_module" and masks is not None and node.target in self.dropout_index:
            return args[0] * self._mask(node, args[0], masks, self.modules[node.target])
        return self._call(node, args, kwargs)

    def _mask(self, node, like: torch.Tensor, masks, mod):
        """The fixed MC-dropout mask of a dropout module for activations shaped like ``like``."""
        shape = tuple(like.shape[1:])
        channelwise = not isinstance(mod, torch.nn.Dropout)
        mask_shape = (shape[0],) + (1,) * (len(shape) - 1) if channelwise else shape
        mask = masks(self.dropout_index[node.target], mask_shape, float(mod.p))
        return torch.from_numpy(mask).to(device=like.device, dtype=like.dtype)

    def _windowed(self, node, env, ref_out, masks):
        args = torch.fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: env[n])
        wins = []
        torch.fx.node.map_aggregate(
            (args, kwargs), lambda a: wins.append(a) if isinstance(a, _Window | Flat) else a
        )
        if not wins:
            return self._full(node, env, None, masks)
        if not isinstance(ref_out, torch.Tensor):
            # shape queries (x.shape, x.size(0), ...) answered without the data
            def to_meta(a):
                if isinstance(a, Flat):
                    return torch.empty(
                        (a.win.val.shape[0],) + tuple(a.ref.shape[1:]), device="meta"
                    )
                return a.meta() if isinstance(a, _Window) else a

            answer = self._call(
                node,
                torch.fx.node.map_aggregate(args, to_meta),
                torch.fx.node.map_aggregate(kwargs, to_meta),
            )
            return ref_out if isinstance(answer, torch.device) else answer
        out = self._window_op(node, args, kwargs, ref_out, masks)
        if out is not None:
            if self._target(node) in _CONV_FUNCTIONS or isinstance(self._target(node), _CONVS):
                self.windowed_convolutions += 1
            return out
        if node in self.before_convolution:
            self.unfollowed.append(self.layer_name(node))
        full_args = torch.fx.node.map_aggregate(args, _as_tensor)
        full_kwargs = torch.fx.node.map_aggregate(kwargs, _as_tensor)
        if node.op == "call_module" and masks is not None and node.target in self.dropout_index:
            mod = self.modules[node.target]
            return full_args[0] * self._mask(node, full_args[0], masks, mod)
        return self._call(node, full_args, full_kwargs)

    def _call(self, node, args, kwargs):
        """Run a node on plain values; an in-place operation works on a copy of its input, so the
        cached activation it would overwrite stays the value of the node that produced it."""
        if _in_place(node, self.modules, kwargs) and args and isinstance(args[0], torch.Tensor):
            args = (args[0].clone(), *args[1:])
        if node.op == "call_module":
            return self.modules[node.target](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    def _window_op(self, node, args, kwargs, ref_out, masks):
        """The windowed result of one node, or None when it needs the full activation."""
        target = self._target(node)
        if args and isinstance(args[0], Flat):
            return self._flat_op(node, target, args, kwargs, ref_out, masks)
        reduced = self._reduction(node, target, args, kwargs, ref_out)
        if reduced is not None or ref_out.dim() < 2:
            return reduced
        if node.op == "call_function" and target in _BINARY | set(_OUT_OF_PLACE) and len(args) == 2:
            return _binary(_OUT_OF_PLACE.get(target, target), args[0], args[1], ref_out, kwargs)
        if node.op == "call_method" and target in _BINARY_METHODS and len(args) == 2:
            return _binary(getattr(torch, target), args[0], args[1], ref_out, kwargs)
        if node.op == "call_function" and target in (torch.cat, torch.stack):
            return _joined(target, args, kwargs, ref_out)
        x = args[0] if args else None
        if not isinstance(x, _Window):
            return None
        if node.op == "call_module":
            return self._module_op(node, target, x, ref_out, masks)
        if node.op == "call_function":
            return _function_op(target, x, args, kwargs, ref_out)
        if node.op == "call_method":
            return _method_op(target, x, args, kwargs, ref_out)
        return None

    def _module_op(self, node, target, x: _Window, ref_out, masks):
        if isinstance(target, _CONVS):
            if target.padding_mode != "zeros" or x.ref.dim() != target.weight.dim():
                return None
            fn = F.conv1d if isinstance(target, torch.nn.Conv1d) else F.conv2d
            spec = ConvSpec(
                fn,
                target.weight,
                target.bias,
                target.stride,
                target.padding,
                target.dilation,
                target.groups,
            )
            return _conv(x, ref_out, spec)
        n = next((d for cls, d in _POOLS.items() if isinstance(target, cls)), None)
        if n is not None and x.ref.dim() == n + 2:
            if isinstance(target, torch.nn.MaxPool1d | torch.nn.MaxPool2d):
                if target.return_indices:
                    return None
                fn = F.max_pool1d if n == 1 else F.max_pool2d
                spec = PoolSpec(
                    fn,
                    n,
                    target.kernel_size,
                    target.stride,
                    target.padding,
                    target.dilation,
                    target.ceil_mode,
                )
                return _pool(x, ref_out, spec)
            if getattr(target, "divisor_override", None):
                return None
            fn = F.avg_pool1d if n == 1 else F.avg_pool2d
            spec = PoolSpec(
                fn, n, target.kernel_size, target.stride, target.padding, 1, target.ceil_mode
            )
            return _pool(x, ref_out, spec)
        if isinstance(target, torch.nn.modules.padding._ConstantPadNd):
            return _pad(x, target.padding, "constant", target.value, ref_out)
        if isinstance(target, torch.nn.Flatten | torch.nn.Unflatten):
            return _shape_only(x, ref_out)
        if ref_out.shape != x.ref.shape:
            return None
        if isinstance(target, _DROPOUT_MODULES):
            if masks is None:
                return x.like(ref_out, x.val)
            mask = self._mask(node, ref_out, masks, target)[None]
            return _binary(torch.mul, x, mask, ref_out, {})
        if isinstance(target, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            if target.training or target.running_mean is None or x.axis < 2:
                return None
            return x.like(ref_out, target(x.val))
        if isinstance(target, _UNARY_MODULES):
            return x.like(
                ref_out, target(x.val.clone() if getattr(target, "inplace", False) else x.val)
            )
        return None

    def _flat_op(self, node, target, args, kwargs, ref_out, masks):
        """A node on a flattened window (:class:`Flat`): a dense layer computes only the change its
        window makes (:func:`dense_change`); dropout and element-wise layers keep it flat."""
        x = args[0]
        win = x.win
        unflat = ref_out.reshape(win.ref.shape) if ref_out.numel() == win.ref.numel() else None
        if node.op == "call_module" and isinstance(target, torch.nn.Linear) and len(args) == 1:
            weight = target.weight
        elif (
            node.op == "call_function" and target is F.linear and not kwargs and len(args) in (2, 3)
        ):
            weight = args[1]
        else:
            weight = None
        if weight is not None:
            if isinstance(weight, Flat | _Window) or weight.shape[1] != x.ref.shape[1]:
                return None
            change = dense_change(x, weight, _delta(win))
            self.dense_from_change += 1
            return _per_row(ref_out, change.shape[0]) + change
        if unflat is None or ref_out.shape != x.ref.shape or len(args) != 1:
            return None
        if node.op == "call_module" and isinstance(target, _DROPOUT_MODULES):
            if masks is None:
                return Flat(win.like(unflat, win.val), ref_out)
            mask = self._mask(node, ref_out, masks, target)[None].reshape(
                (1,) + tuple(win.ref.shape[1:])
            )
            moved = _binary(torch.mul, win, mask, unflat, {})
            return None if moved is None else Flat(moved, ref_out)
        if node.op == "call_module" and isinstance(target, _UNARY_MODULES) and not kwargs:
            return Flat(win.like(unflat, target(win.val)), ref_out)
        if (node.op == "call_method" and target in _SHAPE_METHODS) or (
            node.op == "call_function" and target in _SHAPE_FUNCTIONS
        ):
            return Flat(win, ref_out)
        return None

    def _reduction(self, node, target, args, kwargs, ref_out):
        how = None
        if node.op == "call_function" and target in _REDUCTIONS:
            how = _REDUCTIONS[target]
        elif node.op == "call_method" and node.target in ("mean", "sum"):
            how = node.target
        if how is None or not args or not isinstance(args[0], _Window):
            return None
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dim is None or set(kwargs) - {"dim", "keepdim"} or len(args) > 3:
            return None
        keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
        return _reduce(args[0], how, dim, keepdim, ref_out)


def _joined(target, args, kwargs, ref_out):
    """``torch.cat`` or ``torch.stack`` of windowed (and full) tensors."""
    tensors = args[0] if args else kwargs.get("tensors")
    dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
    if target is torch.stack:
        return _stack(tensors, dim, ref_out)
    if isinstance(tensors, list | tuple) and tensors and dim % ref_out.dim() == 0:
        return _batch_concat(tensors, ref_out)
    return _concat(tensors, dim, ref_out)


def _function_op(target, x: _Window, args, kwargs, ref_out):
    """A ``call_function`` node on the window ``x``: its windowed result, or None when it needs
    the full activation."""
    if target in _CONV_FUNCTIONS:
        bound = _bind(args, kwargs)
        spec = ConvSpec(
            target,
            bound["weight"],
            bound.get("bias"),
            bound.get("stride", 1),
            bound.get("padding", 0),
            bound.get("dilation", 1),
            bound.get("groups", 1),
        )
        return _conv(x, ref_out, spec)
    if (
        target in _POOL_FUNCTIONS
        and len(args) <= 3
        and not (set(kwargs) - {"kernel_size", "stride"})
    ):
        kernel = kwargs.get("kernel_size", args[1] if len(args) > 1 else None)
        stride = kwargs.get("stride", args[2] if len(args) > 2 else None)
        return _pool(x, ref_out, PoolSpec(target, _POOL_FUNCTIONS[target], kernel, stride))
    if target in _UNARY_FUNCTIONS and ref_out.shape == x.ref.shape:
        if target is F.dropout and (kwargs.get("training") or (len(args) > 2 and args[2])):
            return None
        val = x.val.clone() if kwargs.get("inplace") else x.val
        return x.like(ref_out, target(val, *args[1:], **kwargs))
    if target is operator.getitem:
        return _crop(x, args[1], ref_out)
    if target in (torch.transpose, torch.permute):
        return _move_axes(x, target.__name__, args[1:], kwargs, ref_out)
    if target in _SHAPE_FUNCTIONS:
        return _shape_only(x, ref_out)
    if target is torch.flip:
        return _flip(x, kwargs.get("dims", args[1] if len(args) > 1 else None), ref_out)
    if target is torch.index_select:
        bound = dict(zip(("input", "dim", "index"), args, strict=False), **kwargs)
        return _index_select(x, bound.get("dim"), bound.get("index"), ref_out)
    if target is F.pad:
        rest = dict(zip(("pad", "mode", "value"), args[1:], strict=False), **kwargs)
        return _pad(x, rest.get("pad"), rest.get("mode", "constant"), rest.get("value"), ref_out)
    return None


def _method_op(target, x: _Window, args, kwargs, ref_out):
    """A ``call_method`` node on the window ``x``: its windowed result, or None when it needs
    the full activation."""
    if target in _UNARY_METHODS and len(args) == 1 and not kwargs:
        return x.like(ref_out, getattr(x.val, target)())
    if target in ("contiguous", "clone") and len(args) == 1 and not kwargs:
        return x.like(ref_out, getattr(x.val, target)())
    if target in ("transpose", "permute"):
        return _move_axes(x, target, args[1:], kwargs, ref_out)
    if target in _SHAPE_METHODS:
        return _shape_only(x, ref_out)
    if target == "flip":
        dims = kwargs.get("dims", args[1] if len(args) == 2 else args[1:])
        return _flip(x, dims, ref_out)
    if target == "index_select":
        bound = dict(zip(("dim", "index"), args[1:], strict=False), **kwargs)
        return _index_select(x, bound.get("dim"), bound.get("index"), ref_out)
    return None
