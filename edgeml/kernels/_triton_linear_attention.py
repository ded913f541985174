"""Triton forward kernels for ``edgeml::linear_attention`` (semantics in linear_attention.py).

* Causal: one program per (batch*head, block of value columns) walks the chunks in order with
  the (dk x BLOCK_V) state in fp32 registers, as Lightning Attention-2's forward kernel does
  (OpenNLPLab/lightning-attention): per chunk, the masked intra-chunk product
  ``((q k^T) . decay) v``, plus ``(q . exp(G)) S``, then ``S <- exp(G_last) S + (k . exp(G_last -
  G))^T v`` with G the in-chunk cumsum of log decays. Decay differences are clamped to <= 0
  before exp (the fix state-spaces/mamba#713 and vllm#37501 apply) so rounding cannot push an
  exponent above 0.
* Non-causal: one program per (batch*head, value block) accumulates ``k'^T v`` and ``sum k`` over
  the sequence, then a second sweep writes ``(s q') KV / ((s q) . sum k + eps)``. With rotary
  tables, ``x' = x cos + rotate_pairs(x) sin`` is formed in registers: the pair-swapped tile is a
  second load of the same rows at column ``m ^ 1``, negated on even columns; without them
  ``x' = x`` (RoFormer's numerator-only rotation, see linear_attention.py).

fp32 inputs use IEEE fp32 dots (not TF32) so the kernel can serve as a reference; bf16/fp16
inputs use tensor-core dots with fp32 accumulation. Runs on CUDA tensors, or on CPU tensors in
the Triton interpreter (``TRITON_INTERPRET=1`` set before triton is imported). Block sizes were
not tuned on a GPU (none was available when this was written).
"""
import torch
import triton
import triton.language as tl
from torch import Tensor

from ._triton_selective_scan import interpreting
from .linear_attention import _args, _check


@triton.jit
def _causal_fwd_kernel(
    q_ptr, k_ptr, v_ptr, g_ptr, o_ptr,
    t, dk, dv, scale,
    s_qbh, s_qt, s_qk,
    s_vbh, s_vt, s_vv,
    s_gbh, s_gt,
    HAS_DECAY: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    offs_i = tl.arange(0, BLOCK_T)
    mask_k = offs_k < dk
    mask_v = offs_v < dv
    causal = offs_i[:, None] >= offs_i[None, :]

    state = tl.zeros([BLOCK_K, BLOCK_V], dtype=tl.float32)
    for start in range(0, t, BLOCK_T):
        offs_t = start + offs_i
        mask_t = offs_t < t
        qk_off = pid_bh * s_qbh + offs_t[:, None] * s_qt + offs_k[None, :] * s_qk
        mask_tk = mask_t[:, None] & mask_k[None, :]
        q = tl.load(q_ptr + qk_off, mask=mask_tk, other=0.0)
        k = tl.load(k_ptr + qk_off, mask=mask_tk, other=0.0)
        v_off = pid_bh * s_vbh + offs_t[:, None] * s_vt + offs_v[None, :] * s_vv
        mask_tv = mask_t[:, None] & mask_v[None, :]
        v = tl.load(v_ptr + v_off, mask=mask_tv, other=0.0)
        if IEEE:
            scores = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            scores = tl.dot(q, tl.trans(k))
        scores = scores * scale
        qf = q.to(tl.float32) * scale
        kf = k.to(tl.float32)
        if HAS_DECAY:
            g = tl.load(g_ptr + pid_bh * s_gbh + offs_t * s_gt, mask=mask_t, other=0.0).to(tl.float32)
            G = tl.cumsum(g, 0)
            G_last = tl.sum(g, 0)
            seg = tl.minimum(G[:, None] - G[None, :], 0.0)
            scores = tl.where(causal, scores * tl.exp(seg), 0.0)
            qf = qf * tl.exp(tl.minimum(G, 0.0))[:, None]
            kf = kf * tl.exp(tl.minimum(G_last - G, 0.0))[:, None]
        else:
            scores = tl.where(causal, scores, 0.0)
        if IEEE:
            out = tl.dot(scores, v.to(tl.float32), input_precision="ieee")
            out += tl.dot(qf, state, input_precision="ieee")
        else:
            out = tl.dot(scores.to(v.dtype), v)
            out += tl.dot(qf, state)
        tl.store(o_ptr + v_off, out.to(o_ptr.dtype.element_ty), mask=mask_tv)
        if HAS_DECAY:
            state = state * tl.exp(tl.minimum(G_last, 0.0))
        if IEEE:
            state += tl.dot(tl.trans(kf), v.to(tl.float32), input_precision="ieee")
        else:
            state += tl.dot(tl.trans(kf.to(v.dtype)), v)


@triton.jit
def _rotated(x_ptr, rows, offs_k, s_k, mask, x, cos_ptr, sin_ptr, tab):
    # x cos + rotate_pairs(x) sin, rotate_pairs(x)[m] = -x[m+1] (m even), x[m-1] (m odd).
    partner = tl.load(x_ptr + rows + ((offs_k ^ 1) * s_k)[None, :], mask=mask, other=0.0).to(tl.float32)
    sign = tl.where(offs_k % 2 == 0, -1.0, 1.0)
    cos = tl.load(cos_ptr + tab, mask=mask, other=0.0).to(tl.float32)
    sin = tl.load(sin_ptr + tab, mask=mask, other=0.0).to(tl.float32)
    return x * cos + partner * sign[None, :] * sin


@triton.jit
def _non_causal_fwd_kernel(
    q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, o_ptr,
    t, dk, dv, scale, eps,
    s_qbh, s_qt, s_qk,
    s_vbh, s_vt, s_vv,
    s_rt, s_rk,
    HAS_ROPE: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_v = tl.program_id(1)
    offs_k = tl.arange(0, BLOCK_K)
    offs_v = pid_v * BLOCK_V + tl.arange(0, BLOCK_V)
    offs_i = tl.arange(0, BLOCK_T)
    mask_k = offs_k < dk
    mask_v = offs_v < dv

    kv = tl.zeros([BLOCK_K, BLOCK_V], dtype=tl.float32)
    k_sum = tl.zeros([BLOCK_K], dtype=tl.float32)
    for start in range(0, t, BLOCK_T):
        offs_t = start + offs_i
        mask_t = offs_t < t
        mask_tk = mask_t[:, None] & mask_k[None, :]
        rows = pid_bh * s_qbh + offs_t[:, None] * s_qt
        k = tl.load(k_ptr + rows + offs_k[None, :] * s_qk, mask=mask_tk, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + pid_bh * s_vbh + offs_t[:, None] * s_vt + offs_v[None, :] * s_vv,
                    mask=mask_t[:, None] & mask_v[None, :], other=0.0).to(tl.float32)
        k_sum += tl.sum(k, 0)
        if HAS_ROPE:
            tab = offs_t[:, None] * s_rt + offs_k[None, :] * s_rk
            k = _rotated(k_ptr, rows, offs_k, s_qk, mask_tk, k, cos_ptr, sin_ptr, tab)
        if IEEE:
            kv += tl.dot(tl.trans(k), v, input_precision="ieee")
        else:
            kv += tl.dot(tl.trans(k), v)

    for start in range(0, t, BLOCK_T):
        offs_t = start + offs_i
        mask_t = offs_t < t
        mask_tk = mask_t[:, None] & mask_k[None, :]
        rows = pid_bh * s_qbh + offs_t[:, None] * s_qt
        q = tl.load(q_ptr + rows + offs_k[None, :] * s_qk, mask=mask_tk, other=0.0).to(tl.float32)
        den = tl.sum(q * k_sum[None, :], 1) * scale + eps
        if HAS_ROPE:  # the normalizer above keeps the un-rotated q
            tab = offs_t[:, None] * s_rt + offs_k[None, :] * s_rk
            q = _rotated(q_ptr, rows, offs_k, s_qk, mask_tk, q, cos_ptr, sin_ptr, tab)
        q = q * scale
        if IEEE:
            num = tl.dot(q, kv, input_precision="ieee")
        else:
            num = tl.dot(q, kv)
        o_off = pid_bh * s_vbh + offs_t[:, None] * s_vt + offs_v[None, :] * s_vv
        tl.store(o_ptr + o_off, (num / den[:, None]).to(o_ptr.dtype.element_ty),
                 mask=mask_t[:, None] & mask_v[None, :])


def linear_attention_triton(q: Tensor, k: Tensor, v: Tensor, *, block_t: int = 64, **options) -> Tensor:
    """Run the Triton kernel (CUDA, or CPU tensors under TRITON_INTERPRET=1); ``options`` are
    the fields of ``LinearAttentionArgs``, ``block_t`` the tokens per tile."""
    a = _args(options)
    _check(q, k, v, a)
    if q.device.type == "cpu" and not interpreting():
        raise RuntimeError(
            "linear_attention_triton got CPU tensors; set TRITON_INTERPRET=1 before triton is imported "
            "to run the kernel in the Triton interpreter, or use the 'chunked' backend"
        )
    b, h, t, dk = q.shape
    dv = v.shape[-1]
    # (b, h, t, d) -> (b*h, t, d); reshape copies only when the layout needs it.
    q3, k3, v3 = (x.reshape(b * h, t, x.shape[-1]) for x in (q, k, v))
    if k3.stride() != q3.stride():
        q3, k3 = q3.contiguous(), k3.contiguous()
    out = torch.empty(b * h, t, dv, dtype=q.dtype, device=q.device)
    if t == 0:
        return out.view(b, h, t, dv)
    if v3.stride() != out.stride():
        v3 = v3.contiguous()
    ieee = q.dtype == torch.float32
    block_k = max(16, triton.next_power_of_2(dk))  # tl.dot needs >= 16 per dim
    block_v = max(16, min(64, triton.next_power_of_2(dv)))
    block_t = max(16, triton.next_power_of_2(block_t))
    grid = (b * h, triton.cdiv(dv, block_v))
    if a.causal:
        g = a.log_decay.reshape(b * h, t) if a.log_decay is not None else q3
        _causal_fwd_kernel[grid](
            q3, k3, v3, g, out, t, dk, dv, float(a.scale),
            q3.stride(0), q3.stride(1), q3.stride(2),
            v3.stride(0), v3.stride(1), v3.stride(2),
            g.stride(0), g.stride(1),
            HAS_DECAY=a.log_decay is not None, IEEE=ieee,
            BLOCK_T=block_t, BLOCK_K=block_k, BLOCK_V=block_v,
        )
    else:
        has_rope = a.rope_cos is not None
        cos, sin = (a.rope_cos, a.rope_sin) if has_rope else (q3[0], q3[0])
        if has_rope and cos.stride() != sin.stride():
            cos, sin = cos.contiguous(), sin.contiguous()
        _non_causal_fwd_kernel[grid](
            q3, k3, v3, cos, sin, out, t, dk, dv, float(a.scale), float(a.eps),
            q3.stride(0), q3.stride(1), q3.stride(2),
            v3.stride(0), v3.stride(1), v3.stride(2),
            cos.stride(0), cos.stride(1),
            HAS_ROPE=has_rope, IEEE=ieee, BLOCK_T=block_t, BLOCK_K=block_k, BLOCK_V=block_v,
        )
    return out.view(b, h, t, dv)
