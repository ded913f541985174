"""GroupNorm as means over the two innermost axes of a 4-D view, for XNNPACK.

ExecuTorch 1.5 keeps ``native_group_norm`` as one core-ATen op and XNNPACK has no node for it, so
every GroupNorm of a model (BiT's and MobileViTV2's norms, PoolFormer's, any ``nn.GroupNorm``)
runs on the portable kernels and splits the delegated graph around it. XNNPACK's ``mean.dim`` does
take the two innermost axes of a 4-D tensor, and a GroupNorm's statistics are exactly that once
the input ``(N, C, *spatial)`` is viewed as ``(N, groups, C / groups, prod(spatial))``:

    g = view(x);  mean = g.mean((2, 3));  c = g - mean;  var = (c * c).mean((2, 3))
    y = view_back(c * rsqrt(var + eps)) * weight + bias

which is ``native_group_norm``'s output (biased variance) up to fp32 rounding. On a 4-D map the
statistics are computed without that view: a per-channel global average pooling of the map (the
reduction XNNPACK does in its channels-last layout), then the average over each group's channels
on the ``(n, c, 1, 1)`` result, so that no GroupNorm makes XNNPACK transpose its input. The mean and
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
    if x.dim() == 4 and all(isinstance(s, int) for s in x.shape):
        return _group_norm_by_channel_means(x, weight, bias, n, c, groups, eps)
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


def _channel_statistic(per_channel: torch.Tensor, n: int, c: int, groups: int) -> torch.Tensor:
    """(n, c, 1, 1) per-channel averages -> each channel's group average, (n, c, 1, 1)."""
    k = c // groups
    by_group = per_channel.reshape(n, groups, k)
    group = by_group.reshape(n, groups, k, 1).mean((2, 3), keepdim=True)  # (n, groups, 1, 1): tiny
    # Broadcast back to the group's channels with delegated arithmetic (XNNPACK takes no expand,
    # and a ones constant would need the fold): 0 * (n, groups, k) + (n, groups, 1).
    return (by_group * 0.0 + group.reshape(n, groups, 1)).reshape(n, c, 1, 1)


def _group_norm_by_channel_means(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, n: int,
                                 c: int, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 4-D form: each statistic as a global average pooling of the map itself (per channel,
    in the layout XNNPACK keeps it), then averaged over the channels of a group on the tiny
    ``(n, c, 1, 1)`` result. Viewing the whole map as ``(n, groups, c / groups, h * w)`` instead made
    XNNPACK transpose every GroupNorm's input out of its channels-last layout (PoolFormer-S12 ran
    1.28x slower than with the portable GroupNorm kernel). Channels of a group have equal sizes, so
    the average of their averages is the group's."""
    mean = _channel_statistic(x.mean((2, 3), keepdim=True), n, c, groups)
    centered = x - mean
    var = _channel_statistic((centered * centered).mean((2, 3), keepdim=True), n, c, groups)
    rstd = torch.rsqrt(var + eps)
    y = centered * rstd
    if weight is not None:
        y = y * weight.reshape(1, c, 1, 1)
    if bias is not None:
        y = y + bias.reshape(1, c, 1, 1)
    k = c // groups
    return y, mean.reshape(n, groups, k)[:, :, 0], rstd.reshape(n, groups, k)[:, :, 0]


def group_norm_decompositions() -> dict:
    return {torch.ops.aten.native_group_norm.default: group_norm_as_means}
