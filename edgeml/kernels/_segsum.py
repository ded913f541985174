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


def mix(x: Tensor, weight: Tensor, *, batched: bool = True) -> Tensor:
    """``F.linear(x, weight[g])`` for each direction g: x is (G, ..., k), weight (G, m, k).

    One direction is a fully connected layer. Two are one batched matmul between two reshapes
    (``batched``, for ExecuTorch), or one fully connected layer per direction on its slice of x,
    concatenated (for ONNX): torch.onnx's graph optimizer fuses the batched form's reshapes into
    an ONNX MatMul that broadcasts the directions against x's last batch dim, wrong whenever that
    dim has the same size (a 9-token sequence: 2 chunks for 2 directions, relative error 0.09);
    the sliced form in turn ran wrong in XNNPACK (relative error 0.49 on a 75-token test scan,
    ExecuTorch 1.5.1), so each backend gets the form it runs right."""
    if weight.shape[0] == 1:
        return F.linear(x, weight[0])
    if not batched:
        return torch.cat([F.linear(x[g:g + 1], weight[g]) for g in range(weight.shape[0])], dim=0)
    G, k = x.shape[0], x.shape[-1]
    # bmm, not matmul: matmul's decomposition adds an expand and two views around it.
    out = torch.bmm(x.reshape(G, -1, k), weight.transpose(-1, -2))
    return out.reshape(*x.shape[:-1], weight.shape[1])


def direction_masks(n: int, reverse: tuple[bool, ...], *, strict: bool = False, dtype=torch.float32, device=None
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """The 0/1 matrices of :func:`decay_matrix_transposed`, one (n, n) set per direction.

    ``after[g, j, r]``: r is past j (r > j forwards, r < j in reverse); ``upto[g, i, r]``: r is at
    or before i in the direction of travel (r <= i forwards, r >= i in reverse; strictly before
    with ``strict``); ``keep[g, j, i]``: i is reached from j (i >= j forwards, i <= j in reverse;
    i != j with ``strict``). Each has shape (len(reverse), n, n)."""
    idx = torch.arange(n, device=device)
    row, col = idx[:, None], idx[None, :]
    after, upto, keep = [], [], []
    for rev in reverse:
        a, b = (row, col) if rev else (col, row)  # reverse = the same relations with the order flipped
        after.append(a > b)  # [j, r] forwards: r > j
        upto.append((a < b) if strict else (a <= b))  # [i, r] forwards: r <= i
        keep.append((a > b) if strict else (a >= b))  # [j, i] forwards: i >= j
    return tuple(torch.stack(m).to(dtype) for m in (after, upto, keep))


def decay_matrix_transposed(g: Tensor, *, strict: bool = False, reverse: tuple[bool, ...] | None = None,
                            batched: bool = True) -> Tensor:
    """The transposed causal decay mask built from a matmul instead of a cumsum, for export.

    ``out[..., j, i] = exp(sum_{j < r <= i} g_r)`` for i >= j (``strict``: ``sum_{j < r < i}``
    for i > j), 0 elsewhere. The exponents are the same exact segment sums as
    :func:`segment_sums` (same-sign terms, never a difference of prefix sums), written as a
    ``linear`` of the masked, repeated g with a constant 0/1 weight: every op is one XNNPACK
    delegates (mul, fully connected, exp), where ``cumsum`` runs as a portable kernel and splits
    the delegate's partitions. The 0/1 matrices come from ``arange`` of a fixed size and are
    folded into constants before lowering (``edgeml.export.fold_constants``).

    ``reverse``: g has a leading dim of directions (one bool each, True = travelling from the
    last element to the first), and a reversed direction gets ``exp(sum_{i <= r < j} g_r)`` for
    i <= j: the decay from j back to i (``strict``: ``i < r < j``, for i < j). ``batched``: see :func:`mix`."""
    n = g.shape[-1]
    after, upto, keep = direction_masks(n, reverse or (False,), strict=strict, dtype=g.dtype, device=g.device)
    rows = g.reshape(*g.shape[:-1], 1, n)
    if reverse is None:
        seg = F.linear(rows * after[0], upto[0])  # [j, i] = sum_{j < r <= i} g_r
        keep = keep[0]
    else:  # per direction: (G, n, n) -> (G, 1, ..., 1, n, n) against g's (G, ..., n)
        lead = (len(reverse), *[1] * (g.dim() - 2))
        seg = mix(rows * after.reshape(*lead, n, n), upto, batched=batched)
        keep = keep.reshape(*lead, n, n)
    # Where keep is 0 the sum is empty or partial but still <= 0, so exp stays finite.
    return torch.exp(seg) * keep
