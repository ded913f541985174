"""MobileMamba (He et al., CVPR 2025, arXiv 2411.15941), all six published variants.

Follows github lewandofskee/MobileMamba (MIT; ``model/mobilemamba/mobilemamba.py`` and the
``SS2Dv2`` ``v052d`` path of ``model/lib_mamba/vmambanew.py``), read, not copied. The structure,
the channel splits and every state_dict key are the official ones, so an official checkpoint
loads with ``strict=True`` (``edgeml.create_model(name, checkpoint=...)``):

* stem: four 3x3 stride-2 Conv-BN (C/8, C/4, C/2, C) with ReLUs between; the three stages run
  at strides 16 / 32 / 64 (each stride-2 step is ``ceil``: 224 gives 14 / 7 / 4);
* stages 2 and 3 start with [residual DW3x3-BN, residual FFN] at the old width, PatchMerging
  (1x1 Conv-BN to 4C, ReLU, DW3x3 s2 Conv-BN, ReLU, SE, 1x1 Conv-BN), and the same pair at
  the new width;
* block: ``out = x + DropPath(ffn1(dw1(mixer(ffn0(dw0(x))))))`` where every one of the five
  sub-modules is itself residual (the identity is counted twice, as in the original);
* MRFFI (``mixer.m.attn``): channels split into [global | local | identity], global =
  nearest multiple of 16 of ``int(gr * C)``, local = ``int(lr * C)`` (clipped so that the two
  fit), then ReLU and a 1x1 Conv-BN over all channels. Local: DW kxk Conv-BN, ReLU, DW 1x1
  Conv-BN. Global (``MBWTConv2d``): ``base_scale * SS2D(x) + IWT(wavelet_scale *
  DWConv_k(DWT(x)))``;
* SS2D: in_proj Conv-BN to 2 * d_inner, (x, z) split, ``z = SiLU(z)``, ``x = SiLU(DW3x3(x))``,
  a bidirectional selective scan over the row-major token order (d_state 1, dt_rank
  ``ceil(C_g / 16)``), per-sample merge ``y_fwd + flip(y_bwd)``, LayerNorm over channels,
  ``* z``, out_proj Conv-BN;
* head: global average pool, BatchNorm1d + Linear (``BN_Linear``).

Where this differs from the original, and why:

* The selective scan goes through ``edgeml.kernels.selective_scan`` (the ``edgeml::selective_scan``
  custom op: a chunked plain-aten form on CPU, a Triton kernel on CUDA, decomposed at export),
  not the CUDA extension / per-token Python loop, so the exported graph does not grow with the
  token count. ``scan="loop"`` builds the same model with an explicit per-token loop that has
  the original CPU fallback's semantics; it exists only to benchmark against (it unrolls).
* The original's CPU merge adds a (B, D, L) to a (B, 1, D, L) tensor and sums over the
  broadcast axis, which mixes samples when batch > 1. Here each sample's two directions are
  merged on their own; at batch 1 the two agree.
* The Haar transforms are space-to-depth + a fixed 4x4 mix and the inverse mix + pixel_shuffle
  (``edgeml.models.layers.haar``) instead of a grouped stride-2 conv and ``conv_transpose2d``.
  The official ``wt_filter``/``iwt_filter`` tensors (frozen Parameters holding those constants)
  are dropped in :meth:`MobileMamba.adapt_official_state_dict`; the model has no such keys and
  its parameter count is the official one minus those constants.
* Every convolution uses explicit integer padding (the original's ``padding='same'`` exports
  as ``aten.conv2d.padding``). The x/dt projections are batched matmuls instead of grouped
  ``conv1d`` (same arithmetic). No timm / pywt / fvcore / triton imports.
* The head pools with ``mean(dim=(2, 3), keepdim=True)`` instead of ``adaptive_avg_pool2d``.
* Initialization: the original zero-initializes the BatchNorm scale closing every residual
  branch (dw0/dw1, the FFNs' pw2, MRFFI's proj), a training recipe. A randomly initialized zoo
  model is a deployment reference (export, verify, quantize without a checkpoint), and with
  those branches dead the scan and the wavelet path would never be exercised, so every
  BatchNorm scale starts at 1 (``zero_init_residual=True`` restores the original init); after
  the zoo has estimated the BatchNorm statistics, :meth:`MobileMamba.finish_random_init` scales
  those branches to 0.2 (``RESIDUAL_BRANCH_SCALE``, with the measurements that motivate it).

Shapes: the model takes any input size with static shapes. Two Python branches depend on the
spatial size: the Haar transform zero-pads odd H/W and crops after the inverse (taken e.g. at
stage 3 of T2/T4 at 192, 3x3 tokens, and stage 2 of S6 at 224, 7x7), and the channel split
skips an empty identity part (a constant of the variant). An export with *dynamic* H/W would
specialize on the parity of each stage's size; export at a fixed resolution. Because of the
pad/crop nodes the exported node count depends on those parities, not on the token count.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgeml import kernels
from edgeml.errors import UsageError
from edgeml.models._registry import ModelConfig, register_model
from edgeml.models.layers.haar import HaarDWT, HaarIWT
from edgeml.models.layers.norm import LayerNorm2d

PAPER = "MobileMamba: Lightweight Multi-Receptive Visual Mamba Network, CVPR 2025 (arXiv 2411.15941)"
SCAN_MODES = ("op", "loop")
_HAAR_KEYS = ("wt_filter", "iwt_filter")


# --------------------------------------------------------------------------- building blocks
class Conv2dBN(nn.Sequential):
    """``Conv2d_BN`` of the original: a bias-free conv (child ``c``) then BatchNorm2d (``bn``)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)


def conv_bn_weights(conv_bn: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the single conv computing ``conv_bn`` in eval mode: a ``Conv2dBN``, or one
    whose BatchNorm was already folded away (``bn`` replaced by ``Identity``)."""
    conv, bn = conv_bn.c, conv_bn.bn
    w = conv.weight.double()
    b = conv.bias.double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if isinstance(bn, nn.BatchNorm2d):
        s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w, b = w * s[:, None, None, None], (b - bn.running_mean.double()) * s + bn.bias.double()
    elif not isinstance(bn, nn.Identity):
        raise TypeError(f"expected BatchNorm2d or Identity after the conv, got {type(bn).__name__}")
    return w.to(conv.weight.dtype), b.to(conv.weight.dtype)


def _conv1x1(weight: torch.Tensor, bias: torch.Tensor | None, groups: int = 1) -> nn.Conv2d:
    """A 1x1 conv holding ``weight`` (out, in / groups) or (out, in / groups, 1, 1) and ``bias``."""
    weight = weight.reshape(weight.shape[0], -1, 1, 1)
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], 1, groups=groups, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias.reshape(-1))
    return conv


class BNLinear(nn.Sequential):
    """``BN_Linear`` of the original: BatchNorm1d (``bn``) then Linear (``l``)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.l = nn.Linear(in_features, out_features)
        nn.init.trunc_normal_(self.l.weight, std=0.02)
        nn.init.zeros_(self.l.bias)


class Residual(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.pw1 = Conv2dBN(dim, hidden)
        self.act = nn.ReLU()
        self.pw2 = Conv2dBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


def _dw_bn(dim: int) -> Conv2dBN:
    return Conv2dBN(dim, dim, 3, 1, 1, groups=dim)


class SqueezeExcite(nn.Module):
    """timm's ``SEModule`` as the original uses it: mean, 1x1 conv, ReLU, 1x1 conv, sigmoid gate."""

    def __init__(self, channels: int, rd_ratio: float = 0.25, divisor: int = 8) -> None:
        super().__init__()
        # timm make_divisible with round_limit=0: round to the nearest multiple of `divisor`.
        rd = max(divisor, int(channels * rd_ratio + divisor / 2) // divisor * divisor)
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class PatchMerging(nn.Module):
    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = 4 * dim
        self.conv1 = Conv2dBN(dim, hidden)
        self.act = nn.ReLU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 2, 1, groups=hidden)
        self.se = SqueezeExcite(hidden, 0.25)
        self.conv3 = Conv2dBN(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))


class LocalMixer(nn.Sequential):
    """MK-DeConv on the local channels (``DWConv2d_BN_ReLU``): DW kxk Conv-BN, ReLU, DW 1x1 Conv-BN."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.dwconv3x3 = nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.relu = nn.ReLU()
        self.dwconv1x1 = nn.Conv2d(dim, dim, 1, 1, 0, groups=dim, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)


class Scale(nn.Module):
    """Per-channel multiplier with the original's ``_ScaleModule`` key (``weight``, shape (1, C, 1, 1))."""

    def __init__(self, channels: int, init: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, channels, 1, 1), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


class DropPath(nn.Module):
    """Stochastic depth on the block's residual branch; the identity at inference."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


# --------------------------------------------------------------------------- selective scan
def selective_scan_loop(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The scan as an explicit loop over tokens, with the original's CPU-fallback semantics.

    u, delta (b, d, l); A (d, n); B, C (b, g, n, l) with d divisible by g (group k drives
    channels ``k*d/g ... (k+1)*d/g - 1``); D (d,); delta_bias (d,). Returns (b, d, l), fp32 state.
    ``torch.export`` unrolls the loop (about 3 * l nodes per call): only for benchmarks.
    """
    batch, dim, length = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    groups = B.shape[1]
    Bx = B.repeat_interleave(dim // groups, dim=1)  # (b, d, n, l)
    Cx = C.repeat_interleave(dim // groups, dim=1)
    decay = torch.exp(delta[:, :, None, :] * A[None, :, :, None])  # (b, d, n, l)
    drive = delta[:, :, None, :] * Bx * u[:, :, None, :]
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = decay[..., t] * h + drive[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    return y if D is None else y + u * D[:, None]


def _selective_scan_op(*args, **kwargs) -> torch.Tensor:
    scan = getattr(kernels, "selective_scan", None)
    if scan is None:
        raise UsageError(
            "edgeml.kernels.selective_scan is not available in this installation; "
            "build the model with scan='loop' (slow, unrolls on export) or update edgeml"
        )
    return scan(*args, **kwargs)


class SS2D(nn.Module):
    """VMamba's ``SS2Dv2`` in MobileMamba's configuration: channel-first, ``v052d`` (bidirectional),
    k_group 2, ``initialize='v2'``, LayerNorm output norm, no output activation, no dropout."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        d_conv: int = 3,
        k_group: int = 2,
        scan: str = "op",
    ) -> None:
        super().__init__()
        if scan not in SCAN_MODES:
            raise UsageError(f"scan must be one of {', '.join(SCAN_MODES)}, not {scan!r}")
        if k_group != 2:
            raise ValueError("MobileMamba's SS2D is bidirectional: k_group must be 2")
        d_inner = int(ssm_ratio * d_model)
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, math.ceil(d_model / 16)
        self.k_group, self.scan = k_group, scan
        self.in_proj = Conv2dBN(d_model, 2 * d_inner)
        self.act = nn.SiLU()
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, 1, (d_conv - 1) // 2, groups=d_inner, bias=True)
        proj_out = self.dt_rank + 2 * d_state
        x_proj = torch.empty(k_group, proj_out, d_inner)
        for w in x_proj:  # nn.Linear's default init, one per direction
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.x_proj_weight = nn.Parameter(x_proj)
        self.Ds = nn.Parameter(torch.ones(k_group * d_inner))
        self.A_logs = nn.Parameter(torch.zeros(k_group * d_inner, d_state))
        self.dt_projs_weight = nn.Parameter(0.1 * torch.rand(k_group, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(0.1 * torch.rand(k_group, d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = Conv2dBN(d_inner, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.export_form:
            return self._forward_export_form(x)
        x, z = self.in_proj(x).chunk(2, dim=1)
        z = self.act(z)
        x = self.act(self.conv2d(x))
        y = self.forward_core(x)
        return self.out_proj(y * z)

    def forward_core(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w = x.shape
        length, k, n, r = h * w, self.k_group, self.d_state, self.dt_rank
        flat = x.reshape(b, d, length)
        # Direction 0 scans the row-major token order, direction 1 the reversed order.
        xs = torch.cat([flat, flat.flip(-1)], dim=1)  # (b, k*d, l)
        x_dbl = torch.matmul(self.x_proj_weight, xs.reshape(b, k, d, length))  # (b, k, r+2n, l)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=2)
        dts = torch.matmul(self.dt_projs_weight, dts).reshape(b, k * d, length)  # (b, k*d, l)
        A = -torch.exp(self.A_logs)
        scan = _selective_scan_op if self.scan == "op" else selective_scan_loop
        ys = scan(
            xs, dts, A, Bs.contiguous(), Cs.contiguous(),
            D=self.Ds, delta_bias=self.dt_projs_bias.reshape(-1), delta_softplus=True,
        )
        # Per-sample merge: each sample's reversed-direction output is flipped back and added.
        y = (ys[:, :d] + ys[:, d:].flip(-1)).reshape(b, d, h, w)
        y = self.out_norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return y

    export_form = False

    @torch.no_grad()
    def use_export_form(self) -> None:
        """Switch, in place and for good, to the same function written with fewer, delegable ops.

        * ``in_proj`` (Conv-BN, then a split into x and z) -> two convs ``in_proj_x``/``in_proj_z``;
        * the per-direction projections (batched matmuls, a split, and the broadcast that
          ExecuTorch runs as portable ``expand_copy``) -> 1x1 convs of x, one each for dt (low
          rank), B and C with both directions' weights stacked, and ``dt_proj`` (``groups=k_group``)
          with ``dt_projs_bias`` as its bias;
        * ``A = -exp(A_logs)`` -> a constant; ``out_norm`` -> the same LayerNorm on the channel
          axis of the NCHW map (``LayerNorm2d``: no permutes);
        * the reversed direction -> ``edgeml::selective_scan(..., bidirectional=True)``, which
          scans the second half of the channels from the last token to the first: no flip of the
          sequence before the scan or of its output after (two portable kernels per block that split
          the XNNPACK delegate). A projection commutes with the flip (it is per token), so the
          second direction's dt, B and C are those of the unflipped tokens.
        The tokens stay in (b, c, h, w) maps. Official-checkpoint keys are gone afterwards: this is
        for export (edgeml.export.passes.export_form).
        """
        if self.export_form:
            return
        k, d, n, r = self.k_group, self.d_inner, self.d_state, self.dt_rank
        w, b = conv_bn_weights(self.in_proj)
        self.in_proj_x, self.in_proj_z = _conv1x1(w[:d], b[:d]), _conv1x1(w[d:], b[d:])
        xw = self.x_proj_weight  # (k, r + 2n, d)
        self.x_proj_dt = _conv1x1(xw[:, :r].reshape(k * r, d), None)
        self.x_proj_B = _conv1x1(xw[:, r:r + n].reshape(k * n, d), None)
        self.x_proj_C = _conv1x1(xw[:, r + n:].reshape(k * n, d), None)
        self.dt_proj = _conv1x1(self.dt_projs_weight.reshape(k * d, r), self.dt_projs_bias.reshape(-1), groups=k)
        self.register_buffer("A", -torch.exp(self.A_logs.detach()))
        norm = LayerNorm2d(d, eps=self.out_norm.eps)
        norm.weight.copy_(self.out_norm.weight)
        norm.bias.copy_(self.out_norm.bias)
        self.out_norm = norm
        del self.in_proj, self.x_proj_weight, self.dt_projs_weight, self.dt_projs_bias, self.A_logs
        self.export_form = True

    def _forward_export_form(self, x: torch.Tensor) -> torch.Tensor:
        z = self.act(self.in_proj_z(x))
        x = self.act(self.conv2d(self.in_proj_x(x)))
        b, d, h, w = x.shape
        k, n, length = self.k_group, self.d_state, h * w
        if self.scan == "op":
            # Both directions read the same tokens x, in token order (u shared by the two halves).
            dts, Bs, Cs = self.dt_proj(self.x_proj_dt(x)), self.x_proj_B(x), self.x_proj_C(x)
            ys = _selective_scan_op(x.reshape(b, d, length), dts.reshape(b, k * d, length), self.A,
                                    Bs.reshape(b, k, n, length), Cs.reshape(b, k, n, length), D=self.Ds,
                                    delta_softplus=True, bidirectional=True)
            y = ys[:, :d] + ys[:, d:]
        else:  # the original's formulation: the second direction on the flipped tokens, one loop for both
            u = torch.cat([x, x.flip((-2, -1))], dim=1)

            def per_direction(conv: nn.Conv2d) -> torch.Tensor:
                return F.conv2d(u, conv.weight, groups=k)

            dts = self.dt_proj(per_direction(self.x_proj_dt))
            ys = selective_scan_loop(u.reshape(b, k * d, length), dts.reshape(b, k * d, length), self.A,
                                     per_direction(self.x_proj_B).reshape(b, k, n, length),
                                     per_direction(self.x_proj_C).reshape(b, k, n, length),
                                     D=self.Ds, delta_softplus=True)
            y = ys[:, :d] + ys[:, d:].flip(-1)
        y = self.out_norm(y.reshape(b, d, h, w))
        return self.out_proj(y * z)


class WaveletMamba(nn.Module):
    """WTE-Mamba on the global channels (``MBWTConv2d`` with one wavelet level, stride 1)."""

    def __init__(self, channels: int, kernel_size: int, ssm_ratio: float, scan: str = "op") -> None:
        super().__init__()
        self.channels = channels
        self.global_atten = SS2D(channels, d_state=1, ssm_ratio=ssm_ratio, k_group=2, scan=scan)
        self.base_scale = Scale(channels, 1.0)
        sub = 4 * channels
        self.wavelet_convs = nn.ModuleList(
            [nn.Conv2d(sub, sub, kernel_size, 1, kernel_size // 2, groups=sub, bias=False)]
        )
        self.wavelet_scale = nn.ModuleList([Scale(sub, 0.1)])
        self.dwt = HaarDWT(channels)
        self.iwt = HaarIWT(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2], x.shape[-1])
        bands = self.wavelet_scale[0](self.wavelet_convs[0](self.dwt(x)))
        return self.base_scale(self.global_atten(x)) + self.iwt(bands, size)

    @torch.no_grad()
    def use_export_form(self) -> None:
        """In place: the SS2D's export form, with ``base_scale`` folded into its ``out_proj`` and
        ``wavelet_scale`` into the depthwise conv on the sub-bands (both per output channel)."""
        if isinstance(self.base_scale, nn.Identity):
            return
        ss2d = self.global_atten
        ss2d.use_export_form()
        w, b = conv_bn_weights(ss2d.out_proj)
        s = self.base_scale.weight.reshape(-1)
        ss2d.out_proj = _conv1x1(w * s[:, None, None, None], b * s)
        self.wavelet_convs[0].weight.mul_(self.wavelet_scale[0].weight.reshape(-1, 1, 1, 1))
        self.base_scale = nn.Identity()
        self.wavelet_scale = nn.ModuleList([nn.Identity()])


def nearest_multiple_of_16(n: int) -> int:
    """The multiple of 16 nearest to ``n``; a tie goes up (as in the original)."""
    lower = n // 16 * 16
    return lower if n - lower < lower + 16 - n else lower + 16


def split_channels(dim: int, global_ratio: float, local_ratio: float) -> tuple[int, int, int]:
    """MRFFI's (global, local, identity) channel counts for a block of width ``dim``."""
    g = nearest_multiple_of_16(int(global_ratio * dim))
    local = int(local_ratio * dim)
    if g + local > dim:
        local = dim - g
    return g, local, dim - g - local


class MRFFI(nn.Module):
    """Multi-Receptive Field Feature Interaction (``MobileMambaModule`` of the original)."""

    def __init__(
        self, dim: int, global_ratio: float, local_ratio: float, kernel_size: int, ssm_ratio: float,
        scan: str = "op",
    ) -> None:
        super().__init__()
        self.global_channels, self.local_channels, self.identity_channels = split_channels(
            dim, global_ratio, local_ratio
        )
        self.local_op = LocalMixer(self.local_channels, kernel_size) if self.local_channels else nn.Identity()
        self.global_op = (
            WaveletMamba(self.global_channels, kernel_size, ssm_ratio, scan) if self.global_channels
            else nn.Identity()
        )
        self.proj = nn.Sequential(nn.ReLU(), Conv2dBN(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Empty parts (T4/S6/B1 stage 1 have no identity channels) are left out of the split.
        # Channel slices, not torch.split: XNNPACK takes slice_copy, split_with_sizes stays portable.
        g, lc = self.global_channels, self.local_channels
        out = []
        if g:
            out.append(self.global_op(x[:, :g]))
        if lc:
            out.append(self.local_op(x[:, g:g + lc]))
        if self.identity_channels:
            out.append(x[:, g + lc:])  # untouched; mixed only by proj
        return self.proj(torch.cat(out, dim=1))


class _Window(nn.Module):
    """``MobileMambaBlockWindow``: only a holder, kept for the ``mixer.m.attn`` key path."""

    def __init__(self, attn: MRFFI) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


class MobileMambaBlock(nn.Module):
    def __init__(
        self, dim: int, global_ratio: float, local_ratio: float, kernel_size: int, ssm_ratio: float,
        drop_path: float = 0.0, scan: str = "op",
    ) -> None:
        super().__init__()
        self.dw0 = Residual(_dw_bn(dim))
        self.ffn0 = Residual(FFN(dim, 2 * dim))
        self.mixer = Residual(_Window(MRFFI(dim, global_ratio, local_ratio, kernel_size, ssm_ratio, scan)))
        self.dw1 = Residual(_dw_bn(dim))
        self.ffn1 = Residual(FFN(dim, 2 * dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))
        return x + self.drop_path(y)


def _conv_ffn_pair(dim: int) -> nn.Sequential:
    return nn.Sequential(Residual(_dw_bn(dim)), Residual(FFN(dim, 2 * dim)))


# --------------------------------------------------------------------------- the network
# Residual branches are scaled down after BatchNorm statistics are estimated on a random init
# (``finish_random_init``; the same rule and value as MobileNetV2 in mobilenet.py). Measured on
# mobilemamba_t2 (the 6 sample images at 192; fp32 eager, white noise 40 dB below the signal):
# with every branch at full scale, noise added after the stem reaches the logits at 25.0 dB (the
# residual blocks amplify a perturbation by 15 dB: a chaotic random network) and PT2E int8
# simulates at 9.3 dB (worst image 8.4); with branches at 0.2 the same noise reaches the logits
# at 40.5 dB (no amplification) and int8 simulates at 23.6 dB (worst 22.8), top-1 6 of 6. What
# remains is spread over the plain CNN layers (stem alone 27.4 dB, head alone 30.5 dB); the
# scan path quantized alone costs nothing measurable (48.8 dB), the wavelet path 75.6 dB.
RESIDUAL_BRANCH_SCALE = 0.2


@dataclass(frozen=True)
class MobileMambaArch:
    embed_dim: tuple[int, int, int]
    depth: tuple[int, int, int]
    drop_path: float = 0.0
    global_ratio: tuple[float, float, float] = (0.8, 0.7, 0.6)
    local_ratio: tuple[float, float, float] = (0.2, 0.2, 0.3)
    kernels: tuple[int, int, int] = (7, 5, 3)
    ssm_ratio: float = 2.0


class MobileMamba(nn.Module):
    def __init__(
        self,
        embed_dim: Sequence[int],
        depth: Sequence[int],
        global_ratio: Sequence[float] = (0.8, 0.7, 0.6),
        local_ratio: Sequence[float] = (0.2, 0.2, 0.3),
        kernels: Sequence[int] = (7, 5, 3),
        ssm_ratio: float = 2.0,
        drop_path: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        scan: str = "op",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if scan not in SCAN_MODES:
            raise UsageError(f"scan must be one of {', '.join(SCAN_MODES)}, not {scan!r}")
        if len(embed_dim) != 3 or len(depth) != 3:
            raise ValueError("MobileMamba has three stages: embed_dim and depth need three entries")
        self.scan = scan
        self.num_classes = num_classes
        self.num_features = embed_dim[-1]
        c = embed_dim[0]
        self.patch_embed = nn.Sequential(
            Conv2dBN(in_chans, c // 8, 3, 2, 1), nn.ReLU(),
            Conv2dBN(c // 8, c // 4, 3, 2, 1), nn.ReLU(),
            Conv2dBN(c // 4, c // 2, 3, 2, 1), nn.ReLU(),
            Conv2dBN(c // 2, c, 3, 2, 1),
        )
        rates = torch.linspace(0, drop_path, sum(depth)).tolist()
        stages: list[list[nn.Module]] = [[], [], []]
        for i in range(3):
            for d in range(depth[i]):
                stages[i].append(MobileMambaBlock(
                    embed_dim[i], global_ratio[i], local_ratio[i], kernels[i], ssm_ratio,
                    rates[sum(depth[:i]) + d], scan,
                ))
            if i < 2:  # the next stage opens with its downsampling
                stages[i + 1] += [
                    _conv_ffn_pair(embed_dim[i]),
                    PatchMerging(embed_dim[i], embed_dim[i + 1]),
                    _conv_ffn_pair(embed_dim[i + 1]),
                ]
        self.blocks1 = nn.Sequential(*stages[0])
        self.blocks2 = nn.Sequential(*stages[1])
        self.blocks3 = nn.Sequential(*stages[2])
        self.head = BNLinear(embed_dim[-1], num_classes) if num_classes > 0 else nn.Identity()
        if zero_init_residual:
            with torch.no_grad():
                for conv_bn in self.residual_closing_layers():
                    conv_bn.bn.weight.zero_()

    @torch.no_grad()
    def finish_random_init(self, scale: float | None = None) -> None:
        """Called by the zoo after BatchNorm statistics are estimated on a randomly initialized
        model: every residual branch is scaled down to enter the stream at ``scale`` (default
        ``RESIDUAL_BRANCH_SCALE``) of its normalized size, by scaling the closing BatchNorm."""
        scale = RESIDUAL_BRANCH_SCALE if scale is None else float(scale)
        for conv_bn in self.residual_closing_layers():
            conv_bn.bn.weight.mul_(scale)
            conv_bn.bn.bias.mul_(scale)

    def residual_closing_layers(self) -> list[Conv2dBN]:
        """The Conv-BNs closing a residual branch: every FFN's pw2, the blocks' dw0/dw1, MRFFI's
        proj (the layers whose BatchNorm scale the original initializes to 0)."""
        closing: list[Conv2dBN] = []
        for m in self.modules():
            if isinstance(m, FFN):
                closing.append(m.pw2)
            elif isinstance(m, MobileMambaBlock):
                closing += [m.dw0.m, m.dw1.m]
            elif isinstance(m, MRFFI):
                closing.append(m.proj[1])
        return closing

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks3(self.blocks2(self.blocks1(self.patch_embed(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3), keepdim=True).flatten(1)
        return self.head(x)

    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the official checkpoints' frozen Haar filters, which this model builds itself."""
        return {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in _HAAR_KEYS}


# --------------------------------------------------------------------------- the zoo
# Published configurations (CFG_MobileMamba_* of the original repository).
_B = MobileMambaArch((200, 376, 448), (2, 3, 2), drop_path=0.03)
ARCHS: dict[str, tuple[int, MobileMambaArch]] = {
    "mobilemamba_t2": (192, MobileMambaArch((144, 272, 368), (1, 2, 2))),
    "mobilemamba_t4": (192, MobileMambaArch((176, 368, 448), (1, 2, 2))),
    "mobilemamba_s6": (224, MobileMambaArch((192, 384, 448), (1, 2, 2))),
    "mobilemamba_b1": (256, _B),
    "mobilemamba_b2": (384, _B),
    "mobilemamba_b4": (512, _B),
}


def _build(name: str, scan: str = "op", num_classes: int = 1000, drop_path: float | None = None,
           resolution: int | None = None, **kwargs) -> MobileMamba:
    # ``resolution`` only changes the recorded config (create_model does that): the network
    # itself takes any input size.
    arch = ARCHS[name][1]
    return MobileMamba(
        arch.embed_dim, arch.depth, arch.global_ratio, arch.local_ratio, arch.kernels, arch.ssm_ratio,
        arch.drop_path if drop_path is None else drop_path, num_classes=num_classes, scan=scan, **kwargs,
    )


# Formats an end-to-end test exports and verifies (tests/export/test_mobilemamba_e2e.py); the
# other variants' figures are in benchmarks/RESULTS.md, from benchmarks/mobilemamba.py.
VERIFIED_FORMATS = {"mobilemamba_t2": ("pte", "onnx")}


def _config(name: str) -> ModelConfig:
    resolution, arch = ARCHS[name]
    return ModelConfig(
        formats=VERIFIED_FORMATS.get(name, ()),
        name=name,
        family="mobilemamba",
        resolution=resolution,
        # Total downsampling is 64, but each stride-2 step rounds up, so any multiple of 32 is a
        # valid input (S6 is published at 224 = 3.5 x 64, giving 4x4 tokens at stage 3).
        stride=32,
        min_resolution=64,
        paper=PAPER,
        extra={"embed_dim": list(arch.embed_dim), "depth": list(arch.depth)},
    )


@register_model(_config("mobilemamba_t2"))
def mobilemamba_t2(**kwargs) -> MobileMamba:
    return _build("mobilemamba_t2", **kwargs)


@register_model(_config("mobilemamba_t4"))
def mobilemamba_t4(**kwargs) -> MobileMamba:
    return _build("mobilemamba_t4", **kwargs)


@register_model(_config("mobilemamba_s6"))
def mobilemamba_s6(**kwargs) -> MobileMamba:
    return _build("mobilemamba_s6", **kwargs)


@register_model(_config("mobilemamba_b1"))
def mobilemamba_b1(**kwargs) -> MobileMamba:
    return _build("mobilemamba_b1", **kwargs)


@register_model(_config("mobilemamba_b2"))
def mobilemamba_b2(**kwargs) -> MobileMamba:
    return _build("mobilemamba_b2", **kwargs)


@register_model(_config("mobilemamba_b4"))
def mobilemamba_b4(**kwargs) -> MobileMamba:
    return _build("mobilemamba_b4", **kwargs)
