"""Channels-first normalization layers.

``LayerNorm2d`` normalizes an NCHW tensor over its channel axis at every spatial position: the
same function as ``nn.LayerNorm(C)`` applied to the NHWC view (EfficientMod's channels-last
blocks) and as FastViT's ``LayerNormChannel``. Written with explicit reductions over dim 1 so
that a channels-first network never needs a permute around its norms; its ``weight``/``bias``
keys and shapes (C,) are those of both originals.
"""
from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.Module):
    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_channels, self.eps = num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        centered = x - mean
        # Biased variance, as nn.LayerNorm; a plain mul rather than pow(2) (every backend has mul).
        var = (centered * centered).mean(1, keepdim=True)
        x = centered * torch.rsqrt(var + self.eps)
        return x * self.weight.view(-1, 1, 1) + self.bias.view(-1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"
