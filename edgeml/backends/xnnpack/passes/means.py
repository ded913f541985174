"""Every mean as the one mean XNNPACK takes: the two innermost axes of a 4-D tensor, kept.

ExecuTorch 1.5's XNNPACK partitioner delegates ``mean.dim`` only as global average pooling: a 4-D
input, dims ``(2, 3)``, ``keepdim=True``. Any other mean stays on the portable kernels and splits
the delegated graph: a classifier's ``x.mean((2, 3))`` (no keepdim), a ViT's token pooling
``x.mean(1)``, a norm's statistics over the last axis. Each is the same average over a 4-D view:
move the averaged axes last (a permute, only when they are not last already), view the tensor as
``(1, kept, averaged, 1)``, average its two innermost axes, and view the result in the shape the
mean returns. Static shapes only (a symbolic size leaves the mean as it is). A sum over axes, for
which XNNPACK has no node, is that mean times the number of elements it averages.
"""
from __future__ import annotations

import math

import torch

from edgeml.backends.xnnpack.passes import static


def mean_as_pooling(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype=None):
    """``aten.mean.dim`` in the form XNNPACK delegates (module doc); ``NotImplemented`` leaves it."""
    nd = x.dim()
    if dtype is not None or nd == 0 or not static(*x.shape) or not x.dtype.is_floating_point:
        return NotImplemented
    dims = sorted({d % nd for d in (dim if dim else range(nd))})
    if nd == 4 and dims == [2, 3] and keepdim:
        return NotImplemented  # already the pooling XNNPACK takes
    kept = [d for d in range(nd) if d not in dims]
    order = kept + dims
    y = x.permute(order) if order != list(range(nd)) else x
    k = math.prod(x.shape[d] for d in kept)
    r = math.prod(x.shape[d] for d in dims)
    y = y.reshape(1, k, r, 1).mean((2, 3), keepdim=True)
    shape = [1 if d in dims else x.shape[d] for d in range(nd)] if keepdim else [x.shape[d] for d in kept]
    return y.reshape(shape)


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


def mean_decompositions() -> dict:
    return {torch.ops.aten.mean.dim: mean_as_pooling, torch.ops.aten.sum.dim_IntList: sum_as_pooling}
