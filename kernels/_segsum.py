"""Stable segment sums of log decays (Mamba-2's ``segsum``, state-spaces/mamba ssd_minimal.py).

``decay_matrix(g)[..., i, j] = exp(sum_{j < r <= i} g_r)`` for i >= j and 0 above the diagonal.
Each exponent is built by masking the repeated g and summing down the rows, i.e. it is a sum
of the original terms and never a difference of two prefix sums: with g <= 0 it is <= 0
exactly, so exp never overflows however long the sequence or strong the decay (a difference
of cumsums can round to a small positive number, and cancels catastrophically when the
cumsums are large).
"""
import torch
from torch import Tensor


def segment_sums(g: Tensor) -> Tensor:
    """seg[..., i, j] = sum_{j < r <= i} g_r for i >= j; 0 on and above the diagonal."""
    n = g.shape[-1]
    idx = torch.arange(n, device=g.device)
    strictly_lower = idx[:, None] > idx[None, :]
    rep = g[..., :, None].expand(*g.shape, n)  # [..., r, j] = g_r
    return torch.cumsum(torch.where(strictly_lower, rep, 0.0), dim=-2)


def decay_matrix(g: Tensor) -> Tensor:
    """exp(segment sums) on and below the diagonal, 0 above: the causal decay mask."""
    n = g.shape[-1]
    idx = torch.arange(n, device=g.device)
    lower = idx[:, None] >= idx[None, :]
    # The inner where keeps masked entries finite (exp(0)), the outer one zeroes them.
    return torch.where(lower, torch.exp(torch.where(lower, segment_sums(g), 0.0)), 0.0)
