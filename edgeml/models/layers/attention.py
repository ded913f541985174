"""Multi-head self-attention on token sequences, written as plain matmul + softmax.

``F.scaled_dot_product_attention`` is avoided on purpose: it exports as one fused aten op that
some edge backends decompose differently (or not at all), while ``(q*s) @ k^T -> softmax -> @ v``
lowers to batched matmuls and a softmax that XNNPACK and ONNX Runtime both take. Scaling ``q``
before the product (as FastViT does) keeps the logits' range small in fp16/int8 paths.
Reshapes use ``unflatten``/``flatten`` on the trailing axis only, so no Python int is taken from a
runtime shape and the sequence length may be symbolic.
"""
from __future__ import annotations

import torch


def split_heads_attention(qkv: torch.Tensor, num_heads: int, head_dim: int) -> torch.Tensor:
    """Attention over ``qkv`` of shape (B, N, 3*num_heads*head_dim), laid out [q | k | v] with each
    part split into heads; returns (B, N, num_heads*head_dim)."""

    def heads(t: torch.Tensor) -> torch.Tensor:  # (B, N, H*D) -> (B*H, N, D)
        return t.unflatten(-1, (num_heads, head_dim)).transpose(1, 2).flatten(0, 1)

    # Slices and 3-D bmm rather than unbind/chunk and 4-D matmul: those leave squeeze, split or
    # expand copies that XNNPACK does not take, splitting the delegated graph at every attention.
    width = num_heads * head_dim
    q, k, v = (heads(qkv.narrow(-1, i * width, width)) for i in range(3))
    attn = torch.bmm(q * head_dim**-0.5, k.transpose(1, 2)).softmax(dim=-1)
    out = torch.bmm(attn, v)  # (B*H, N, D)
    return out.unflatten(0, (-1, num_heads)).transpose(1, 2).flatten(2)
