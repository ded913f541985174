"""ULSAM: Ultra-Lightweight Subspace Attention Module (Saini et al., WACV 2020, arXiv 2006.15102).

The feature map is split into ``groups`` subspaces of G = C / groups channels. Each subspace
learns one spatial attention map:

    a = softmax_{h,w}( ReLU(BN(PW_{G->1}( maxpool3x3( ReLU(BN(DW1x1(x_g))) )))) )
    out_g = x_g * a + x_g

The original (github Nandan91/ULSAM, no license; read, not copied) loops over subspaces in
Python. Here the groups are vectorized: one depthwise 1x1 conv over all C channels, one grouped
1x1 conv with ``groups`` outputs, a softmax over the flattened spatial axis, and the map
broadcast back over each group's channels. The result is a handful of ops that XNNPACK takes
whatever the group count. Checkpoints keyed like the original module
(``subspaces.{i}.conv_dws.weight``, ...) load through ``adapt_official_state_dict``.
"""
from __future__ import annotations

import torch
from torch import nn

_PER_SUBSPACE = ("conv_dws", "bn_dws", "conv_point", "bn_point")


class ULSAM(nn.Module):
    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"ULSAM: channels ({channels}) must be divisible by groups ({groups})")
        self.channels, self.groups = channels, groups
        # BN momentum: the original sets 0.9 (Keras convention); irrelevant at inference.
        self.conv_dws = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
        self.bn_dws = nn.BatchNorm2d(channels)
        self.maxpool = nn.MaxPool2d(3, stride=1, padding=1)
        self.conv_point = nn.Conv2d(channels, groups, 1, groups=groups, bias=True)
        self.bn_point = nn.BatchNorm2d(groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        a = torch.relu(self.bn_dws(self.conv_dws(x)))
        a = self.maxpool(a)
        a = torch.relu(self.bn_point(self.conv_point(a)))  # (b, groups, h, w)
        a = torch.softmax(a.reshape(b, self.groups, 1, h * w), dim=-1)
        # Each group's map multiplies its own G channels: view x as (b, groups, G, hw).
        xg = x.reshape(b, self.groups, c // self.groups, h * w)
        return (xg * a + xg).reshape(b, c, h, w)

    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return adapt_ulsam_keys(state, prefix="", groups=self.groups)


def adapt_ulsam_keys(state: dict[str, torch.Tensor], prefix: str, groups: int) -> dict[str, torch.Tensor]:
    """Concatenate the original's per-subspace tensors under ``prefix`` into the vectorized ones.

    Only subspaces ``0..groups-1`` are consumed: a checkpoint with more subspaces than the module
    keeps its surplus keys, so the strict load fails instead of silently regrouping.
    """
    if f"{prefix}subspaces.0.conv_dws.weight" not in state:
        return state
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, list[torch.Tensor]] = {}
    for key, value in state.items():
        index, name = _subspace_key(key, prefix)
        if index is None or index >= groups or name.split(".")[0] not in _PER_SUBSPACE:
            out[key] = value
        else:
            parts.setdefault(name, [None] * groups)[index] = value
    for name, tensors in parts.items():
        if any(t is None for t in tensors):
            continue  # a subspace lacks this tensor: the strict load reports the key missing
        out[prefix + name] = tensors[0] if name.endswith("num_batches_tracked") else torch.cat(tensors, dim=0)
    return out


def _subspace_key(key: str, prefix: str) -> tuple[int | None, str]:
    head = f"{prefix}subspaces."
    if not key.startswith(head):
        return None, key
    index, _, name = key[len(head):].partition(".")
    return (int(index), name) if index.isdigit() else (None, key)
