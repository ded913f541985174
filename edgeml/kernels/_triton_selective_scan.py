"""Triton forward kernel for ``edgeml::selective_scan`` (Mamba-1 semantics, see selective_scan.py).

One program owns a (batch, block of channels) pair and walks the sequence in tiles of
``BLOCK_L`` tokens, keeping the (channels x states) state in fp32 registers, the way
state-spaces/mamba's CUDA kernel walks chunks. Inside a tile the recurrence is a
``tl.associative_scan`` of the pairs (decay, input) with ``(a0, x0) . (a1, x1) = (a0 a1,
a1 x0 + x1)``, so decays only multiply (values in [0, 1] for delta * A <= 0): nothing overflows;
the tile's carry-out comes from ``tl.reduce`` with the same operator.

Runs on CUDA tensors, and on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``
set before ``triton`` is first imported: Triton picks compile vs interpret when a ``@triton.jit``
function is defined). Block sizes are set for correctness and a modest register footprint;
they were not tuned on a GPU (none was available when this was written).
"""
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from .selective_scan import _check_shapes


@triton.jit
def _scan_combine(a0, x0, a1, x1):
    return a0 * a1, a1 * x0 + x1


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
    d, n, l,
    s_ub, s_ud, s_ul,  # u, delta, z and out share these strides (made contiguous by the wrapper)
    s_ad, s_an,
    s_bb, s_bg, s_bd, s_bn, s_bl, b_cpg,  # B: batch, group, channel, state, time; channels/group
    s_cb, s_cg, s_cd, s_cn, s_cl, c_cpg,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < d
    mask_n = offs_n < n
    mask_dn = mask_d[:, None] & mask_n[None, :]

    A = tl.load(A_ptr + offs_d[:, None] * s_ad + offs_n[None, :] * s_an, mask=mask_dn, other=0.0)
    A = A.to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_D:
        Dp = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    # Per-channel base offsets of B and C: the group index folds grouped layouts in.
    b_base = pid_b * s_bb + (offs_d // b_cpg)[:, None, None] * s_bg + offs_d[:, None, None] * s_bd
    b_base += offs_n[None, :, None] * s_bn
    c_base = pid_b * s_cb + (offs_d // c_cpg)[:, None, None] * s_cg + offs_d[:, None, None] * s_cd
    c_base += offs_n[None, :, None] * s_cn

    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for start in range(0, l, BLOCK_L):
        offs_l = start + tl.arange(0, BLOCK_L)
        mask_l = offs_l < l
        mask_dl = mask_d[:, None] & mask_l[None, :]
        io = pid_b * s_ub + offs_d[:, None] * s_ud + offs_l[None, :] * s_ul
        u = tl.load(u_ptr + io, mask=mask_dl, other=0.0).to(tl.float32)
        dt = tl.load(delta_ptr + io, mask=mask_dl, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            # torch's softplus (threshold 20): linear above, log(1 + e^x) below
            dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))), dt)
        # Padding tokens must be the scan's identity (decay 1, input 0).
        dt = tl.where(mask_dl, dt, 0.0)
        mask_3 = mask_dn[:, :, None] & mask_l[None, None, :]
        Bt = tl.load(B_ptr + b_base + offs_l[None, None, :] * s_bl, mask=mask_3, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + c_base + offs_l[None, None, :] * s_cl, mask=mask_3, other=0.0).to(tl.float32)

        decay = tl.exp(dt[:, None, :] * A[:, :, None])  # (D, N, L)
        inp = (dt * u)[:, None, :] * Bt
        a_cum, x_cum = tl.associative_scan((decay, inp), 2, _scan_combine)
        states = a_cum * h[:, :, None] + x_cum
        y = tl.sum(states * Ct, axis=1)  # (D, L)
        a_all, x_all = tl.reduce((decay, inp), 2, _scan_combine)
        h = a_all * h + x_all

        if HAS_D:
            y += Dp[:, None] * u
        if HAS_Z:
            zt = tl.load(z_ptr + io, mask=mask_dl, other=0.0).to(tl.float32)
            y *= zt * tl.sigmoid(zt)
        tl.store(out_ptr + io, y.to(out_ptr.dtype.element_ty), mask=mask_dl)


def _bc_strides(X: Tensor, d: int) -> tuple[int, int, int, int, int, int]:
    """(batch, group, channel, state, time) strides and channels per group for B or C."""
    if X.dim() == 2:  # (d, n)
        return 0, 0, X.stride(0), X.stride(1), 0, 1
    if X.dim() == 3:  # (b, n, l)
        return X.stride(0), 0, 0, X.stride(1), X.stride(2), 1
    return X.stride(0), X.stride(1), 0, X.stride(2), X.stride(3), d // X.shape[1]


def interpreting() -> bool:
    """True when Triton kernels run in the interpreter (TRITON_INTERPRET=1 at import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def selective_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    block_l: int | None = None,
) -> Tensor:
    """Run the Triton kernel (CUDA, or CPU tensors under TRITON_INTERPRET=1)."""
    _check_shapes(u, delta, A, B, C)
    if u.device.type == "cpu" and not interpreting():
        raise RuntimeError(
            "selective_scan_triton got CPU tensors; set TRITON_INTERPRET=1 before triton is imported "
            "to run the kernel in the Triton interpreter, or use the 'chunked' backend"
        )
    b, d, l = u.shape
    n = A.shape[1]
    u, delta = u.contiguous(), delta.contiguous()
    z = z.contiguous() if z is not None else None
    out = torch.empty_like(u)
    if l == 0:
        return out
    block_n = triton.next_power_of_2(n)
    block_d = min(triton.next_power_of_2(d), 16)
    # Keep the (D, N, L) tile at <= 4096 fp32 values per tensor.
    if block_l is None:
        block_l = max(16, min(128, 4096 // (block_d * block_n)))
    grid = (b, triton.cdiv(d, block_d))
    _selective_scan_fwd_kernel[grid](
        u, delta, A, B, C,
        D if D is not None else u, z if z is not None else u,
        delta_bias if delta_bias is not None else u, out,
        d, n, l,
        u.stride(0), u.stride(1), u.stride(2),
        A.stride(0), A.stride(1),
        *_bc_strides(B, d),
        *_bc_strides(C, d),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus),
        BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l,
    )
    return out
