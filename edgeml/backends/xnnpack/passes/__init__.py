"""Passes of the XNNPACK backend: rewrites and decompositions that let its partitioner take the
whole graph."""
import math
from collections.abc import Callable


def static(*sizes) -> bool:
    """Whether every size is a plain int (no symbolic size: the decompositions leave those ops)."""
    return all(isinstance(s, int) for s in sizes)


def over_inner_axes(x, dims: list[int], keepdim: bool, reduce: Callable):
    """``reduce`` of ``x`` over ``dims`` in the one layout XNNPACK reduces: the reduced axes moved
    last (a permute, only when they are not last already), ``x`` viewed as ``(1, kept, reduced, 1)``,
    ``reduce`` applied to that view (it reduces dim 2 and keeps it), and each result viewed in the
    shape a reduction over ``dims`` returns. ``dims`` are sorted and non-negative."""
    nd = x.dim()
    kept = [d for d in range(nd) if d not in dims]
    order = kept + dims
    y = x.permute(order) if order != list(range(nd)) else x
    k = math.prod(x.shape[d] for d in kept)
    r = math.prod(x.shape[d] for d in dims)
    out = reduce(y.reshape(1, k, r, 1))
    shape = [1 if d in dims else x.shape[d] for d in range(nd)] if keepdim else [x.shape[d] for d in kept]
    return tuple(o.reshape(shape) for o in out) if isinstance(out, tuple) else out.reshape(shape)
