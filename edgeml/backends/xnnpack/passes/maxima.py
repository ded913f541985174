"""Every max over axes as the one XNNPACK takes: ``max.dim`` over an inner axis of a 4-D tensor, kept.

ExecuTorch 1.5's XNNPACK backend runs ``max.dim`` with ``keepdim=True`` over dim 2 or 3 of a 4-D
tensor only, and its partitioner does not check the rest: Hiera's ``x.max(dim=1).values`` over a
5-D tensor was taken and then failed the lowering ("amax.default only supports keep_dim ==
True"); ``amax`` it does not take at all. As with the means (``passes/means.py``), each is the
same max over a 4-D view: the reduced axes moved last, the tensor viewed as ``(1, kept, reduced,
1)``, its max over dim 2 kept, and the result viewed in the shape the op returns. The indices
``max.dim`` returns are positions along the one reduced axis, the same in the view. Static shapes
and floating-point tensors only.
"""
from __future__ import annotations

import torch

from edgeml.backends.xnnpack.passes import over_inner_axes, static

aten = torch.ops.aten


def _as_inner_max(x: torch.Tensor, dims: list[int], keepdim: bool):
    return over_inner_axes(x, dims, keepdim, lambda v: tuple(aten.max.dim(v, 2, True)))


def max_dim_as_inner_max(x: torch.Tensor, dim: int, keepdim: bool = False):
    nd = x.dim()
    if nd == 0 or not static(*x.shape) or not x.dtype.is_floating_point:
        return NotImplemented
    dim %= nd
    if nd == 4 and dim in (2, 3) and keepdim:
        return NotImplemented  # already the form XNNPACK takes
    return _as_inner_max(x, [dim], keepdim)


def amax_as_inner_max(x: torch.Tensor, dim=(), keepdim: bool = False):
    nd = x.dim()
    if nd == 0 or not static(*x.shape) or not x.dtype.is_floating_point:
        return NotImplemented
    dims = sorted({d % nd for d in (dim if dim else range(nd))})
    return _as_inner_max(x, dims, keepdim)[0]


def max_decompositions() -> dict:
    return {aten.max.dim: max_dim_as_inner_max, aten.amax.default: amax_as_inner_max}
