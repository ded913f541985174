"""Linear attention as the custom op ``torch.ops.edgeml.linear_attention``.

Shapes: q, k (b, h, t, dk); v (b, h, t, dv); log_decay (b, h, t); output (b, h, t, dv) in q's
dtype, all accumulation in fp32. Features are expected to be non-negative already (ReLU, ELU+1,
... applied by the caller).

* ``causal=False``: normalized linear attention as in EfficientViT's LiteMLA / RALA-style vision
  blocks, ``o_i = (s q_i) (sum_j k_j^T v_j) / ((s q_i) . sum_j k_j + eps)`` with s = ``scale``.
  ``log_decay`` must be None.
* ``causal=True``: unnormalized causal linear attention with an optional per-head, per-token
  log decay g_t <= 0 (Lightning Attention-2, Mamba-2 SSD, FLA's simple GLA):
  ``S_t = exp(g_t) S_{t-1} + k_t^T v_t``, ``o_t = s q_t S_t``. ``eps`` is unused.

Forms, side by side:

* :func:`linear_attention_naive`: causal as the recurrence stepped token by token; non-causal
  as the explicit t x t attention matrix.
* :func:`linear_attention_quadratic`: the causal masked t x t form (Mamba-2's "attention"
  form), a second reference and the benchmark's quadratic baseline.
* :func:`linear_attention_chunked`: plain aten, fixed graph for any length, the CPU kernel and
  the export decomposition. Causal: chunks of ``chunk_size`` tokens; inside a chunk the masked
  (q k^T . decay) v product, across chunks a decayed k^T v state handed on by a pairwise
  chunk-to-chunk matrix. Every decay factor is exp of a segment sum of log decays built by
  masking then summing (never a difference of two cumsums, which can round above 0), so all
  exponents are <= 0: no inf/nan for strong decay or long sequences.
* ``linear_attention_triton`` (kernels/_triton_linear_attention.py): the CUDA kernel.
* a fake kernel for torch.export.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from . import _backend
from ._segsum import decay_matrix

__all__ = [
    "linear_attention",
    "linear_attention_chunked",
    "linear_attention_naive",
    "linear_attention_quadratic",
]

DEFAULT_CHUNK_SIZE = 64


def _check(q: Tensor, k: Tensor, v: Tensor, causal: bool, log_decay: Tensor | None) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be (b, h, t, d); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape != k.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            "q and k must have the same shape and v the same (b, h, t); got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if log_decay is not None:
        if not causal:
            raise ValueError("log_decay must be None when causal=False (a decay needs an order)")
        if log_decay.shape != q.shape[:3]:
            raise ValueError(
                f"log_decay must be (b, h, t) = {tuple(q.shape[:3])}; got {tuple(log_decay.shape)}"
            )


def _non_causal(q: Tensor, k: Tensor, v: Tensor, scale: float, eps: float) -> Tensor:
    q = q.float() * scale
    k, v = k.float(), v.float()
    kv = torch.matmul(k.transpose(-1, -2), v)  # (b, h, dk, dv)
    k_sum = k.sum(-2, keepdim=True)  # (b, h, 1, dk)
    num = torch.matmul(q, kv)
    den = (q * k_sum).sum(-1, keepdim=True)
    return num / (den + eps)


def linear_attention_naive(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    """Reference: the recurrence token by token (causal) or the t x t matrix (non-causal)."""
    _check(q, k, v, causal, log_decay)
    if not causal:
        attn = torch.matmul(q.float() * scale, k.float().transpose(-1, -2))  # (b, h, t, t)
        out = torch.matmul(attn, v.float()) / (attn.sum(-1, keepdim=True) + eps)
        return out.to(q.dtype)
    b, h, t, dk = q.shape
    qf, kf, vf = q.float() * scale, k.float(), v.float()
    state = qf.new_zeros(b, h, dk, v.shape[-1])
    outs = []
    for i in range(t):
        if log_decay is not None:
            state = state * torch.exp(log_decay[:, :, i].float())[..., None, None]
        state = state + kf[:, :, i, :, None] * vf[:, :, i, None, :]
        outs.append(torch.matmul(qf[:, :, i, None, :], state)[:, :, 0])
    out = torch.stack(outs, dim=2) if outs else qf.new_zeros(b, h, 0, v.shape[-1])
    return out.to(q.dtype)


def linear_attention_quadratic(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    """The t x t form: causal ``((s q k^T) . decay mask) v``; non-causal as in the naive form."""
    _check(q, k, v, causal, log_decay)
    if not causal:
        return linear_attention_naive(q, k, v, causal=False, scale=scale, eps=eps)
    attn = torch.matmul(q.float() * scale, k.float().transpose(-1, -2))
    t = q.shape[2]
    if log_decay is None:
        mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        attn = torch.where(mask, attn, 0.0)
    else:
        attn = attn * decay_matrix(log_decay.float())
    return torch.matmul(attn, v.float()).to(q.dtype)


def _causal_chunked(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor | None, scale: float, chunk_size: int
) -> Tensor:
    b, h, t, dk = q.shape
    dv = v.shape[-1]
    pad = (-t) % chunk_size
    nc = (t + pad) // chunk_size
    # Zero padding at the end is exact for a causal op; the outputs there are cut off. The pad
    # is emitted even when pad == 0 so the graph does not depend on the length.
    q = F.pad(q.float() * scale, (0, 0, 0, pad)).unflatten(2, (nc, chunk_size))  # (b, h, nc, C, dk)
    k = F.pad(k.float(), (0, 0, 0, pad)).unflatten(2, (nc, chunk_size))
    v = F.pad(v.float(), (0, 0, 0, pad)).unflatten(2, (nc, chunk_size))
    kt = k.transpose(-1, -2)

    scores = torch.matmul(q, kt)  # (b, h, nc, C, C)
    if g is None:
        # A 0/1 float mask (mul) rather than where: where runs as a portable kernel in a .pte.
        causal_mask = torch.ones(chunk_size, chunk_size, device=q.device).tril()
        intra = torch.matmul(scores * causal_mask, v)
        chunk_states = torch.matmul(kt, v)  # (b, h, nc, dk, dv)
        # Without decay the state entering chunk c is the plain sum of earlier chunk states
        # (an exclusive cumsum: shift by one chunk rather than subtract).
        entry = F.pad(torch.cumsum(chunk_states, dim=2)[:, :, :-1], (0, 0, 0, 0, 1, 0))
        inter = torch.matmul(q, entry)
    else:
        g = F.pad(g.float(), (0, pad)).unflatten(2, (nc, chunk_size))  # (b, h, nc, C)
        decay = decay_matrix(g)  # (b, h, nc, C, C), row i: exp(sum_{j<r<=i} g_r)
        intra = torch.matmul(scores * decay, v)
        # From token j to the chunk end: the last row of the decay matrix.
        to_end = decay[..., -1, :]  # (b, h, nc, C)
        chunk_states = torch.matmul(kt * to_end[..., None, :], v)  # (b, h, nc, dk, dv)
        # From the chunk start through token i: a cumsum of non-positive terms.
        from_start = torch.exp(torch.cumsum(g, dim=-1))  # (b, h, nc, C)
        # Chunk-to-chunk transfer, inclusive: end_c = sum_{c' <= c} exp(sum_{c' < c'' <= c} G) S_c'
        transfer = decay_matrix(g.sum(-1))  # (b, h, nc, nc)
        ends = torch.matmul(transfer, chunk_states.flatten(-2)).unflatten(-1, (dk, dv))
        entry = F.pad(ends[:, :, :-1], (0, 0, 0, 0, 1, 0))  # state entering chunk c
        inter = torch.matmul(q, entry) * from_start[..., None]
    out = (intra + inter).flatten(2, 3)
    return out[:, :, :t]


def linear_attention_decomposition(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    """The chunked form with the op's positional signature, for the decomposition table."""
    return linear_attention_chunked(q, k, v, causal=causal, log_decay=log_decay, scale=scale, eps=eps)


def linear_attention_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """Plain-aten linear attention (the CPU implementation and the export decomposition)."""
    _check(q, k, v, causal, log_decay)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if not causal:
        out = _non_causal(q, k, v, scale, eps)
    else:
        # The padded tail is sliced off; the clone makes the strides match the fake kernel and
        # keeps the exported graph identical whether or not t is a multiple of the chunk (a
        # conditional .contiguous() would add a node only when there is padding).
        out = _causal_chunked(q, k, v, log_decay, scale, chunk_size).clone(memory_format=torch.contiguous_format)
    return out.to(q.dtype)


# torch.library custom ops cannot take kwarg-only tensors, so the op's options are positional;
# the Python entry point linear_attention() keeps them keyword-only.
_SCHEMA = (
    "(Tensor q, Tensor k, Tensor v, bool causal=False, Tensor? log_decay=None, "
    "float scale=1.0, float eps=1e-06) -> Tensor"
)


@torch.library.custom_op("edgeml::linear_attention", mutates_args=(), schema=_SCHEMA)
def _linear_attention_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    backend = _backend.current_backend()
    kwargs = dict(causal=causal, log_decay=log_decay, scale=scale, eps=eps)
    if backend == "naive":
        return linear_attention_naive(q, k, v, **kwargs)
    if backend == "triton":
        from ._triton_linear_attention import linear_attention_triton

        return linear_attention_triton(q, k, v, **kwargs)
    return linear_attention_chunked(q, k, v, **kwargs)


@_linear_attention_op.register_kernel("cuda")
def _linear_attention_cuda(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    from ._triton_linear_attention import linear_attention_triton

    return linear_attention_triton(q, k, v, causal=causal, log_decay=log_decay, scale=scale, eps=eps)


@_linear_attention_op.register_fake
def _linear_attention_fake(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    _check(q, k, v, causal, log_decay)
    return q.new_empty(*q.shape[:3], v.shape[-1])


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    log_decay: Tensor | None = None,
    scale: float = 1.0,
    eps: float = 1e-6,
) -> Tensor:
    """Linear attention through ``torch.ops.edgeml.linear_attention`` (see module doc)."""
    return torch.ops.edgeml.linear_attention(q, k, v, causal, log_decay, scale, eps)
