"""Every mean as the one mean XNNPACK takes: the two innermost axes of a 4-D tensor, kept.

ExecuTorch 1.5's XNNPACK partitioner delegates ``mean.dim`` only as global average pooling: a 4-D
input, dims ``(2, 3)``, ``keepdim=True``. Any other mean stays on the portable kernels and splits
the delegated graph: a classifier's ``x.mean((2, 3))`` (no keepdim), a ViT's token pooling
``x.mean(1)``, a norm's statistics over the last axis. Each is the same average over a 4-D view:
move the averaged axes last (a permute, only when they are not last already), view the tensor as
``(1, kept, averaged, 1)``, average its two innermost axes, and view the result in the shape the
mean returns. Static shapes only (a symbolic size leaves the mean as it is). A sum over axes, for
which XNNPACK has no node, is that mean times the number of elements it averages.

``avg_pool2d`` XNNPACK takes without ``ceil_mode`` only. Where ceil mode gives the output size
floor mode gives, no window reaches past the padded input and the two are the same pooling; a
pooling without padding whose one window covers the whole map (EfficientNet's head:
``AvgPool2d(2560, ceil_mode=True)`` on a 19 x 19 map) averages every value, and is the mean above.
"""
from __future__ import annotations

import math

import torch

from edgeml.backends.xnnpack.passes import over_inner_axes, static


def mean_as_pooling(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype=None):
    """``aten.mean.dim`` in the form XNNPACK delegates (module doc); ``NotImplemented`` leaves it."""
    nd = x.dim()
    if dtype is not None or nd == 0 or not static(*x.shape) or not x.dtype.is_floating_point:
        return NotImplemented
    dims = sorted({d % nd for d in (dim if dim else range(nd))})
    if nd == 4 and dims == [2, 3] and keepdim:
        return NotImplemented  # already the pooling XNNPACK takes
    return over_inner_axes(x, dims, keepdim, lambda v: v.mean((2, 3), keepdim=True))


def sum_as_pooling(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype=None):
    """``aten.sum.dim_IntList`` (no XNNPACK node) as the mean above times the count it averages."""
    if dtype is not None or x.dim() == 0 or not static(*x.shape) or not x.dtype.is_floating_point:
        return NotImplemented
    nd = x.dim()
    dims = sorted({d % nd for d in (dim if dim else range(nd))})
    count = math.prod(x.shape[d] for d in dims)
    y = mean_as_pooling(x, dims, keepdim)
    if y is NotImplemented:  # the 4-D pooling form itself
        y = x.mean(dims, keepdim=True)
    return y * float(count)  # a float: an int operand becomes an int64 constant and a portable cast


def _pooled_size(n: int, k: int, stride: int, pad: int, ceil: bool) -> int:
    span = n + 2 * pad - k
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= n + pad:
        out -= 1  # PyTorch's rule: the last window must start inside the input or its left padding
    return out


def _pair(v) -> list[int]:
    return [v, v] if isinstance(v, int) else list(v) * (2 // len(v))


def avg_pool_without_ceil(x: torch.Tensor, kernel_size, stride=(), padding=0, ceil_mode: bool = False,
                          count_include_pad: bool = True, divisor_override=None):
    """``aten.avg_pool2d`` in ceil mode as the same pooling in floor mode, or as a mean (module doc)."""
    if not ceil_mode or divisor_override is not None or x.dim() != 4 or not static(*x.shape):
        return NotImplemented
    k, p = _pair(kernel_size), _pair(padding)
    s = _pair(stride) if stride else k
    h, w = x.shape[2:]
    ceil = [_pooled_size(n, kk, ss, pp, True) for n, kk, ss, pp in zip((h, w), k, s, p)]
    floor = [_pooled_size(n, kk, ss, pp, False) if n + 2 * pp >= kk else 0 for n, kk, ss, pp in zip((h, w), k, s, p)]
    if ceil == floor:
        return torch.ops.aten.avg_pool2d.default(x, k, s, p, False, count_include_pad)
    if ceil == [1, 1] and p == [0, 0]:
        return x.mean((2, 3), keepdim=True)
    return NotImplemented


def mean_decompositions() -> dict:
    return {torch.ops.aten.mean.dim: mean_as_pooling, torch.ops.aten.sum.dim_IntList: sum_as_pooling,
            torch.ops.aten.avg_pool2d.default: avg_pool_without_ceil}
