"""Linear attention as the custom op ``torch.ops.edgeml.linear_attention``.

Shapes: q, k (b, h, t, dk); v (b, h, t, dv); output (b, h, t, dv) in q's dtype, all
accumulation in fp32. Features are expected to be non-negative already (ReLU, ELU+1, ... applied
by the caller). Every form takes ``(q, k, v)`` and then the options of :class:`LinearAttentionArgs`
(the one description of them; the op's schema is generated from it):

* ``causal=False``: normalized linear attention as in EfficientViT's LiteMLA and RALA,
  ``o_i = (s q'_i) (sum_j k'_j^T v_j) / ((s q_i) . sum_j k_j + eps)`` with s = ``scale``, where
  q' = q and k' = k unless rotary tables are given (below). ``log_decay`` must be None.
* ``causal=True``: unnormalized causal linear attention with an optional per-head, per-token
  log decay g_t <= 0 (Lightning Attention-2, Mamba-2 SSD, FLA's simple GLA):
  ``S_t = exp(g_t) S_{t-1} + k_t^T v_t``, ``o_t = s q_t S_t``. ``eps`` is unused.
* ``rope_cos``, ``rope_sin`` (t, dk), non-causal only: rotary position embedding in the
  numerator only, ``q' = rope(q)``, ``k' = rope(k)`` with ``rope(x) = x cos + rotate_pairs(x) sin``
  and ``rotate_pairs(x)[2i] = -x[2i+1]``, ``rotate_pairs(x)[2i+1] = x[2i]`` (the interleaved
  convention of RetNet / RMT / RALA). The normalizer keeps the un-rotated q and k, so it stays a
  sum of positive terms: RoFormer's linear-attention form (Su et al. 2021, eq. 19), which RALA
  (Fan et al., CVPR 2025, qhfan/RALA) uses. In the unnormalized causal form there is nothing to
  keep un-rotated: rotate q and k before the call.

What stays outside the op, in the module: feature maps and per-token rescalings of q or k (RALA's
softmax-weighted key rescaling ``k_j <- k_j alpha_j``, :mod:`edgeml.models.ravlt`), which are
elementwise on the inputs and commute with the rotation.

Forms, side by side:

* :func:`linear_attention_naive`: causal as the recurrence stepped token by token; non-causal
  as the explicit t x t attention matrices (numerator and normalizer).
* :func:`linear_attention_quadratic`: the causal masked t x t form (Mamba-2's "attention"
  form), a second reference and the benchmark's quadratic baseline.
* :func:`linear_attention_chunked`: plain aten, fixed graph for any length, the CPU kernel and
  the export decomposition. Causal: chunks of ``chunk_size`` tokens; inside a chunk the masked
  (q k^T . decay) v product, across chunks a decayed k^T v state handed on by a pairwise
  chunk-to-chunk matrix. Every decay factor is exp of a segment sum of log decays built by
  masking then summing (never a difference of two cumsums, which can round above 0), so all
  exponents are <= 0: no inf/nan for strong decay or long sequences. Non-causal: ``k'^T v`` and
  ``sum k`` once, then one product per query; the pair rotation is a product with a constant
  signed permutation matrix (a matmul XNNPACK takes, where strided slices would not be).
* ``linear_attention_triton`` (edgeml/kernels/_triton_linear_attention.py): the CUDA kernel.
* a fake kernel for torch.export.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _backend
from ._segsum import decay_matrix

__all__ = [
    "LinearAttentionArgs",
    "apply_rope",
    "linear_attention",
    "linear_attention_chunked",
    "linear_attention_naive",
    "linear_attention_quadratic",
    "pair_rotation",
    "rotate_pairs",
]

DEFAULT_CHUNK_SIZE = 64


class LinearAttentionArgs(NamedTuple):
    """The options of ``edgeml::linear_attention`` after (q, k, v), in the op's positional order.

    causal:    False: normalized non-causal attention; True: unnormalized causal (module doc).
    log_decay: (b, h, t) per-token log decay g_t <= 0, causal only; None: no decay.
    scale:     s, multiplies q (numerator and normalizer).
    eps:       added to the normalizer (non-causal).
    rope_cos:  (t, dk) cosines of the rotary embedding, numerator only (non-causal); with rope_sin.
    rope_sin:  (t, dk) sines of the rotary embedding.
    """

    causal: bool = False
    log_decay: Tensor | None = None
    scale: float = 1.0
    eps: float = 1e-6
    rope_cos: Tensor | None = None
    rope_sin: Tensor | None = None


# torch.library custom ops cannot take kwarg-only tensors, so the op's options are positional;
# the Python entry points keep them keyword-only.
_SCHEMA_TYPES = {"causal": "bool", "log_decay": "Tensor?", "scale": "float", "eps": "float",
                 "rope_cos": "Tensor?", "rope_sin": "Tensor?"}
_SCHEMA = "(Tensor q, Tensor k, Tensor v, {}) -> Tensor".format(", ".join(
    f"{_SCHEMA_TYPES[name]} {name}={d!r}"
    for name, d in LinearAttentionArgs._field_defaults.items()
))


def _check(q: Tensor, k: Tensor, v: Tensor, a: LinearAttentionArgs) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be (b, h, t, d); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape != k.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            "q and k must have the same shape and v the same (b, h, t); got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if a.log_decay is not None:
        if not a.causal:
            raise ValueError("log_decay must be None when causal=False (a decay needs an order)")
        if a.log_decay.shape != q.shape[:3]:
            raise ValueError(
                f"log_decay must be (b, h, t) = {tuple(q.shape[:3])}; got {tuple(a.log_decay.shape)}"
            )
    if (a.rope_cos is None) != (a.rope_sin is None):
        raise ValueError("rope_cos and rope_sin go together: pass both or neither")
    if a.rope_cos is not None:
        if a.causal:
            raise ValueError("rope_cos/rope_sin rotate the numerator of the normalized form only (causal=False); "
                             "for causal attention rotate q and k before the call")
        t, dk = q.shape[2:]
        if dk % 2:
            raise ValueError(f"the rotary embedding rotates pairs of features: dk must be even, got {dk}")
        for name, table in (("rope_cos", a.rope_cos), ("rope_sin", a.rope_sin)):
            if table.shape != (t, dk):
                raise ValueError(f"{name} must be (t, dk) = {(t, dk)}; got {tuple(table.shape)}")


def _args(options: dict) -> LinearAttentionArgs:
    try:
        return LinearAttentionArgs(**options)
    except TypeError:
        unknown = sorted(set(options) - set(LinearAttentionArgs._fields))
        raise TypeError(f"unknown linear_attention option(s) {unknown}; "
                        f"the options are {list(LinearAttentionArgs._fields)}") from None


def pair_rotation(d: int, *, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
    """P (d, d) with ``x @ P == rotate_pairs(x)``: P[m, m+1] = 1 for even m, P[m, m-1] = -1 for odd m."""
    idx = torch.arange(d, device=device)
    even = (idx % 2 == 0)[:, None]
    plus = (idx[None, :] == idx[:, None] + 1) & even
    minus = (idx[None, :] == idx[:, None] - 1) & ~even
    return plus.to(dtype) - minus.to(dtype)


def rotate_pairs(x: Tensor, rotation: Tensor | None = None) -> Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)`` over the last axis, as a product with a
    constant signed permutation matrix: one ``linear`` over all rows (XNNPACK's fully connected
    op, with no reshape around it, so nothing depends on the number of rows under dynamic
    shapes), where strided slices and a stack would not delegate to XNNPACK.

    ``rotation``: :func:`pair_rotation` of the width, transposed (a module's buffer, so that
    quantization sees a constant weight, as in :class:`edgeml.models.ravlt.RoPE`). Without it the
    matrix is built from ``arange`` here, which folds to a constant on export (the op's
    decomposition, after quantization)."""
    if rotation is None:
        rotation = pair_rotation(x.shape[-1], dtype=x.dtype, device=x.device).t()
    return F.linear(x, rotation)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, rotation: Tensor | None = None) -> Tensor:
    """``x cos + rotate_pairs(x) sin``: the rotary embedding of the op's ``rope_cos``/``rope_sin``
    (tables (t, d), broadcast over the leading axes of x (..., t, d)); ``rotation`` as in
    :func:`rotate_pairs`."""
    return x * cos + rotate_pairs(x, rotation) * sin


def _rope_by_slices(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    # The reference's rotation: strided slices and a stack (independent of _pair_rotation).
    rotated = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)
    return x * cos + rotated * sin


def _non_causal(q: Tensor, k: Tensor, v: Tensor, a: LinearAttentionArgs) -> Tensor:
    # 3-D batched products over (b*h): a 4-D matmul exports with expand copies that XNNPACK
    # does not take. The key sum is a product with ones (a constant once folded), not a sum
    # over tokens (portable in a .pte), and so is the normalizer.
    b, h, t, dk = q.shape
    q = q.float().reshape(b * h, t, dk) * a.scale
    k = k.float().reshape(b * h, t, dk)
    v = v.float().reshape(b * h, t, v.shape[-1])
    q_num, k_num = q, k
    if a.rope_cos is not None:
        cos, sin = a.rope_cos.float(), a.rope_sin.float()
        q_num, k_num = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    kv = torch.bmm(k_num.transpose(1, 2), v)  # (b*h, dk, dv)
    k_sum = torch.bmm(k.transpose(1, 2), k.new_ones(b * h, t, 1))  # (b*h, dk, 1)
    num = torch.bmm(q_num, kv)
    den = torch.bmm(q, k_sum)  # (b*h, t, 1)
    return (num / (den + a.eps)).unflatten(0, (b, h))


def linear_attention_naive(q: Tensor, k: Tensor, v: Tensor, **options) -> Tensor:
    """Reference: the recurrence token by token (causal) or the t x t matrices (non-causal)."""
    a = _args(options)
    _check(q, k, v, a)
    if not a.causal:
        qf, kf = q.float() * a.scale, k.float()
        attn = torch.matmul(qf, kf.transpose(-1, -2))  # (b, h, t, t): the normalizer's weights
        num = attn
        if a.rope_cos is not None:
            cos, sin = a.rope_cos.float(), a.rope_sin.float()
            num = torch.matmul(_rope_by_slices(qf, cos, sin), _rope_by_slices(kf, cos, sin).transpose(-1, -2))
        out = torch.matmul(num, v.float()) / (attn.sum(-1, keepdim=True) + a.eps)
        return out.to(q.dtype)
    b, h, t, dk = q.shape
    qf, kf, vf = q.float() * a.scale, k.float(), v.float()
    state = qf.new_zeros(b, h, dk, v.shape[-1])
    outs = []
    for i in range(t):
        if a.log_decay is not None:
            state = state * torch.exp(a.log_decay[:, :, i].float())[..., None, None]
        state = state + kf[:, :, i, :, None] * vf[:, :, i, None, :]
        outs.append(torch.matmul(qf[:, :, i, None, :], state)[:, :, 0])
    out = torch.stack(outs, dim=2) if outs else qf.new_zeros(b, h, 0, v.shape[-1])
    return out.to(q.dtype)


def linear_attention_quadratic(q: Tensor, k: Tensor, v: Tensor, **options) -> Tensor:
    """The t x t form: causal ``((s q k^T) . decay mask) v``; non-causal as in the naive form."""
    a = _args(options)
    _check(q, k, v, a)
    if not a.causal:
        return linear_attention_naive(q, k, v, **options)
    attn = torch.matmul(q.float() * a.scale, k.float().transpose(-1, -2))
    t = q.shape[2]
    if a.log_decay is None:
        mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        attn = torch.where(mask, attn, 0.0)
    else:
        attn = attn * decay_matrix(a.log_decay.float())
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


def linear_attention_chunked(q: Tensor, k: Tensor, v: Tensor, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                             **options) -> Tensor:
    """Plain-aten linear attention (the CPU implementation and the export decomposition);
    ``chunk_size`` cuts the causal form (the non-causal form needs no chunks)."""
    a = _args(options)
    _check(q, k, v, a)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if not a.causal:
        out = _non_causal(q, k, v, a)
    else:
        # The padded tail is sliced off; the clone makes the strides match the fake kernel and
        # keeps the exported graph identical whether or not t is a multiple of the chunk (a
        # conditional .contiguous() would add a node only when there is padding).
        out = _causal_chunked(q, k, v, a.log_decay, a.scale, chunk_size).clone(memory_format=torch.contiguous_format)
    return out.to(q.dtype)


def linear_attention_decomposition(q: Tensor, k: Tensor, v: Tensor, *args) -> Tensor:
    """The chunked form with the op's positional signature, for the decomposition table."""
    return linear_attention_chunked(q, k, v, **LinearAttentionArgs(*args)._asdict())


@torch.library.custom_op("edgeml::linear_attention", mutates_args=(), schema=_SCHEMA)
def _linear_attention_op(q: Tensor, k: Tensor, v: Tensor, *args) -> Tensor:
    options = LinearAttentionArgs(*args)._asdict()
    backend = _backend.current_backend()
    if backend == "naive":
        return linear_attention_naive(q, k, v, **options)
    if backend == "triton":
        from ._triton_linear_attention import linear_attention_triton

        return linear_attention_triton(q, k, v, **options)
    return linear_attention_chunked(q, k, v, **options)


@_linear_attention_op.register_kernel("cuda")
def _linear_attention_cuda(q: Tensor, k: Tensor, v: Tensor, *args) -> Tensor:
    from ._triton_linear_attention import linear_attention_triton

    return linear_attention_triton(q, k, v, **LinearAttentionArgs(*args)._asdict())


@_linear_attention_op.register_fake
def _linear_attention_fake(q: Tensor, k: Tensor, v: Tensor, *args) -> Tensor:
    _check(q, k, v, LinearAttentionArgs(*args))
    return q.new_empty(*q.shape[:3], v.shape[-1])


def linear_attention(q: Tensor, k: Tensor, v: Tensor, **options) -> Tensor:
    """Linear attention through ``torch.ops.edgeml.linear_attention``; ``options`` are the
    fields of :class:`LinearAttentionArgs` (see the module doc)."""
    return torch.ops.edgeml.linear_attention(q, k, v, *_args(options))
