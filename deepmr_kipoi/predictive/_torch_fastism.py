"""Receptive-field caching for the mutants of one reference through a PyTorch network (fast ISM).

A point mutation changes a convolution's output only within the convolution's receptive field of the
mutated base, so most of every mutant's activations equal the reference's. The network is traced once
with ``torch.fx`` into a graph; per reference the graph is run once on the reference, keeping every
node's activation; then each batch of mutants is propagated as *windows*: for every mutant only the
stretch of the sequence axis that can differ from the reference is computed, and the reference fills
in the rest wherever an operation needs context (Yuzu, Schreiber et al. 2022; fastISM, Sasse et al.
2022, use the same principle).

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

Anything else (``Flatten``, ``Linear``, reshapes, ...) receives the full activation: the reference's,
repeated per mutant, with the window written in. The result is exact up to float32 rounding: the same
sums are computed over shorter stretches. Each member checks its fast path against full forward passes
on its first batch and falls back to them (logged) on any disagreement or unsupported construct.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

_UNARY_MODULES = (
    torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU, torch.nn.ELU, torch.nn.SELU, torch.nn.CELU,
    torch.nn.GELU, torch.nn.SiLU, torch.nn.Mish, torch.nn.Sigmoid, torch.nn.Tanh, torch.nn.Softplus,
    torch.nn.Hardtanh, torch.nn.Hardsigmoid, torch.nn.Hardswish, torch.nn.PReLU, torch.nn.Identity,
    torch.nn.Softsign, torch.nn.Tanhshrink, torch.nn.Threshold,
)  # fmt: skip
_DROPOUT_MODULES = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)
_UNARY_FUNCTIONS = {
    torch.relu, F.relu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.gelu, F.silu, F.elu,
    F.leaky_relu, F.softplus, F.relu6, F.selu, F.mish, torch.exp, torch.log, torch.abs, torch.square,
    torch.sqrt, operator.neg, torch.neg, F.dropout,
}  # fmt: skip
_UNARY_METHODS = {"relu", "sigmoid", "tanh", "exp", "log", "abs", "square", "sqrt", "neg"}
_BINARY = {
    operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
    torch.div,
}  # fmt: skip
#: in-place operators, computed out of place on windows (the graph's later nodes use their result)
_OUT_OF_PLACE = {operator.iadd: operator.add, operator.isub: operator.sub,
                 operator.imul: operator.mul, operator.itruediv: operator.truediv}  # fmt: skip
_BINARY_METHODS = {"add", "sub", "mul", "div"}
_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d)
_CONV_FUNCTIONS = {F.conv1d, F.conv2d}
#: pooling module class -> number of spatial dimensions
_POOLS = {torch.nn.MaxPool1d: 1, torch.nn.AvgPool1d: 1, torch.nn.MaxPool2d: 2, torch.nn.AvgPool2d: 2}
#: pooling function -> number of spatial dimensions
_POOL_FUNCTIONS = {F.max_pool1d: 1, F.avg_pool1d: 1, F.max_pool2d: 2, F.avg_pool2d: 2}
_REDUCTIONS = {torch.mean: "mean", torch.sum: "sum"}
#: reshapes: followed on windows when they only add or drop singleton axes (see _shape_only)
_SHAPE_FUNCTIONS = {torch.reshape, torch.squeeze, torch.unsqueeze, torch.flatten}
_SHAPE_METHODS = {"view", "reshape", "squeeze", "unsqueeze", "flatten", "unflatten", "view_as",
                  "reshape_as"}  # fmt: skip


class Unsupported(Exception):
    """The network uses something the windowed propagation cannot follow (the member runs fully)."""


@dataclass
class _Window:
    """Mutant values that differ from the reference only on a window of the sequence axis.

    ``ref`` (1, ..., L, ...) is the reference activation with the sequence on axis ``axis``; ``val``
    (M, ..., width, ...) the mutants' values on their windows ``[start, start + width)``, ``start``
    (M,) the windows' first positions. Window positions outside ``[0, L)`` are placeholders (the
    output of padding) and never read as data. After a concatenation along the batch axis (a
    network that appends the reverse complement) ``ref`` holds G references and the M rows are G
    equal consecutive blocks, block g derived from reference g.
    """

    ref: torch.Tensor
    val: torch.Tensor
    start: torch.Tensor
    axis: int

    @property
    def length(self) -> int:
        return self.ref.shape[self.axis]

    @property
    def width(self) -> int:
        return self.val.shape[self.axis]

    def like(self, ref_out: torch.Tensor, val: torch.Tensor, start=None) -> _Window:
        return _Window(ref_out, val, self.start if start is None else start, self.axis)

    def meta(self) -> torch.Tensor:
        """A data-free tensor of the full mutant batch's shape (answers shape queries)."""
        return torch.empty((self.val.shape[0],) + tuple(self.ref.shape[1:]), device="meta")


def _positions(start: torch.Tensor, width: int) -> torch.Tensor:
    return start[:, None] + torch.arange(width, device=start.device)


def _take(x: torch.Tensor, start: torch.Tensor, width: int, axis: int) -> torch.Tensor:
    """Windows ``[start, start + width)`` of axis ``axis`` of ``x`` (1, ..., L, ...) -> (M, ..., width, ...).

    Positions outside ``[0, L)`` read 0 (convolution padding). A batch of G > 1 references (a
    window's reference after a batch concatenation) gives each of G equal consecutive blocks of
    ``start`` its own reference.
    """
    if x.shape[0] > 1:
        rows = start.shape[0] // x.shape[0]
        return torch.cat([_take(x[g : g + 1], start[g * rows : (g + 1) * rows], width, axis)
                          for g in range(x.shape[0])])  # fmt: skip
    moved = x.movedim(axis, -1)
    length = moved.shape[-1]
    rows = moved.reshape(-1, length).t()
    before = max(0, -int(start.min()))
    after = max(0, int(start.max()) + width - length)
    if before or after:
        rows = F.pad(rows, (0, 0, before, after))
    # every window is one row of the sliding-window view: one contiguous copy per mutant
    out = rows.unfold(0, width, 1).index_select(0, start + before)
    out = out.reshape((start.shape[0],) + tuple(moved.shape[1:-1]) + (width,))
    return out if axis in (-1, x.dim() - 1) else out.movedim(-1, axis).contiguous()


def _axis_shape(n: int, size: int, ndim: int, axis: int) -> tuple:
    shape = [1] * ndim
    shape[0], shape[axis] = n, size
    return tuple(shape)


def _outside(start: torch.Tensor, width: int, length: int, ndim: int, axis: int):
    """Mask of window positions outside ``[0, length)`` (broadcastable to a window), or None."""
    if int(start.min()) >= 0 and int(start.max()) + width <= length:
        return None
    idx = _positions(start, width)
    return ((idx < 0) | (idx >= length)).reshape(_axis_shape(idx.shape[0], width, ndim, axis))


def _values_on(win: _Window, start: torch.Tensor, width: int) -> torch.Tensor:
    """The mutants' values on ``[start, start + width)``: the window where it lies, else the reference."""
    axis = win.axis
    base = _take(win.ref, start, width, axis)
    shift = win.start - start
    if bool((shift == shift[0]).all()):
        # one offset for every mutant (the usual case): a slice copy instead of a gather
        o = int(shift[0])
        a, b = max(o, 0), min(o + win.width, width)
        if a < b:
            base.narrow(axis, a, b - a).copy_(win.val.narrow(axis, a - o, b - a))
    else:
        rel = _positions(start, width) - win.start[:, None]
        along = _axis_shape(rel.shape[0], width, win.val.dim(), axis)
        in_window = ((rel >= 0) & (rel < win.width)).reshape(along)
        index = rel.clamp(0, win.width - 1).reshape(along)
        shape = list(win.val.shape)
        shape[axis] = width
        own = win.val.gather(axis, index.expand(shape))
        base = torch.where(in_window, own, base)
    outside = _outside(start, width, win.length, base.dim(), axis)
    return base if outside is None else base.masked_fill(outside, 0.0)


def _materialize(win: _Window) -> torch.Tensor:
    """The full ``(M, ..., L, ...)`` mutant activations of a window."""
    m, length, axis = win.val.shape[0], win.length, win.axis
    ref = win.ref.movedim(axis, -1)
    lead = tuple(ref.shape[1:-1])
    groups = ref.shape[0]
    ref = ref.reshape(groups, -1, length)
    full = torch.cat([ref, ref.new_zeros(groups, ref.shape[1], 1)], dim=2)
    full = full.expand(m, -1, -1) if groups == 1 else full.repeat_interleave(m // groups, dim=0)
    idx = _positions(win.start, win.width)
    # placeholder positions go to the extra column L, which is cut off again
    idx = torch.where((idx >= 0) & (idx < length), idx, length)
    val = win.val.movedim(axis, -1).reshape(m, -1, win.width)
    full = full.scatter(2, idx[:, None, :].expand(-1, full.shape[1], -1), val)
    full = full[:, :, :length].reshape((m,) + lead + (length,))
    return full.movedim(-1, axis).contiguous()


def _floor_div(a: torch.Tensor, b: int) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="floor")


def _per_dim(v, n: int) -> tuple:
    """A conv/pool argument as one int per spatial dimension."""
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(i) for i in v)
    return v * n if len(v) == 1 else v


def _sliding(win: _Window, left: int, reach: int, step: int) -> tuple[torch.Tensor, int, torch.Tensor, int]:
    """Windows of an operation whose output ``j`` reads inputs ``j * step - left + [0, reach]``.

    Returns the output windows' starts and width, and the input windows' starts and width that
    produce them (every output that can differ from the reference is inside).
    """
    first = -_floor_div(reach - left - win.start, step)
    width = (win.width - 1 + reach) // step + 1
    return first, width, first * step - left, (width - 1) * step + reach + 1


def _conv(win: _Window, ref_out, fn, weight, bias, stride, padding, dilation, groups):
    """Windowed N-d convolution whose kernel spans only the sequence axis (others have size 1)."""
    n = weight.dim() - 2
    seq = win.axis - 2
    if seq < 0 or win.ref.dim() != weight.dim() or ref_out.dim() != win.ref.dim():
        return None
    kernel = tuple(weight.shape[2:])
    stride, dilation = _per_dim(stride, n), _per_dim(dilation, n)
    reach = dilation[seq] * (kernel[seq] - 1)
    if isinstance(padding, str):
        left = 0 if padding == "valid" else reach // 2
        pads = None
    else:
        pads = _per_dim(padding, n)
        left = pads[seq]
    others = [d for d in range(n) if d != seq]
    if any(stride[d] != 1 or kernel[d] != 1 for d in others) or (
        pads is not None and any(pads[d] != 0 for d in others)
    ):
        return None
    first, width, in_start, in_width = _sliding(win, left, reach, stride[seq])
    if width >= ref_out.shape[win.axis]:
        return None
    x = _values_on(win, in_start, in_width)
    return win.like(ref_out, fn(x, weight, bias, stride, 0, dilation, groups), first)


def _pool(win: _Window, ref_out, fn, n, kernel, stride, padding=0, dilation=1, ceil_mode=False,
          **extra):  # fmt: skip
    """Windowed N-d max/average pooling along the sequence axis (size-1 windows elsewhere)."""
    seq = win.axis - 2
    if seq < 0:
        return None
    kernel = _per_dim(kernel, n)
    stride = kernel if stride is None or stride == [] or stride == () else _per_dim(stride, n)
    others = [d for d in range(n) if d != seq]
    if any(p != 0 for p in _per_dim(padding, n)) or any(d != 1 for d in _per_dim(dilation, n)) or (
        ceil_mode or any(kernel[d] != 1 or stride[d] != 1 for d in others)
    ):
        return None
    first, width, in_start, in_width = _sliding(win, 0, kernel[seq] - 1, stride[seq])
    if width >= ref_out.shape[win.axis]:
        return None
    x = _values_on(win, in_start, in_width)
    return win.like(ref_out, fn(x, kernel, stride, **extra), first)


def _binary(fn, a, b, ref_out, kwargs):
    wins = [v for v in (a, b) if isinstance(v, _Window)]
    axis = wins[0].axis
    if ref_out.dim() <= axis or any(w.axis != axis for w in wins):
        return None
    length = ref_out.shape[axis]
    if any(w.length != length or w.ref.dim() != ref_out.dim() for w in wins):
        return None
    if len(wins) == 2:
        lo = torch.minimum(wins[0].start, wins[1].start)
        width = int((torch.maximum(wins[0].start + wins[0].width, wins[1].start + wins[1].width)
                     - lo).max())  # fmt: skip
    else:
        lo, width = wins[0].start, wins[0].width
    if width >= length:
        return None

    def on_window(v):
        if isinstance(v, _Window):
            return _values_on(v, lo, width) if len(wins) == 2 else v.val
        if isinstance(v, torch.Tensor) and v.dim() >= 1:
            if v.dim() > ref_out.dim():
                return None
            v = v.reshape((1,) * (ref_out.dim() - v.dim()) + tuple(v.shape))
            if v.shape[axis] == 1:
                return v if v.shape[0] == 1 else None
            if v.shape[axis] != length or v.shape[0] != 1:
                return None
            return _take(v, lo, width, axis)
        return v

    operands = [on_window(a), on_window(b)]
    if any(v is None for v in operands):
        return None
    return wins[0].like(ref_out, fn(*operands, **kwargs), lo)


def _concat(tensors, dim, ref_out):
    """``torch.cat`` of windows along a channel axis: each on the union of their windows."""
    if not tensors or not all(isinstance(t, _Window) for t in tensors):
        return None
    axis, ndim = tensors[0].axis, tensors[0].ref.dim()
    if dim % ndim in (0, axis) or ref_out.dim() != ndim or any(
        t.axis != axis or t.length != tensors[0].length or t.ref.dim() != ndim for t in tensors
    ):
        return None
    lo = tensors[0].start
    hi = tensors[0].start + tensors[0].width
    for t in tensors[1:]:
        lo, hi = torch.minimum(lo, t.start), torch.maximum(hi, t.start + t.width)
    width = int((hi - lo).max())
    if width >= tensors[0].length:
        return None
    return tensors[0].like(ref_out, torch.cat([_values_on(t, lo, width) for t in tensors], dim), lo)


def _reduce(win: _Window, how: str, dim, keepdim: bool, ref_out):
    axes = dim if isinstance(dim, tuple | list) else (dim,)
    if len(axes) != 1 or axes[0] % win.ref.dim() != win.axis:
        return None
    change = win.val - _take(win.ref, win.start, win.width, win.axis)
    outside = _outside(win.start, win.width, win.length, win.val.dim(), win.axis)
    if outside is not None:
        change = change.masked_fill(outside, 0.0)
    change = change.sum(win.axis, keepdim=keepdim)
    if how == "mean":
        change = change / win.length
    return _per_row(ref_out, change.shape[0]) + change


def _per_row(ref: torch.Tensor, rows: int) -> torch.Tensor:
    """A (G, ...) reference broadcastable against ``rows`` window rows (G equal blocks)."""
    return ref if ref.shape[0] == 1 else ref.repeat_interleave(rows // ref.shape[0], dim=0)


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
            raise Unsupported(f"torch.fx cannot trace the model ({type(err).__name__}: {err})") from err
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
            ref_env = self.reference(ref_x, masks, ref_shared)
            out, env = self._propagate(ref_env, x, masks, win_shared)
            if ref_shared is None:
                ref_shared, win_shared = ref_env, env
            outs.append(out)
        return outs

    def _propagate(self, ref_env: dict, x: torch.Tensor, masks, shared: dict | None):
        ref_x = ref_env[self.nodes[0]]
        if shared is None:
            env = {self.nodes[0]: self._input_window(ref_x, x)}
            self.windowed_convolutions = 0
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
            torch.fx.node.map_arg(node.args, lambda n: env[n]), _as_tensor)
        kwargs = torch.fx.node.map_aggregate(
            torch.fx.node.map_arg(node.kwargs, lambda n: env[n]), _as_tensor)
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
        torch.fx.node.map_aggregate((args, kwargs),
                                    lambda a: wins.append(a) if isinstance(a, _Window) else a)  # fmt: skip
        if not wins:
            return self._full(node, env, None, masks)
        if not isinstance(ref_out, torch.Tensor):
            # shape queries (x.shape, x.size(0), ...) answered without the data
            def to_meta(a):
                return a.meta() if isinstance(a, _Window) else a

            answer = self._call(node, torch.fx.node.map_aggregate(args, to_meta),
                                torch.fx.node.map_aggregate(kwargs, to_meta))  # fmt: skip
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
        reduced = self._reduction(node, target, args, kwargs, ref_out)
        if reduced is not None or ref_out.dim() < 2:
            return reduced
        if node.op == "call_function" and target in _BINARY | set(_OUT_OF_PLACE) and len(args) == 2:
            return _binary(_OUT_OF_PLACE.get(target, target), args[0], args[1], ref_out, kwargs)
        if node.op == "call_method" and target in _BINARY_METHODS and len(args) == 2:
            return _binary(getattr(torch, target), args[0], args[1], ref_out, kwargs)
        if node.op == "call_function" and target in (torch.cat, torch.stack):
            tensors = args[0] if args else kwargs.get("tensors")
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if target is torch.stack:
                return _stack(tensors, dim, ref_out)
            if isinstance(tensors, list | tuple) and tensors and dim % ref_out.dim() == 0:
                return _batch_concat(tensors, ref_out)
            return _concat(tensors, dim, ref_out)
        x = args[0] if args else None
        if not isinstance(x, _Window):
            return None
        if node.op == "call_module":
            return self._module_op(node, target, x, ref_out, masks)
        if node.op == "call_function":
            if target in _CONV_FUNCTIONS:
                bound = _bind(args, kwargs)
                return _conv(x, ref_out, target, bound["weight"], bound.get("bias"),
                             bound.get("stride", 1), bound.get("padding", 0),
                             bound.get("dilation", 1), bound.get("groups", 1))  # fmt: skip
            if target in _POOL_FUNCTIONS and len(args) <= 3 and not (
                set(kwargs) - {"kernel_size", "stride"}
            ):
                kernel = kwargs.get("kernel_size", args[1] if len(args) > 1 else None)
                stride = kwargs.get("stride", args[2] if len(args) > 2 else None)
                return _pool(x, ref_out, target, _POOL_FUNCTIONS[target], kernel, stride)
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
                return _pad(x, rest.get("pad"), rest.get("mode", "constant"), rest.get("value"),
                            ref_out)  # fmt: skip
            return None
        if node.op == "call_method":
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

    def _module_op(self, node, target, x: _Window, ref_out, masks):
        if isinstance(target, _CONVS):
            if target.padding_mode != "zeros" or x.ref.dim() != target.weight.dim():
                return None
            fn = F.conv1d if isinstance(target, torch.nn.Conv1d) else F.conv2d
            return _conv(x, ref_out, fn, target.weight, target.bias, target.stride, target.padding,
                         target.dilation, target.groups)  # fmt: skip
        n = next((d for cls, d in _POOLS.items() if isinstance(target, cls)), None)
        if n is not None and x.ref.dim() == n + 2:
            if isinstance(target, torch.nn.MaxPool1d | torch.nn.MaxPool2d):
                if target.return_indices:
                    return None
                fn = F.max_pool1d if n == 1 else F.max_pool2d
                return _pool(x, ref_out, fn, n, target.kernel_size, target.stride,
                             target.padding, target.dilation, target.ceil_mode)  # fmt: skip
            if getattr(target, "divisor_override", None):
                return None
            fn = F.avg_pool1d if n == 1 else F.avg_pool2d
            return _pool(x, ref_out, fn, n, target.kernel_size, target.stride, target.padding,
                         1, target.ceil_mode)  # fmt: skip
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
            return x.like(ref_out, target(x.val.clone() if getattr(target, "inplace", False)
                                          else x.val))  # fmt: skip
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


def _crop(win: _Window, index, ref_out):
    """``x[..., a:b]`` along the sequence axis (other axes untouched) as a window."""
    index = index if isinstance(index, tuple) else (index,)
    if Ellipsis in index:
        pos = index.index(Ellipsis)
        index = index[:pos] + (slice(None),) * (win.ref.dim() - len(index) + 1) + index[pos + 1 :]
    index = index + (slice(None),) * (win.ref.dim() - len(index))
    if len(index) != win.ref.dim() or index[0] != slice(None):
        return None
    ints = [d for d, i in enumerate(index) if isinstance(i, int)]
    if ints and win.axis not in ints and all(isinstance(i, int | slice) for i in index):
        # x[:, c, ...]: a channel picked, its axis dropped (the zoo's alphabet swaps do this)
        if any(index[d] != slice(None) for d in range(win.ref.dim()) if d not in ints):
            return None
        axis = win.axis - sum(d < win.axis for d in ints)
        return _Window(ref_out, win.val[index], win.start, axis)
    if ref_out.dim() != win.ref.dim():
        return None
    if index[win.axis] == slice(None):
        # channel selection or reordering (e.g. ACGT -> AGCT) leaves the sequence axis alone
        return win.like(ref_out, win.val[index])
    if any(i != slice(None) for d, i in enumerate(index) if d != win.axis):
        return None
    if not isinstance(index[win.axis], slice):
        return None
    a, b, step = index[win.axis].indices(win.length)
    if step != 1 or ref_out.dim() != win.ref.dim() or b - a != ref_out.shape[win.axis]:
        return None
    return win.like(ref_out, win.val, win.start - a)


def _nonsingleton(shape) -> list[tuple[int, int]]:
    """(axis, size) of every axis after the batch with size > 1."""
    return [(d, n) for d, n in enumerate(shape) if d > 0 and n > 1]


def _shape_only(win: _Window, ref_out):
    """A reshape that only adds or removes singleton axes ((N, C, 1, L) <-> (N, C, L), squeeze,
    unsqueeze, the zoo's ``Lambda`` views): the window's values are reshaped alike, the sequence axis
    moves to its new place. Decided from the reference's shapes, whatever the call's arguments."""
    if not isinstance(ref_out, torch.Tensor) or ref_out.shape[0] != win.ref.shape[0]:
        return None
    before, after = _nonsingleton(win.ref.shape), _nonsingleton(ref_out.shape)
    if [n for _, n in before] != [n for _, n in after] or win.length <= 1:
        return None
    axis = after[[d for d, _ in before].index(win.axis)][0]
    shape = list(ref_out.shape)
    shape[0], shape[axis] = win.val.shape[0], win.width
    return _Window(ref_out, win.val.reshape(shape), win.start, axis)


def _flip(win: _Window, dims, ref_out):
    """``torch.flip`` of a window: reversing the sequence axis mirrors the window's position."""
    if dims is None or not isinstance(ref_out, torch.Tensor) or ref_out.shape != win.ref.shape:
        return None
    dims = [int(d) % win.ref.dim() for d in (dims if isinstance(dims, list | tuple) else (dims,))]
    if 0 in dims:
        return None
    start = win.length - win.start - win.width if win.axis in dims else win.start
    return _Window(ref_out, win.val.flip(dims), start, win.axis)


def _index_select(win: _Window, dim, index, ref_out):
    """``index_select`` on a channel axis (applied to the window), or reversing the sequence axis."""
    if dim is None or not isinstance(index, torch.Tensor) or ref_out.dim() != win.ref.dim():
        return None
    dim = int(dim) % win.ref.dim()
    if dim == 0:
        return None
    if dim != win.axis:
        return win.like(ref_out, win.val.index_select(dim, index.to(win.val.device)))
    reverse = torch.arange(win.length - 1, -1, -1, device=index.device)
    if index.shape == reverse.shape and bool((index == reverse).all()):
        return _flip(win, [dim], ref_out)
    return None


def _stack(tensors, dim, ref_out):
    """``torch.stack`` of windows along a new channel axis."""
    if not tensors or not all(isinstance(t, _Window) for t in tensors):
        return None
    dim = int(dim) % (tensors[0].ref.dim() + 1)
    if dim == 0:
        return None
    grown = [_Window(t.ref.unsqueeze(dim), t.val.unsqueeze(dim), t.start,
                     t.axis + (dim <= t.axis)) for t in tensors]  # fmt: skip
    return _concat(grown, dim, ref_out)


def _batch_concat(tensors, ref_out):
    """``torch.cat`` along the batch axis of windows of equal width (e.g. a batch and its reverse
    complements): the references stack into G blocks, the rows follow block by block."""
    if not all(isinstance(t, _Window) for t in tensors):
        return None
    first = tensors[0]
    rows = first.val.shape[0] // first.ref.shape[0]
    if any(t.axis != first.axis or t.width != first.width or t.ref.dim() != first.ref.dim()
           or t.val.shape[0] != rows * t.ref.shape[0] for t in tensors) or (
        ref_out.shape[0] != sum(t.ref.shape[0] for t in tensors)
    ):  # fmt: skip
        return None
    return _Window(ref_out, torch.cat([t.val for t in tensors]),
                   torch.cat([t.start for t in tensors]), first.axis)  # fmt: skip


def _move_axes(win: _Window, how: str, args, kwargs, ref_out):
    """``transpose``/``permute`` of a window: the same on its values, the sequence axis moves along."""
    if kwargs or ref_out.dim() != win.ref.dim():
        return None
    ndim = win.ref.dim()
    if how == "transpose":
        if len(args) != 2:
            return None
        a, b = (int(v) % ndim for v in args)
        order = list(range(ndim))
        order[a], order[b] = order[b], order[a]
    else:
        order = [int(v) % ndim for v in (args[0] if len(args) == 1 else args)]
    if order[0] != 0:
        return None
    return _Window(ref_out, win.val.permute(order), win.start, order.index(win.axis))


def _pad(win: _Window, pad, mode, value, ref_out):
    """Zero padding (``F.pad``, ``ConstantPad*d``/``ZeroPad*d``) of a window: the window moves by the
    padding before it; padding of other axes is applied to the window's values."""
    if mode != "constant" or value not in (None, 0, 0.0) or pad is None or len(pad) % 2:
        return None
    if ref_out.dim() != win.ref.dim():
        return None
    pair = win.ref.dim() - 1 - win.axis  # F.pad lists (before, after) pairs from the last axis back
    pad = [int(p) for p in pad]
    left = pad[2 * pair] if pair < len(pad) // 2 else 0
    if pair < len(pad) // 2:
        pad[2 * pair] = pad[2 * pair + 1] = 0
    # window positions beyond the old ends become padding: they must hold the pad value
    outside = _outside(win.start, win.width, win.length, win.val.dim(), win.axis)
    val = win.val if outside is None else win.val.masked_fill(outside, 0.0)
    if any(pad):
        val = F.pad(val, pad)
    return win.like(ref_out, val, win.start + left)


def _bind(args, kwargs) -> dict:
    names = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


def _as_tensor(v):
    return _materialize(v) if isinstance(v, _Window) else v


def _in_place(node, modules: dict, kwargs) -> bool:
    """Whether a graph node overwrites its first input."""
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    name = getattr(node.target, "__name__", node.target if isinstance(node.target, str) else "")
    return (node.target in _OUT_OF_PLACE or bool(kwargs.get("inplace"))
            or (name.endswith("_") and not name.startswith("_")))  # fmt: skip


_MISSING = object()


def _concrete(v):
    """The example value behind a proxy (or ``v`` itself), ``_MISSING`` when there is none."""
    if isinstance(v, torch.fx.Proxy):
        return v.node.meta.get("concrete", _MISSING)
    return v


def _batch_derived(v) -> bool:
    return isinstance(v, torch.fx.Proxy) and bool(v.node.meta.get("batch"))


class _ShapeProxy(torch.fx.Proxy):
    """A proxy that answers shape questions from an example input: ``len()``, ``x.size(d)``/``x.shape``
    for ``d`` >= 1 and ``x.dim()`` become Python integers, so control flow on them (the Kipoi zoo's
    ``1 == len(x.size())`` wrappers, ``range(x.size(1))`` loops) is resolved while tracing. The batch
    size stays symbolic: the traced graph serves any number of mutants of inputs of this shape."""

    def _value(self):
        return self.node.meta.get("concrete", _MISSING)

    def size(self, dim=None):
        value = self._value()
        if not isinstance(value, torch.Tensor):
            return self.tracer.create_proxy("call_method", "size", (self,) if dim is None
                                            else (self, dim), {})  # fmt: skip
        if dim is None:
            return (self.tracer.create_proxy("call_method", "size", (self, 0), {}),
                    *value.shape[1:])  # fmt: skip
        dim = int(dim) % value.dim()
        if dim == 0:
            return self.tracer.create_proxy("call_method", "size", (self, 0), {})
        return int(value.shape[dim])

    @property
    def shape(self):
        return self.size()

    def dim(self):
        value = self._value()
        if isinstance(value, torch.Tensor):
            return value.dim()
        return self.tracer.create_proxy("call_method", "dim", (self,), {})

    @property
    def ndim(self):
        return self.dim()

    def __len__(self) -> int:
        value = self._value()
        if isinstance(value, tuple | list | torch.Size) and not _batch_derived(self):
            return len(value)
        return super().__len__()


@contextlib.contextmanager
def _unpatched_modules():
    """``nn.Module`` calls and attribute reads as outside tracing (``torch.fx`` patches them so that
    they emit graph nodes), for computing example values in the middle of a trace."""
    from torch.fx import _symbolic_trace as fx_trace

    patched = torch.nn.Module.__call__, torch.nn.Module.__getattr__
    torch.nn.Module.__call__ = fx_trace._orig_module_call
    torch.nn.Module.__getattr__ = fx_trace._orig_module_getattr
    try:
        yield
    finally:
        torch.nn.Module.__call__, torch.nn.Module.__getattr__ = patched


def _plain_getattr(obj, name: str):
    """``getattr`` past the tracer's patched ``Module.__getattr__`` (which would emit a node)."""
    if isinstance(obj, torch.nn.Module):
        for table in (obj._parameters, obj._buffers, obj._modules):
            if name in table:
                return table[name]
        if name in obj.__dict__:
            return obj.__dict__[name]
    return getattr(obj, name)


class _ShapeTracer(torch.fx.Tracer):
    """``torch.fx`` tracing with an example input (see :class:`_ShapeProxy`); a submodule that still
    cannot be traced becomes one opaque graph node (``opaque`` names it and the reason), which the
    plan runs on full activations while the rest of the network keeps its windows."""

    def __init__(self, example: torch.Tensor | None):
        super().__init__()
        self.example = example
        #: module path -> why it could not be traced into
        self.opaque: dict[str, str] = {}

    def proxy(self, node):
        return _ShapeProxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):  # fmt: skip
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if self.example is None:
            return proxy
        found = []
        torch.fx.node.map_aggregate((args, kwargs), lambda v: found.append(v) if isinstance(
            v, torch.fx.Proxy) else v)  # fmt: skip
        values = torch.fx.node.map_aggregate((args, kwargs), _concrete)
        missing = []
        torch.fx.node.map_aggregate(values, lambda v: missing.append(v) if v is _MISSING else v)
        if missing:
            return proxy
        a, k = values
        with torch.no_grad(), _unpatched_modules():
            if kind == "placeholder":
                value = self.example
            elif kind == "get_attr":
                value = self.root
                for part in str(target).split("."):
                    value = _plain_getattr(value, part)
            elif kind == "call_function":
                value = target(*a, **k)
            elif kind == "call_method":
                value = getattr(a[0], target)(*a[1:], **k)
            else:
                value = self.root.get_submodule(target)(*a, **k)
        proxy.node.meta["concrete"] = value
        if (kind == "call_method" and target == "size" and tuple(a[1:]) == (0,)) or (
            not isinstance(value, torch.Tensor) and any(_batch_derived(p) for p in found)
        ):
            proxy.node.meta["batch"] = True
        return proxy

    def to_bool(self, obj) -> bool:
        value = _concrete(obj)
        if value is _MISSING or isinstance(value, torch.Tensor) or _batch_derived(obj):
            # data- or batch-size-dependent control flow cannot be fixed by one example
            return super().to_bool(obj)
        return bool(value)

    def call_module(self, m, forward, args, kwargs):
        proxies = []
        torch.fx.node.map_aggregate((args, kwargs), lambda v: proxies.append(v) if isinstance(
            v, torch.fx.Proxy) else v)  # fmt: skip
        if not proxies:
            # computing an example value (create_proxy): run the module itself, record nothing
            return forward(*args, **kwargs)
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        last = self.graph._root.prev
        stack = dict(self.module_stack)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as err:  # noqa: BLE001 - any tracing failure: the module becomes opaque
            while self.graph._root.prev is not last:
                self.graph.erase_node(self.graph._root.prev)
            self.module_stack.clear()
            self.module_stack.update(stack)
            self.opaque[path] = f"{type(err).__name__}: {err}"
            return self.create_proxy("call_module", path, args, kwargs)


class _OneInput(torch.nn.Module):
    """Calls the wrapped module with one input, so ``torch.fx`` never sees its optional arguments."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module
        params = list(inspect.signature(module.forward).parameters.values())
        if any(p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY,
               p.POSITIONAL_OR_KEYWORD) for p in params[1:]):  # fmt: skip
            raise Unsupported("the model's forward needs more than one input")

    def forward(self, x):
        return self.module(x)
