"""Splits, strided slices, selects and rolls in the slices XNNPACK takes: static, contiguous, step 1.

ExecuTorch 1.5's XNNPACK partitioner delegates ``slice_copy`` with step 1 only, and no
``split_with_sizes_copy``, ``select_copy`` or ``roll``: LeViT's ``q, k, v = qkv.split(...)`` and
its subsampling ``x[:, ::2, ::2]``, PVT's class token ``x[:, 0]`` and Swin's cyclic shift
``torch.roll`` (which core ATen turns into an ``index_select`` with computed indices) ran on the
portable kernels. A split is its slices, one per piece. A slice with step ``s`` over ``m``
elements is a step-1 slice of its ``m // s`` whole groups viewed as ``(m // s, s)`` along that
axis, of which the first column is the result (another step-1 slice, and a view to drop the
axis); when ``m`` is not a multiple of ``s`` the last element is a one-element slice joined on
by ``cat``. (Zero-padding to whole groups instead gives a ``constant_pad_nd`` that XNNPACK
refuses between quantized tensors: ExecuTorch 1.5.1's program fails to load with
``xnn_status_invalid_parameter`` for its static pad node.) A select is a one-element slice
viewed without the axis. A roll by ``s`` along an axis of size ``n`` is the concatenation of its
last ``s`` and first ``n - s`` elements (one slice pair and a ``cat`` per rolled axis; a roll with
no axis rolls the flattened tensor). Static shapes and floating-point tensors only (an integer
select or roll is index arithmetic, folded or left to the portable kernels).
"""
from __future__ import annotations

import torch

from edgeml.backends.xnnpack.passes import static


def split_as_slices(x: torch.Tensor, split_sizes, dim: int = 0):
    if not static(*x.shape, *split_sizes):
        return NotImplemented
    dim %= x.dim()
    out, start = [], 0
    for size in split_sizes:
        out.append(torch.ops.aten.slice.Tensor(x, dim, start, start + size, 1))
        start += size
    return out


def split_tensor_as_slices(x: torch.Tensor, split_size: int, dim: int = 0):
    if not static(*x.shape, split_size):
        return NotImplemented
    n = x.shape[dim % x.dim()]
    sizes = [min(split_size, n - s) for s in range(0, n, split_size)] if split_size else [n]
    return split_as_slices(x, sizes, dim)


def strided_slice_as_view(x: torch.Tensor, dim: int = 0, start=None, end=None, step: int = 1):
    if step == 1 or not static(*x.shape) or not all(isinstance(v, int) or v is None for v in (start, end, step)):
        return NotImplemented
    dim %= x.dim()
    n = x.shape[dim]
    begin, stop, _ = slice(start, end).indices(n)
    m = max(stop - begin, 0)
    if m == 0:
        return NotImplemented
    count = -(-m // step)
    whole = m // step  # groups of ``step`` elements that lie inside the slice
    shape = list(x.shape)
    pieces = []
    if whole:
        y = x
        if (begin, begin + whole * step) != (0, n):
            y = torch.ops.aten.slice.Tensor(x, dim, begin, begin + whole * step, 1)
        y = y.reshape(shape[:dim] + [whole, step] + shape[dim + 1:])
        y = torch.ops.aten.slice.Tensor(y, dim + 1, 0, 1, 1)
        pieces.append(y.reshape(shape[:dim] + [whole] + shape[dim + 1:]))
    if count > whole:  # the last element, alone in a shorter group
        last = begin + whole * step
        pieces.append(torch.ops.aten.slice.Tensor(x, dim, last, last + 1, 1))
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim)


def select_as_slice(x: torch.Tensor, dim: int, index: int):
    if not static(*x.shape) or not isinstance(index, int) or x.dim() == 0 or not x.dtype.is_floating_point:
        return NotImplemented
    dim %= x.dim()
    index %= x.shape[dim]
    y = torch.ops.aten.slice.Tensor(x, dim, index, index + 1, 1)
    return y.reshape([s for d, s in enumerate(x.shape) if d != dim])


def roll_as_slices(x: torch.Tensor, shifts, dims=()):
    shifts, dims = list(shifts), list(dims)
    if (not static(*x.shape, *shifts) or x.dim() == 0 or (dims and len(dims) != len(shifts))
            or not x.dtype.is_floating_point):
        return NotImplemented
    if not dims:
        if len(shifts) != 1:
            return NotImplemented
        return roll_as_slices(x.reshape(-1), shifts, [0]).reshape(x.shape)
    y = x
    for shift, dim in zip(shifts, dims):
        dim %= x.dim()
        n = x.shape[dim]
        s = shift % n if n else 0
        if s:
            y = torch.cat([torch.ops.aten.slice.Tensor(y, dim, n - s, n, 1),
                           torch.ops.aten.slice.Tensor(y, dim, 0, n - s, 1)], dim)
    return y


def slice_decompositions() -> dict:
    aten = torch.ops.aten
    return {aten.split_with_sizes.default: split_as_slices, aten.split.Tensor: split_tensor_as_slices,
            aten.slice.Tensor: strided_slice_as_view, aten.select.int: select_as_slice,
            aten.roll.default: roll_as_slices}
