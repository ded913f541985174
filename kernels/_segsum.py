"""Stable segment sums of log decays (Mamba-2's ``segsum``, state-spaces/mamba ssd_minimal.py).

``decay_matrix(g)[..., i, j] = exp(sum_{j < r <= i} g_r)`` for i >= j and 0 above the diagonal.
Each exponent is built by masking the repeated g and summing down the rows, i.e. it is a sum
of the original terms and never a difference of two prefix sums: with g <= 0 it is <= 0
exactly, so exp never overflows however long the sequence or strong the decay (a difference
of cumsums can round to a small positive number, and cancels catastrophically when the
cumsums are large).
"""
import torch
import torch.nn.functional as F
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


def decay_matrix_transposed(g: Tensor, *, strict: bool = False) -> Tensor:
    """The transposed causal decay mask built from a matmul instead of a cumsum, for export.

    ``out[..., j, i] = exp(sum_{j < r <= i} g_r)`` for i >= j (``strict``: ``sum_{j < r < i}``
    for i > j), 0 elsewhere. The exponents are the same exact segment sums as
    :func:`segment_sums` (same-sign terms, never a difference of prefix sums), written as a
    ``linear`` of the masked, repeated g with a constant 0/1 weight: every op is one XNNPACK
    delegates (mul, fully connected, exp), where ``cumsum`` runs as a portable kernel and splits
    the delegate's partitions. The 0/1 matrices come from ``arange`` of a fixed size and are
    folded into constants before lowering (``edgeml.export.fold_constants``)."""
    n = g.shape[-1]
    idx = torch.arange(n, device=g.device)
    row, col = idx[:, None], idx[None, :]
    after_row = (col > row).to(g.dtype)  # [j, r]: r > j
    # weight[i, r]: r <= i (r < i when strict); linear contracts over r.
    weight = ((col < row) if strict else (col <= row)).to(g.dtype)
    seg = F.linear(g.reshape(*g.shape[:-1], 1, n) * after_row, weight)  # [j, i] = sum_{j < r <= i} g_r
    keep = ((col > row) if strict else (col >= row)).to(g.dtype)  # [j, i]: i > j (i >= j)
    # Where keep is 0 the sum is empty or partial but still <= 0, so exp stays finite.
    return torch.exp(seg) * keep
