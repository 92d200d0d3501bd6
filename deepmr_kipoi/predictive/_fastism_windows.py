"""Window rules per layer kind for fast ISM (:mod:`deepmr_kipoi.predictive._torch_fastism`).

The layer tables the plan dispatches on, the :class:`_Window` value (mutant values that differ from
the reference only on a stretch of the sequence axis) and, per kind of layer, the rule that runs it on
windows: convolutions and pooling (the window grows by the receptive field, the reference supplies
the context), element-wise arithmetic, concatenation, reductions over the sequence axis, crops,
singleton reshapes, flips, axis moves and zero padding. Each rule returns None when the call falls
outside what it can follow; the plan then runs the layer on the full activation.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepmr_kipoi.predictive._fastism_delta import (
    Flat,
    from_1d,
    scatter_add_conv,
    singleton_spatial,
    to_1d,
)

_UNARY_MODULES = (
    torch.nn.ReLU,
    torch.nn.ReLU6,
    torch.nn.LeakyReLU,
    torch.nn.ELU,
    torch.nn.SELU,
    torch.nn.CELU,
    torch.nn.GELU,
    torch.nn.SiLU,
    torch.nn.Mish,
    torch.nn.Sigmoid,
    torch.nn.Tanh,
    torch.nn.Softplus,
    torch.nn.Hardtanh,
    torch.nn.Hardsigmoid,
    torch.nn.Hardswish,
    torch.nn.PReLU,
    torch.nn.Identity,
    torch.nn.Softsign,
    torch.nn.Tanhshrink,
    torch.nn.Threshold,
)
_DROPOUT_MODULES = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)
_UNARY_FUNCTIONS = {
    torch.relu,
    F.relu,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.gelu,
    F.silu,
    F.elu,
    F.leaky_relu,
    F.softplus,
    F.relu6,
    F.selu,
    F.mish,
    torch.exp,
    torch.log,
    torch.abs,
    torch.square,
    torch.sqrt,
    operator.neg,
    torch.neg,
    F.dropout,
}
_UNARY_METHODS = {"relu", "sigmoid", "tanh", "exp", "log", "abs", "square", "sqrt", "neg"}
_BINARY = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
}
#: in-place operators, computed out of place on windows (the graph's later nodes use their result)
_OUT_OF_PLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}
_BINARY_METHODS = {"add", "sub", "mul", "div"}
_CONVS = (torch.nn.Conv1d, torch.nn.Conv2d)
_CONV_FUNCTIONS = {F.conv1d, F.conv2d}
#: pooling module class -> number of spatial dimensions
_POOLS = {
    torch.nn.MaxPool1d: 1,
    torch.nn.AvgPool1d: 1,
    torch.nn.MaxPool2d: 2,
    torch.nn.AvgPool2d: 2,
}
#: pooling function -> number of spatial dimensions
_POOL_FUNCTIONS = {F.max_pool1d: 1, F.avg_pool1d: 1, F.max_pool2d: 2, F.avg_pool2d: 2}
_REDUCTIONS = {torch.mean: "mean", torch.sum: "sum"}
#: reshapes: followed on windows when they only add or drop singleton axes (see _shape_only)
_SHAPE_FUNCTIONS = {torch.reshape, torch.squeeze, torch.unsqueeze, torch.flatten}
_SHAPE_METHODS = {
    "view",
    "reshape",
    "squeeze",
    "unsqueeze",
    "flatten",
    "unflatten",
    "view_as",
    "reshape_as",
}


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
        return torch.cat(
            [
                _take(x[g : g + 1], start[g * rows : (g + 1) * rows], width, axis)
                for g in range(x.shape[0])
            ]
        )
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
    offsets = torch.unique(shift)
    if offsets.shape[0] == 1:
        # one offset for every mutant (the usual case after a stride-1 layer): a slice copy
        _copy_shifted(base, win.val, int(offsets[0]), axis, None)
    else:
        # a strided layer gives each residue of the window's start its own offset (at most the
        # stride's number): one slice copy per offset, over the rows that have it
        for o in offsets.tolist():
            _copy_shifted(base, win.val, o, axis, torch.nonzero(shift == o).flatten())
    outside = _outside(start, width, win.length, base.dim(), axis)
    # base is this call's own copy: cleared in place
    return base if outside is None else base.masked_fill_(outside, 0.0)


def _copy_shifted(base: torch.Tensor, val: torch.Tensor, o: int, axis: int, rows) -> None:
    """``base[rows, ..., o + j, ...] = val[rows, ..., j, ...]`` wherever ``o + j`` is inside ``base``
    (``rows`` None: every row)."""
    a, b = max(o, 0), min(o + val.shape[axis], base.shape[axis])
    if a >= b:
        return
    part = val.narrow(axis, a - o, b - a)
    if rows is None:
        base.narrow(axis, a, b - a).copy_(part)
    else:
        base.narrow(axis, a, b - a).index_copy_(0, rows, part.index_select(0, rows))


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


def _sliding(
    win: _Window, left: int, reach: int, step: int
) -> tuple[torch.Tensor, int, torch.Tensor, int]:
    """Windows of an operation whose output ``j`` reads inputs ``j * step - left + [0, reach]``.

    Returns the output windows' starts and width, and the input windows' starts and width that
    produce them (every output that can differ from the reference is inside).
    """
    first = -_floor_div(reach - left - win.start, step)
    width = (win.width - 1 + reach) // step + 1
    return first, width, first * step - left, (width - 1) * step + reach + 1


@dataclass(frozen=True)
class ConvSpec:
    """A convolution as ``torch.nn.functional.conv1d``/``conv2d`` (``fn``) takes it."""

    fn: object
    weight: torch.Tensor
    bias: torch.Tensor | None = None
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: int = 1


def _conv(win: _Window, ref_out, spec: ConvSpec):
    """Windowed N-d convolution whose kernel spans only the sequence axis (others have size 1).

    With singleton other spatial axes it runs as a 1-d convolution; with stride 1 and one group, as
    the reference's output plus the scatter of the window's change (:func:`scatter_add_conv`).
    """
    fn, weight, bias, groups = spec.fn, spec.weight, spec.bias, spec.groups
    stride, padding, dilation = spec.stride, spec.padding, spec.dilation
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
    if n > 1 and not (
        singleton_spatial(win.ref.shape, win.axis) and singleton_spatial(ref_out.shape, win.axis)
    ):
        x = _values_on(win, in_start, in_width)
        return win.like(ref_out, fn(x, weight, bias, stride, 0, dilation, groups), first)
    axis = win.axis
    if stride[seq] == 1 and groups == 1:
        # the reference's outputs on the window (a fresh copy), the change added in place
        out = to_1d(_take(ref_out, first, width, axis), axis)
        scatter_add_conv(out, to_1d(_delta(win), axis), weight, dilation[seq])
        return win.like(ref_out, from_1d(out, ref_out.shape, axis), first)
    x = to_1d(_values_on(win, in_start, in_width), axis)
    w1 = weight.reshape(weight.shape[0], weight.shape[1], kernel[seq])
    out = F.conv1d(x, w1, bias, stride[seq], 0, dilation[seq], groups)
    return win.like(ref_out, from_1d(out, ref_out.shape, axis), first)


def _delta(win: _Window) -> torch.Tensor:
    """The mutants' change on their windows (mutant minus reference; 0 at placeholder positions)."""
    change = win.val - _take(win.ref, win.start, win.width, win.axis)
    outside = _outside(win.start, win.width, win.length, win.val.dim(), win.axis)
    return change if outside is None else change.masked_fill_(outside, 0.0)


@dataclass(frozen=True)
class PoolSpec:
    """An ``n``-d max or average pooling as ``torch.nn.functional`` (``fn``) takes it."""

    fn: object
    n: int
    kernel: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: bool = False


def _pool(win: _Window, ref_out, spec: PoolSpec):
    """Windowed N-d max/average pooling along the sequence axis (size-1 windows elsewhere)."""
    fn, n, kernel, stride = spec.fn, spec.n, spec.kernel, spec.stride
    padding, dilation, ceil_mode = spec.padding, spec.dilation, spec.ceil_mode
    seq = win.axis - 2
    if seq < 0:
        return None
    kernel = _per_dim(kernel, n)
    stride = kernel if stride is None or stride == [] or stride == () else _per_dim(stride, n)
    others = [d for d in range(n) if d != seq]
    if (
        any(p != 0 for p in _per_dim(padding, n))
        or any(d != 1 for d in _per_dim(dilation, n))
        or (ceil_mode or any(kernel[d] != 1 or stride[d] != 1 for d in others))
    ):
        return None
    first, width, in_start, in_width = _sliding(win, 0, kernel[seq] - 1, stride[seq])
    if width >= ref_out.shape[win.axis]:
        return None
    x = _values_on(win, in_start, in_width)
    if (
        n > 1
        and singleton_spatial(x.shape, win.axis)
        and singleton_spatial(ref_out.shape, win.axis)
    ):
        # PyTorch's CPU pooling is several times faster in 1-d than over a singleton 2-d axis
        fn1 = F.max_pool1d if fn is F.max_pool2d else F.avg_pool1d
        out = fn1(to_1d(x, win.axis), kernel[seq], stride[seq])
        return win.like(ref_out, from_1d(out, ref_out.shape, win.axis), first)
    return win.like(ref_out, fn(x, kernel, stride), first)


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
        width = int(
            (torch.maximum(wins[0].start + wins[0].width, wins[1].start + wins[1].width) - lo).max()
        )
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
    if (
        dim % ndim in (0, axis)
        or ref_out.dim() != ndim
        or any(
            t.axis != axis or t.length != tensors[0].length or t.ref.dim() != ndim for t in tensors
        )
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
    change = _delta(win).sum(win.axis, keepdim=keepdim)
    if how == "mean":
        change = change / win.length
    return _per_row(ref_out, change.shape[0]) + change


def _per_row(ref: torch.Tensor, rows: int) -> torch.Tensor:
    """A (G, ...) reference broadcastable against ``rows`` window rows (G equal blocks)."""
    return ref if ref.shape[0] == 1 else ref.repeat_interleave(rows // ref.shape[0], dim=0)


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
    moves to its new place. Decided from the reference's shapes, whatever the call's arguments. A
    flatten to ``(N, D)`` becomes a :class:`Flat` (its dense layer computes only the change)."""
    if not isinstance(ref_out, torch.Tensor) or ref_out.shape[0] != win.ref.shape[0]:
        return None
    if ref_out.dim() == 2 and win.ref.dim() > 2 and ref_out.shape[1] == win.ref[0].numel():
        return Flat(win, ref_out)
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
    grown = [
        _Window(t.ref.unsqueeze(dim), t.val.unsqueeze(dim), t.start, t.axis + (dim <= t.axis))
        for t in tensors
    ]
    return _concat(grown, dim, ref_out)


def _batch_concat(tensors, ref_out):
    """``torch.cat`` along the batch axis of windows of equal width (e.g. a batch and its reverse
    complements): the references stack into G blocks, the rows follow block by block."""
    if not all(isinstance(t, _Window) for t in tensors):
        return None
    first = tensors[0]
    rows = first.val.shape[0] // first.ref.shape[0]
    if any(
        t.axis != first.axis
        or t.width != first.width
        or t.ref.dim() != first.ref.dim()
        or t.val.shape[0] != rows * t.ref.shape[0]
        for t in tensors
    ) or (ref_out.shape[0] != sum(t.ref.shape[0] for t in tensors)):
        return None
    return _Window(
        ref_out,
        torch.cat([t.val for t in tensors]),
        torch.cat([t.start for t in tensors]),
        first.axis,
    )


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
    if isinstance(v, Flat):
        full = _materialize(v.win)
        return full.reshape(full.shape[0], -1)
    return _materialize(v) if isinstance(v, _Window) else v


def _in_place(node, modules: dict, kwargs) -> bool:
    """Whether a graph node overwrites its first input."""
    if node.op == "call_module":
        return bool(getattr(modules[node.target], "inplace", False))
    name = getattr(node.target, "__name__", node.target if isinstance(node.target, str) else "")
    return (
        node.target in _OUT_OF_PLACE
        or bool(kwargs.get("inplace"))
        or (name.endswith("_") and not name.startswith("_"))
    )
