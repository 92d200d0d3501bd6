"""Change-only arithmetic for fast ISM (:mod:`deepmr_kipoi.predictive._torch_fastism`): a linear
layer's output for a mutant is the reference's output plus the layer applied to the mutant's
*change*, which is zero outside the mutant's window.

* Convolutions (stride 1, one group): the change on a window of ``w`` input positions reaches
  ``w + reach`` outputs. Computing those outputs from the inputs costs ``(w + reach) * k`` products
  per channel pair; scattering the change through the kernel (a transposed convolution, here one
  matrix product and an overlap-add) costs ``w * k``. The result is the reference's output on the
  output window plus that scatter.
* A dense layer after a flatten (the Basset and DeepSEA families): only the columns of the flattened
  activation inside the window change, so the dense layer's change is ``W[:, window] @ change``.
  Mutants of one batch sit at nearby positions; they are grouped by window start so that each group
  is one matrix product over the union of its windows (at most twice a window wide).

Both are exact up to float32 rounding: the same products are summed, the reference's share once.
Convolutions and pooling with a singleton spatial axis (``(N, C, 1, L)``, ``(N, C, L, 1)``) run as
1-d ones, which PyTorch's CPU kernels compute several times faster than their 2-d form (measured on
the zoo's layer sizes: a Basset convolution on windows 3x, max pooling 9x); the scattered change
beat the direct convolution on every zoo layer size tried, the 4-channel first layer included.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

# prepared weights per parameter (by identity; dropped with it): a kernel regrouped by tap
# for the scatter, a dense matrix reordered so that a window's columns are one block
_PREPARED: dict[int, tuple[weakref.ref, dict]] = {}


def _prepared(weight: torch.Tensor, key, make):
    """``make()`` cached for ``weight`` (recomputed when the tensor changes in place)."""
    entry = _PREPARED.get(id(weight))
    if entry is None or entry[0]() is not weight:
        entry = (weakref.ref(weight), {})
        _PREPARED[id(weight)] = entry
        weakref.finalize(weight, _PREPARED.pop, id(weight), None)
    table = entry[1]
    try:
        version = weight._version
    except RuntimeError:  # an inference tensor: it cannot change in place outside inference mode
        version = None
    hit = table.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = make()
    table[key] = (version, value)
    return value


def to_1d(t: torch.Tensor, axis: int) -> torch.Tensor:
    """``(M, C, ..., L, ...)`` with singleton other spatial axes -> ``(M, C, L)``."""
    return t.movedim(axis, -1).reshape(t.shape[0], t.shape[1], t.shape[axis])


def from_1d(t: torch.Tensor, like_shape, axis: int) -> torch.Tensor:
    """Inverse of :func:`to_1d` for a result of width ``t.shape[-1]`` shaped like ``like_shape``."""
    shape = list(like_shape)
    shape[0], shape[1], shape[axis] = t.shape[0], t.shape[1], t.shape[-1]
    moved = shape[:axis] + shape[axis + 1 :] + [shape[axis]]
    return t.reshape(moved).movedim(-1, axis)


def singleton_spatial(shape, axis: int) -> bool:
    """Whether every spatial axis but ``axis`` of an activation shape has size 1."""
    return all(n == 1 for d, n in enumerate(shape) if d >= 2 and d != axis)


def scatter_add_conv(
    out: torch.Tensor, delta1d: torch.Tensor, weight: torch.Tensor, dilation: int
) -> torch.Tensor:
    """Add the change of a stride-1 convolution's outputs, scattered from its inputs' change, to ``out``.

    One matrix product of every (mutant, window position) row with every kernel tap at once, then
    one shifted add per tap (overlap-add): the same products as a transposed convolution, which
    PyTorch's CPU kernel ran 20-30% slower on the zoo's layer sizes (DeepSEA, Basset, measured
    through the whole cached ISM in one process).

    Parameters
    ----------
    out : torch.Tensor, shape (M, C_out, w + dilation * (K - 1))
        Updated in place (the reference's outputs on the output window, or zeros) and returned.
    delta1d : torch.Tensor, shape (M, C_in, w)
        The inputs' change on a window (zero where they do not change).
    weight : torch.Tensor, shape (C_out, C_in, ..., K, ...)
        The convolution's kernel, singleton except along the sequence.
    dilation : int

    Returns
    -------
    torch.Tensor
        ``out``: output ``j`` gains the change of the convolution output whose receptive field
        starts ``dilation * (K - 1) - j`` positions before the window.
    """
    m, c_in, width = delta1d.shape
    c_out, taps = weight.shape[0], weight[0, 0].numel()
    # (C_in, K * C_out): column k * C_out + o holds tap k of output channel o
    by_tap = _prepared(
        weight,
        "taps",
        lambda: (
            weight.reshape(c_out, c_in, taps)
            .permute(1, 2, 0)
            .reshape(c_in, taps * c_out)
            .contiguous()
        ),
    )
    rows = delta1d.transpose(1, 2).reshape(m * width, c_in)
    products = (rows @ by_tap).view(m, width, taps, c_out)
    for k in range(taps):
        # input t through tap k reaches output t + dilation * (K - 1 - k)
        out.narrow(2, dilation * (taps - 1 - k), width).add_(products[:, :, k].transpose(1, 2))
    return out


@dataclass
class Flat:
    """A flattened windowed activation: row ``m`` is ``win``'s mutant ``m`` flattened in row-major
    order of ``win.ref.shape[1:]``; ``ref`` (G, D) is the reference's flattened activation."""

    win: object
    ref: torch.Tensor


def dense_change(flat: Flat, weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``weight @ (mutant - reference)`` for every row of a :class:`Flat`, from the window only.

    Parameters
    ----------
    flat : Flat
    weight : torch.Tensor, shape (O, D)
    delta : torch.Tensor
        The window's change (mutant minus reference, zero outside the sequence), shaped like
        ``flat.win.val``.

    Returns
    -------
    torch.Tensor, shape (M, O)
    """
    win = flat.win
    axis, length, width = win.axis, win.length, win.width
    dims = tuple(win.ref.shape[1:])
    out_features = weight.shape[0]
    # W as (O, L, R): the columns of sequence positions [a, b) are one (O, (b - a) * R) block
    blocks = _prepared(
        weight,
        ("blocks", dims, axis),
        lambda: (
            weight.reshape((out_features,) + dims)
            .movedim(axis, 1)
            .reshape(out_features, length, -1)
            .contiguous()
        ),
    )
    rest = blocks.shape[2]
    change = delta.movedim(axis, 1).reshape(delta.shape[0], width, rest)
    out = delta.new_zeros(delta.shape[0], out_features)
    starts = win.start
    for rows, lo, hi in _groups(starts, width, length):
        span = hi - lo
        # each row's window placed in the group's span; positions outside [0, L) go to a spare slot
        pos = starts.index_select(0, rows)[:, None] + torch.arange(width, device=starts.device) - lo
        pos = torch.where((pos >= 0) & (pos < span), pos, span)
        padded = change.new_zeros(rows.shape[0], span + 1, rest)
        padded.scatter_(1, pos[:, :, None].expand(-1, -1, rest), change.index_select(0, rows))
        cols = blocks[:, lo:hi].reshape(out_features, span * rest)
        out.index_copy_(0, rows, padded[:, :span].reshape(rows.shape[0], -1) @ cols.t())
    return out


def _groups(starts: torch.Tensor, width: int, length: int):
    """Rows grouped by window start, each group's windows within a span of at most ``2 * width``
    positions: ``(rows, lo, hi)`` with ``[lo, hi)`` the group's span clipped to ``[0, L)``."""
    order = torch.argsort(starts)
    sorted_starts = starts.index_select(0, order).tolist()
    first = 0
    while first < len(sorted_starts):
        last = first
        while (
            last + 1 < len(sorted_starts) and sorted_starts[last + 1] - sorted_starts[first] < width
        ):
            last += 1
        lo = max(sorted_starts[first], 0)
        hi = min(sorted_starts[last] + width, length)
        if hi > lo:
            yield order[first : last + 1], lo, hi
        first = last + 1
