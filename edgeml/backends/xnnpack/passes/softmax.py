"""A softmax over any axis as one over the last axis, for XNNPACK.

XNNPACK's softmax normalizes the innermost axis only, and ExecuTorch 1.5's partitioner leaves a
softmax over any other axis (MobileViTV2's and LeViT-style token weights, ``softmax(dim=1)``) on
the portable kernels. Moved to the end with a transpose, normalized, and moved back, it is the
same function in three ops XNNPACK delegates.
"""
from __future__ import annotations

import torch


def softmax_on_last_axis(x: torch.Tensor, dim: int, half_to_float: bool):
    if half_to_float or x.dim() < 2 or dim % x.dim() == x.dim() - 1:
        return NotImplemented
    y = torch.ops.aten._softmax.default(x.transpose(dim, -1), -1, False)
    return y.transpose(dim, -1)


def softmax_decompositions() -> dict:
    return {torch.ops.aten._softmax.default: softmax_on_last_axis}
