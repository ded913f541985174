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
    q, k, v = qkv.unflatten(-1, (3, num_heads, head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
    attn = (q * head_dim**-0.5) @ k.transpose(-2, -1)
    out = attn.softmax(dim=-1) @ v  # (B, heads, N, head_dim)
    return out.transpose(1, 2).flatten(2)
