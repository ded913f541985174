"""GroupNorm as means over the two innermost axes of a 4-D view, for XNNPACK.

ExecuTorch 1.5 keeps ``native_group_norm`` as one core-ATen op and XNNPACK has no node for it, so
every GroupNorm of a model (BiT's and MobileViTV2's norms, PoolFormer's, any ``nn.GroupNorm``)
runs on the portable kernels and splits the delegated graph around it. XNNPACK's ``mean.dim`` does
take the two innermost axes of a 4-D tensor, and a GroupNorm's statistics are exactly that once
the input ``(N, C, *spatial)`` is viewed as ``(N, groups, C / groups, prod(spatial))``:

    g = view(x);  mean = g.mean((2, 3));  c = g - mean;  var = (c * c).mean((2, 3))
    y = view_back(c * rsqrt(var + eps)) * weight + bias

which is ``native_group_norm``'s output (biased variance) up to fp32 rounding; the mean and
reciprocal standard deviation it also returns are given in its shapes ``(N, groups)``. Applied
as a decomposition in the retrace ``edgeml.export.decompose_custom_ops(..., backend="xnnpack")``
makes, so it reaches every GroupNorm however the model spells it (``nn.GroupNorm``, a subclass
with its own forward, ``F.group_norm``).
"""
from __future__ import annotations

import torch


def group_norm_as_means(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, n: int, c: int,
                        hw: int, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``aten.native_group_norm`` in ops XNNPACK delegates (module doc)."""
    g = x.reshape(n, groups, c // groups, hw)
    mean = g.mean((2, 3), keepdim=True)
    centered = g - mean
    rstd = torch.rsqrt((centered * centered).mean((2, 3), keepdim=True) + eps)
    y = (centered * rstd).reshape(x.shape)
    affine = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(affine)
    if bias is not None:
        y = y + bias.reshape(affine)
    return y, mean.reshape(n, groups), rstd.reshape(n, groups)


def group_norm_decompositions() -> dict:
    return {torch.ops.aten.native_group_norm.default: group_norm_as_means}
