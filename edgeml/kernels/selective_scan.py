"""Mamba-1 selective scan as the custom op ``torch.ops.edgeml.selective_scan``.

Semantics follow ``selective_scan_ref`` of state-spaces/mamba (Gu & Dao, 2023)::

    delta = softplus(delta + delta_bias)            (each step optional)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t       # per channel d, state n
    y_t   = sum_n C_t h_t + D * u_t;   out = y * silu(z)            (D, z optional)

Shapes: u, delta, z (b, d, l); A (d, n); B, C (b, n, l), grouped (b, g, n, l) with channel
c using group c // (d // g), or time-invariant (d, n); D, delta_bias (d,). Output (b, d, l)
in u's dtype; all state math in fp32.

``bidirectional=True`` (VMamba's bidirectional scan, as in MobileMamba's SS2D): the channels are
two equal halves (and grouped B/C two equal halves of groups); the first half scans as above,
the second from the last token to the first, ``h_t = exp(delta_t A) h_{t+1} + delta_t B_t u_t``.
Every tensor and the output stay in token order: the same as flipping the second half's
sequences, scanning and flipping its output back, without the flips (which ExecuTorch runs as
portable kernels between XNNPACK partitions). u may then have d/2 channels, read by both halves
(SS2D scans the same tokens both ways: no copy of them, and no concatenation of a tensor with
itself, which XNNPACK does not take).

Forms, side by side:

* :func:`selective_scan_naive`: the recurrence as a Python loop over time (the reference).
* :func:`selective_scan_chunked`: plain aten, no data-dependent control flow, a fixed number
  of graph nodes for any length, in two forms that differ only inside the chunks:

  - ``form="tree"``, the CPU implementation (eager): O(l) work, fastest in eager PyTorch;
  - ``form="matmul"`` (:func:`_scan_chunked_matmul`), the export decomposition: Mamba-2's
    SSD form, decay matrices times inputs within and across chunks. More arithmetic, but
    half the graph nodes and only ops that XNNPACK delegates (the tree's strided slices,
    cumsum and mask islands made ExecuTorch's lowering slow and split the delegate).

  Tree: the sequence is padded to a multiple of ``chunk_size`` (a power of two) and each chunk is
  reduced by a binary tree of ``log2(chunk_size)`` pairwise combines (the associative operator
  ``(a0, x0) . (a1, x1) = (a0 a1, a1 x0 + x1)``), so decays only ever multiply: products of
  values in [0, 1] that can underflow to 0 but never overflow. Across chunks, the chunk entry
  states come from a pairwise ``exp(segment sum of log decays)`` matrix (Mamba-2 SSD's
  ``segsum``), whose exponents are sums of non-positive terms, hence <= 0 exactly: no inf/nan
  for long sequences or strong decay (when ``delta * A <= 0``, i.e. A <= 0 as in Mamba's
  ``A = -exp(A_log)`` and delta >= 0). A down-sweep then hands every token its entry state.
  Work is O(l) per channel plus O((l / chunk_size)^2) for the cross-chunk matrix.
* ``selective_scan_triton`` (edgeml/kernels/_triton_selective_scan.py): the CUDA kernel.
* a fake kernel so torch.export traces the op without running it.
"""
import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _backend
from ._segsum import decay_matrix, decay_matrix_transposed, direction_masks, mix

__all__ = [
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_decomposition",
    "selective_scan_naive",
    "selective_scan_quadratic",
]

DEFAULT_CHUNK_SIZE = 64  # the tree (eager CPU)
EXPORT_CHUNK_SIZE = 8  # the matmul form (export decomposition)


def _check_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, bidirectional: bool = False) -> None:
    shared = bidirectional and delta.dim() == 3 and u.dim() == 3 and 2 * u.shape[1] == delta.shape[1]
    if u.dim() != 3 or (delta.shape != u.shape and not (shared and u.shape[::2] == delta.shape[::2])):
        raise ValueError(f"u and delta must both be (b, d, l) (u may be (b, d/2, l) in a bidirectional scan); "
                         f"got {tuple(u.shape)} and {tuple(delta.shape)}")
    b, d, l = delta.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d, n) with d = {d}; got {tuple(A.shape)}")
    n = A.shape[1]
    for name, X in (("B", B), ("C", C)):
        if X.dim() == 2:
            ok = tuple(X.shape) == (d, n)
        elif X.dim() == 3:
            ok = tuple(X.shape) == (b, n, l)
        elif X.dim() == 4:
            ok = X.shape[0] == b and X.shape[2] == n and X.shape[3] == l and d % X.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} must be (d, n), (b, n, l) or (b, g, n, l) with g dividing d "
                f"(b={b}, d={d}, n={n}, l={l}); got {tuple(X.shape)}"
            )
    if bidirectional:
        if d % 2:
            raise ValueError(f"a bidirectional scan splits the channels in two halves; d = {d} is odd")
        for name, X in (("B", B), ("C", C)):
            if X.dim() == 4 and X.shape[1] % 2:
                raise ValueError(
                    f"a bidirectional scan splits grouped {name} in two halves; it has {X.shape[1]} groups")


def _per_channel(X: Tensor, d: int) -> Tensor:
    """B or C as a tensor broadcastable against (b, d, n, l), in fp32."""
    X = X.float()
    if X.dim() == 2:  # time-invariant (d, n)
        return X[None, :, :, None]
    if X.dim() == 3:  # shared by all channels (b, n, l)
        return X[:, None]
    b, g, n, l = X.shape  # grouped: channel c reads group c // (d // g)
    return X[:, :, None].expand(b, g, d // g, n, l).reshape(b, d, n, l)


def _mul_per_channel(t: Tensor, X: Tensor) -> Tensor:
    """t (b, d, 1 or n, l) times B or C broadcast over channels, as (b, d, n, l) fp32.

    Grouped B/C are broadcast through a (b, g, d // g, ...) view rather than expanded to d
    channels first: the expand would be a full copy (a portable expand_copy in a .pte)."""
    X = X.float()
    if X.dim() == 2:  # time-invariant (d, n)
        return t * X.reshape(1, *X.shape, 1)
    if X.dim() == 3:  # shared by all channels (b, n, l)
        return t * X.reshape(X.shape[0], 1, *X.shape[1:])
    b, g, n, l = X.shape
    return (t.unflatten(1, (g, -1)) * X.reshape(b, g, 1, n, l)).flatten(1, 2)


def _times_u(t: Tensor, u: Tensor) -> Tensor:
    """t (b, d, l) or (d, 1) times u, as (b, d, l); u is (b, d, l) or, shared by the two halves of
    a bidirectional scan, (b, d/2, l) (broadcast through a (b, 2, d/2, l) view: no copy of u)."""
    u = u.float()
    d = t.shape[-2]
    if u.shape[1] == d:
        return t * u
    b, half, l = u.shape
    return (t.reshape(*t.shape[:-2], 2, half, t.shape[-1]) * u.reshape(b, 1, half, l)).reshape(b, d, l)


def softplus_exportable(x: Tensor) -> Tensor:
    """softplus(x) = max(x, 0) + log1p(exp(-|x|)) from ops that XNNPACK delegates.

    ``F.softplus`` reaches ExecuTorch as gt/where/log1p, which run as (slow, scalar) portable
    kernels; log1p(y) is written as log(1 + y) * y / ((1 + y) - 1) (Goldberg's trick, accurate
    to a few ulp where plain log(1 + y) loses all digits of a small y). When 1 + y rounds to 1
    the quotient is y / 1e-30, finite, times log(1) = 0: the result is max(x, 0), off by less
    than 6e-8 absolute."""
    y = torch.exp(-x.abs())
    one_plus_y = 1.0 + y
    log1p_y = torch.log(one_plus_y) * (y / torch.clamp_min(one_plus_y - 1.0, 1e-30))
    return torch.clamp_min(x, 0.0) + log1p_y


def _discretize(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    softplus: Callable[[Tensor], Tensor] = F.softplus,
) -> tuple[Tensor, Tensor]:
    """(delta * A, delta * B * u), both (b, d, n, l) fp32: log decay and input of each step."""
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float().reshape(-1, 1)
    if delta_softplus:
        dt = softplus(dt)
    # reshape rather than indexing with None: ExecuTorch runs unsqueeze as a portable copy
    # that splits the XNNPACK partition; a reshape is delegated.
    b, d, l = dt.shape
    log_decay = dt.reshape(b, d, 1, l) * A.float().reshape(1, *A.shape, 1)
    inp = _mul_per_channel(_times_u(dt, u).reshape(b, d, 1, l), B)
    return log_decay, inp


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    if D is not None:
        # Not addcmul: its decomposition multiplies by value=1 (an int constant that ExecuTorch
        # casts with a portable copy).
        y = y + _times_u(D.float().reshape(-1, 1), u)
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)


def _by_flipping(scan: Callable[..., Tensor], u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                 D: Tensor | None, z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """A bidirectional scan from a one-directional ``scan``: the second half of the channels runs on
    its sequences flipped, and its output is flipped back (how every form but the export
    decomposition does it)."""
    half = delta.shape[1] // 2

    def channels(t: Tensor | None, i: int) -> Tensor | None:  # (b, d, l), (d, n) or (d,)
        if t is None:
            return None
        return t[:, half * i:half * (i + 1)] if t.dim() == 3 else t[half * i:half * (i + 1)]

    def b_or_c(X: Tensor, i: int) -> Tensor:
        if X.dim() == 2:  # time-invariant (d, n): per channel
            return X[half * i:half * (i + 1)]
        if X.dim() == 3:  # (b, n, l): shared by all channels
            return X
        g = X.shape[1] // 2
        return X[:, g * i:g * (i + 1)]

    def flip(t: Tensor | None) -> Tensor | None:
        return t if t is None or t.dim() < 3 else t.flip(-1)

    def u_for(i: int) -> Tensor:
        return u if u.shape[1] == half else channels(u, i)  # u shared by both halves, or split

    forward = scan(u_for(0), channels(delta, 0), channels(A, 0), b_or_c(B, 0), b_or_c(C, 0),
                   channels(D, 0), channels(z, 0), channels(delta_bias, 0), delta_softplus)
    backward = scan(flip(u_for(1)), flip(channels(delta, 1)), channels(A, 1), flip(b_or_c(B, 1)),
                    flip(b_or_c(C, 1)), channels(D, 1), flip(channels(z, 1)), channels(delta_bias, 1),
                    delta_softplus)
    return torch.cat([forward, backward.flip(-1)], dim=1)


def selective_scan_naive(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
) -> Tensor:
    """Reference: the recurrence stepped one token at a time in fp32."""
    _check_shapes(u, delta, A, B, C, bidirectional)
    if bidirectional:
        return _by_flipping(selective_scan_naive, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    log_decay, inp = _discretize(u, delta, A, B, delta_bias, delta_softplus)
    decay = torch.exp(log_decay)
    Cc = _per_channel(C, u.shape[1])
    b, d, n, l = inp.shape
    h = inp.new_zeros(b, d, n)
    time_varying_C = Cc.shape[-1] == l
    ys = []
    for t in range(l):
        h = decay[..., t] * h + inp[..., t]
        ys.append((h * Cc[..., t if time_varying_C else 0]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else inp.new_zeros(b, d, 0)
    return _finish(y, u, D, z)


def _chunk_entry_states(chunk_log_decay: Tensor, chunk_end_state: Tensor) -> Tensor:
    """State entering each chunk, given each chunk's total log decay g (<= 0) and the state it
    reaches from a zero start: entry_j = sum_{i<j} exp(sum_{i<k<j} g_k) end_i.

    Pairwise over chunks, so the exponents are segment sums of non-positive terms (never a
    difference of two cumsums, which can round to a positive number and overflow)."""
    transfer = decay_matrix(chunk_log_decay)  # [j, i] = exp(sum_{i<k<=j} g_k), 0 for i > j
    # inclusive end state after chunk j, then shifted by one chunk to get entry states
    end = torch.matmul(transfer, chunk_end_state[..., None])[..., 0]
    return F.pad(end[..., :-1], (1, 0))


def _scan_chunked(log_decay: Tensor, inp: Tensor, chunk_size: int) -> Tensor:
    """h_t = exp(log_decay_t) h_{t-1} + inp_t along the last dim, from h_{-1} = 0."""
    if chunk_size < 2 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 2, got {chunk_size}")
    levels = int(math.log2(chunk_size))
    l = log_decay.shape[-1]
    pad = (-l) % chunk_size
    # Padding at the end is exact for a causal scan; zero log decay keeps the padding inert.
    # The pad node is emitted even when pad == 0 so the graph is the same for every length.
    log_decay = F.pad(log_decay, (0, pad))
    inp = F.pad(inp, (0, pad))
    decay = torch.exp(log_decay)

    # Up-sweep: combine neighbours pairwise, keeping the left elements for the down-sweep.
    # Pairs are taken as slices of a (..., m, 2) view and kept with a trailing dim of 1, and
    # halves are rejoined with cat: slice/cat/reshape lower to XNNPACK, select/stack do not.
    a = decay.unflatten(-1, (-1, 1))
    x = inp.unflatten(-1, (-1, 1))
    lefts = []
    for level in range(levels):
        a2 = a.reshape(*a.shape[:-2], -1, 2)
        x2 = x.reshape(*x.shape[:-2], -1, 2)
        a0, a1, x0, x1 = a2[..., :1], a2[..., 1:], x2[..., :1], x2[..., 1:]
        lefts.append((a0, x0, a1, x1))
        x = torch.addcmul(x1, a1, x0)
        if level + 1 < levels:
            a = a0 * a1
    # x is now each chunk's end state from a zero start. Chunk decays as sums of logs.
    chunk_log_decay = log_decay.unflatten(-1, (-1, chunk_size)).sum(-1)
    entry = _chunk_entry_states(chunk_log_decay, x[..., 0])[..., None]

    # Down-sweep: the right element of a pair enters with the left element's exit state. The
    # last level produces the token states directly (no separate entry tensor for tokens).
    for a0, x0, _, _ in reversed(lefts[1:]):
        right_entry = torch.addcmul(x0, a0, entry)
        entry = torch.cat([entry, right_entry], dim=-1).reshape(*entry.shape[:-2], -1, 1)
    a0, x0, a1, x1 = lefts[0]
    h_left = torch.addcmul(x0, a0, entry)
    h_right = torch.addcmul(x1, a1, h_left)
    h = torch.cat([h_left, h_right], dim=-1).flatten(-2)
    return h[..., :l]


def _scan_chunked_matmul(log_decay: Tensor, inp: Tensor, chunk_size: int, levels: int = 2,
                         reverse: tuple[bool, ...] = (False,), batched: bool = True) -> Tensor:
    """The same scan as :func:`_scan_chunked`, as matmuls within and across chunks (SSD form).

    Mamba-2's chunked "state space duality" form: inside a chunk of L tokens the states are
    ``h_i = sum_{j <= i} exp(sum_{j < r <= i} a_r) x_j``, an (L x L) decay matrix times the
    inputs. The chunks' end states and total log decays form a scan of length l / L of the
    same kind, solved by the same form one level up (``levels``); at the top level the entry
    states come straight from the (nc x nc) decay matrix of the chunk totals. Every decay is an
    exact segment sum (``decay_matrix_transposed``: exponents <= 0, no inf/nan), and every op
    is a mul, exp, add, fully connected layer or batched matmul.

    ``reverse`` splits the channels into equal groups, one per entry: a True group runs from the
    last token to the first (``h_i = sum_{j >= i} exp(sum_{i <= r < j} a_r) x_j``). Only the
    constant 0/1 matrices differ between directions, so both run in the same nodes (their
    fully connected layers become batched matmuls over the directions), with no flip of the
    sequence (a portable kernel in ExecuTorch, which splits the XNNPACK partition twice per
    MobileMamba block).

    This is the export decomposition: a smaller graph than the tree's (no per-level slices, no
    cumsum, and no arange/compare islands once the masks are folded into constants), which is
    what ExecuTorch's lowering time pays for, and for static shapes no op of it is left on
    portable kernels. Work per channel: O(l L) exps and O(l L^2) multiply-adds within chunks,
    the same for the l / L chunk ends one level up, and O((l / L^2)^3) at the top, which stays
    below the rest up to l ~ L^4 (4096 tokens for L = 8)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    b, d, n, l = log_decay.shape
    G = len(reverse)
    # (b, d, n, l) -> (G, rows, l): the direction groups are the outer split of the channels.
    rows = b * (d // G) * n

    def by_direction(t: Tensor) -> Tensor:
        return t.reshape(b, G, rows // b, l).transpose(0, 1).reshape(G, rows, l) if b > 1 else t.reshape(G, rows, l)

    h = _scan_rows_matmul(by_direction(log_decay), by_direction(inp), chunk_size, levels, reverse, batched)
    # No slice without padding: a full slice is a portable alias_copy that splits the partition.
    # (Under dynamic shapes the padding is symbolic: always slice.)
    if not isinstance(l, int) or h.shape[-1] != l:
        h = h[..., :l]
    if b > 1:
        h = h.reshape(G, b, rows // b, l).transpose(0, 1)
    return h.reshape(b, d, n, l)


def _scan_rows_matmul(a: Tensor, x: Tensor, L: int, levels: int, reverse: tuple[bool, ...], batched: bool = True
                      ) -> Tensor:
    """Inclusive states of h_t = exp(a_t) h_{t-1} + x_t along the rows of (G, rows, l) tensors
    (direction g from the last token to the first where ``reverse[g]``), returned with the
    padding to a multiple of L still on (the caller drops it)."""
    G, rows, l = a.shape
    pad = (-l) % L
    # Zero log decay and zero input keep the padding inert, in either direction. (A zero pad is
    # dropped from a static graph by edgeml.export's simplify_reshapes.)
    a, x = F.pad(a, (0, pad)).reshape(G, rows, -1, L), F.pad(x, (0, pad)).reshape(G, rows, -1, L)
    nc = a.shape[2]
    dirs = reverse if G > 1 or reverse[0] else None  # one forward direction: the plain linear form
    # (G, rows, nc, L, L): [j, i] = decay from token j to i
    within = decay_matrix_transposed(a, reverse=dirs, batched=batched)
    h_local = torch.bmm(x.reshape(-1, 1, L), within.reshape(-1, L, L)).reshape(G, rows, nc, L)
    _, upto, _ = direction_masks(L, reverse, dtype=a.dtype, device=a.device)
    # Decay from the chunk's entry state to token i: exp of the sum of a over the tokens up to i
    # in the direction of travel (r <= i forwards, r >= i in reverse).
    from_entry = torch.exp(mix(a, upto, batched=batched))
    # Chunk totals as a fully connected layer with a constant ones weight (a sum over the last
    # dim would run as a portable kernel).
    totals = F.linear(a, torch.ones(1, L, dtype=a.dtype, device=a.device)).reshape(G, rows, nc)
    # Each chunk's exit state from a zero entry: its last token forwards, its first in reverse.
    token = torch.arange(L, device=a.device)
    exit_token = torch.stack([token == (0 if r else L - 1) for r in reverse]).to(a.dtype)  # (G, L)
    ends = mix(h_local, exit_token[:, None], batched=batched).reshape(G, rows, nc)
    if levels > 1:
        # True exit states H_c = exp(total_c) H_{c-1} + end_c (H_{c+1} in reverse); chunk c enters
        # with its neighbour's. The shift reads past the padded chunk ends directly: no slice at the
        # inner levels, so the graph is the same for every length whose outermost level needs padding.
        ends = _scan_rows_matmul(totals, ends, L, levels - 1, reverse, batched)  # (G, rows, nc rounded up to L)
        c, c_in = torch.arange(nc, device=a.device), torch.arange(ends.shape[-1], device=a.device)
        shift = torch.stack([c_in[None, :] == c[:, None] + (1 if r else -1) for r in reverse]).to(a.dtype)
        entry = mix(ends, shift, batched=batched)  # [c, c']: c' = c - 1 (c + 1 in reverse)
    else:
        # [c', c]: from the exit of c' to c
        across = decay_matrix_transposed(totals, strict=True, reverse=dirs, batched=batched)
        entry = torch.bmm(ends.reshape(-1, 1, nc), across.reshape(-1, nc, nc)).reshape(G, rows, nc)
    return (h_local + from_entry * entry.reshape(G, rows, nc, 1)).reshape(G, rows, nc * L)


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
    *,
    chunk_size: int | None = None,
    for_export: bool = False,
    form: str | None = None,
    batched_directions: bool = True,
) -> Tensor:
    """Plain-aten selective scan (the CPU implementation and the export decomposition).

    ``form`` picks the scan inside the chunks: ``"tree"`` (default in eager) or ``"matmul"``
    (default with ``for_export``; see the module doc). ``for_export=True`` (what
    :func:`selective_scan_decomposition` passes) computes the
    softplus from ops XNNPACK delegates (:func:`softplus_exportable`); eager keeps the single
    fused ``F.softplus`` kernel. Same maths, same graph size for every length. A bidirectional
    scan runs natively in the matmul form and by flipping in the tree form."""
    _check_shapes(u, delta, A, B, C, bidirectional)
    form = form or ("matmul" if for_export else "tree")
    if form not in ("tree", "matmul"):
        raise ValueError(f"unknown scan form {form!r}; choose 'tree' or 'matmul'")
    if bidirectional and form == "tree":
        def one_way(*args: object) -> Tensor:
            return selective_scan_chunked(*args, chunk_size=chunk_size, for_export=for_export, form=form)

        return _by_flipping(one_way, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    softplus = softplus_exportable if for_export else F.softplus
    log_decay, inp = _discretize(u, delta, A, B, delta_bias, delta_softplus, softplus)
    if form == "tree":
        h = _scan_chunked(log_decay, inp, chunk_size or DEFAULT_CHUNK_SIZE)
    else:
        reverse = (False, True) if bidirectional else (False,)
        h = _scan_chunked_matmul(log_decay, inp, chunk_size or EXPORT_CHUNK_SIZE, reverse=reverse,
                                 batched=batched_directions)
    y = _mul_per_channel(h, C)
    # n == 1 (MobileMamba) needs no reduction; a sum over a size-1 dim would be a full copy.
    y = y.reshape(y.shape[0], y.shape[1], y.shape[3]) if y.shape[2] == 1 else y.sum(2)
    return _finish(y, u, D, z)


def selective_scan_decomposition(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
) -> Tensor:
    """The chunked form as it goes into the decomposition table (export-friendly softplus)."""
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, bidirectional, for_export=True)


# The same for ONNX: a bidirectional scan's per-direction matrices applied one direction at a time
# (edgeml.kernels._segsum.mix says why). Called with the op's arguments in the op's order.
selective_scan_decomposition_onnx = functools.partial(selective_scan_chunked, for_export=True, batched_directions=False)


def selective_scan_quadratic(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
) -> Tensor:
    """The l x l form: y_t = sum_{s<=t} sum_n C_t exp(sum_{s<r<=t} delta_r A) delta_s B_s u_s.

    Memory b*d*n*l^2 floats: a second reference and the benchmark's quadratic baseline only."""
    _check_shapes(u, delta, A, B, C, bidirectional)
    if bidirectional:
        return _by_flipping(selective_scan_quadratic, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    log_decay, inp = _discretize(u, delta, A, B, delta_bias, delta_softplus)
    transfer = decay_matrix(log_decay)  # (b, d, n, l, l)
    h = torch.matmul(transfer, inp[..., None])[..., 0]  # (b, d, n, l)
    y = (h * _per_channel(C, u.shape[1])).sum(2)
    return _finish(y, u, D, z)


_SCHEMA = (
    "(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D=None, Tensor? z=None, "
    "Tensor? delta_bias=None, bool delta_softplus=False, bool bidirectional=False) -> Tensor"
)


@torch.library.custom_op("edgeml::selective_scan", mutates_args=(), schema=_SCHEMA)
def _selective_scan_op(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
) -> Tensor:
    backend = _backend.current_backend()
    if backend == "naive":
        return selective_scan_naive(u, delta, A, B, C, D, z, delta_bias, delta_softplus, bidirectional)
    if backend == "triton":
        return _selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus, bidirectional)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, bidirectional)


@_selective_scan_op.register_kernel("cuda")
def _selective_scan_cuda(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
) -> Tensor:
    from ._triton_selective_scan import selective_scan_triton

    if bidirectional:
        _check_shapes(u, delta, A, B, C, bidirectional)
        return _by_flipping(selective_scan_triton, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@_selective_scan_op.register_fake
def _selective_scan_fake(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
) -> Tensor:
    _check_shapes(u, delta, A, B, C, bidirectional)
    return u.new_empty(delta.shape)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    bidirectional: bool = False,
) -> Tensor:
    """Mamba-1 selective scan through ``torch.ops.edgeml.selective_scan`` (see module doc)."""
    return torch.ops.edgeml.selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, bidirectional)
