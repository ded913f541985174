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
    """seg[..., i, j] = sum_{j < r <= i} g_r for i >= j, and 0 above the diagonal (g finite).

    The repeated g is masked by multiplying with a 0/1 matrix rather than with where/expand,
    which ExecuTorch runs as portable kernels; mul, exp and matmul go to XNNPACK."""
    n = g.shape[-1]
    idx = torch.arange(n, device=g.device)
    strictly_lower = (idx[:, None] > idx[None, :]).to(g.dtype)  # [r, j]: r > j
    return torch.cumsum(g[..., :, None] * strictly_lower, dim=-2)


def decay_matrix(g: Tensor) -> Tensor:
    """exp(segment sums) on and below the diagonal, 0 above: the causal decay mask."""
    n = g.shape[-1]
    idx = torch.arange(n, device=g.device)
    lower = (idx[:, None] >= idx[None, :]).to(g.dtype)
    # Above the diagonal the segment sum is 0, so exp gives 1 there and the mask zeroes it.
    return torch.exp(segment_sums(g)) * lower
