"""RAVLT (Fan et al., "Breaking the Low-Rank Dilemma of Linear Attention", CVPR 2025).

Follows qhfan/RALA ``classfication/RALA.py`` (read, not copied): a conv stem (four 3x3 convs with
BatchNorm, GELU between them, stride 4 in all), four stages of blocks

    x = x + pos(x)                                  (3x3 depthwise conv, CPE)
    x = x + gamma_1 * attn(LN(x))
    x = x + gamma_2 * ffn(LN(x))                     (1x1 -> GELU -> 3x3 dw (+residual) -> 1x1)

with Rank-Augmented Linear Attention (RALA) in stages 1-2 and softmax attention in stages 3-4,
3x3/s2 conv + BatchNorm patch merging between stages, and a head of a 1x1 projection to 1024
channels, BatchNorm, swish, global average pooling and a 1x1 conv classifier.

Both attentions split one 1x1 conv into q, k, v and an output gate o, add a 5x5 depthwise LePE of
v, multiply by o and project; both rotate q and k with a 2-D RoPE built from the feature map's
height and width (half of each head's features rotate with the row, half with the column), so
the network takes any input size that is a multiple of 32. RALA:

    q, k = ELU(q) + 1, ELU(k) + 1
    alpha_j = softmax_j(d^-1/2 mean_i(q_i) . k_j);  k_j <- alpha_j k_j        (rank augmentation)
    out_i = rope(q_i) sum_j rope(k_j)^T v_j / (q_i . sum_j k_j + 1e-6)

The last line is ``edgeml::linear_attention`` with its rotary tables (numerator-only rotation);
the rescaling stays here. The original scales k by ``alpha_j N`` and then both sums by 1/N; the
N cancels exactly, so the op gets ``alpha_j k_j`` and the same eps. ``attention=("linear",
"linear", "softmax", "softmax")`` is the published layout; ``"softmax"`` in stages 1-2 gives the
quadratic baseline of ``benchmarks/ravlt_resolution.py``.

Official keys load unchanged. ``layers.<i>.RoPE.angle`` is a constant of the configuration: here a
non-persistent buffer, and ``adapt_official_state_dict`` drops the checkpoint's copy (after
checking its shape) so a strict load of an official checkpoint works. No trained weights are
downloadable here: the zoo initializes randomly (``edgeml.models._init``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgeml.errors import InputShapeError
from edgeml.kernels import linear_attention
from edgeml.kernels.linear_attention import apply_rope, pair_rotation
from edgeml.models._registry import ModelConfig, register_model
from edgeml.models.layers.norm import LayerNorm2d

ATTENTION_KINDS = ("linear", "softmax")


@dataclass(frozen=True)
class RavltSpec:
    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    heads: tuple[int, int, int, int]
    layer_scales: tuple[float, float, float, float]  # initial value of gamma_1 / gamma_2
    mlp_ratio: float = 3.5
    projection: int = 1024
    attention: tuple[str, str, str, str] = ("linear", "linear", "softmax", "softmax")


# The published configurations (the repository's RAVLT_T/S/B/L builders).
SPECS = {
    "ravlt_t": RavltSpec((64, 128, 256, 512), (2, 2, 6, 2), (1, 2, 4, 8), (1, 1, 1, 1)),
    "ravlt_s": RavltSpec((64, 128, 320, 512), (3, 5, 9, 3), (1, 2, 5, 8), (1, 1, 1, 1)),
    "ravlt_b": RavltSpec((96, 192, 384, 512), (4, 6, 12, 6), (1, 2, 6, 8), (1, 1, 1e-6, 1e-6)),
    "ravlt_l": RavltSpec((96, 192, 448, 640), (4, 7, 19, 8), (1, 2, 7, 10), (1e-6,) * 4),
}


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """``ELU(x) + 1`` as ``relu(x) + exp(min(x, 0))``: the same function (exact for x > 0, and
    ``exp(x)`` rather than ``(exp(x) - 1) + 1`` below), in ops XNNPACK takes (ExecuTorch 1.5 keeps
    its ELU node disabled, so ``aten.elu`` would run as a portable kernel between partitions)."""
    return F.relu(x) + torch.exp(torch.clamp(x, max=0.0))


class RoPE(nn.Module):
    """2-D rotary tables for a (h, w) map: ``(cos, sin)``, each (h*w, head_dim), tokens row-major.

    Features [0, d/2) rotate with the row index, [d/2, d) with the column index; within each half
    the pairs (2i, 2i+1) share the angle ``10000^-(i / (d/4 - 1))``."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE needs a head width divisible by 4, got {head_dim}")
        n = head_dim // 4
        angle = (1.0 / (10000 ** torch.linspace(0, 1, n))).repeat_interleave(2)
        # Constants of the configuration, not weights: not saved (see adapt_official_state_dict).
        self.register_buffer("angle", angle, persistent=False)
        # (2, d): row index -> the first d/2 angles, column index -> the last d/2.
        zeros = torch.zeros_like(angle)
        self.register_buffer("axis_angles", torch.stack([torch.cat([angle, zeros]), torch.cat([zeros, angle])]),
                             persistent=False)
        # The pair rotation as a linear's weight (softmax stages): a constant that int8
        # quantization folds like any weight (built in the graph, it would stay a computed tensor).
        self.register_buffer("rotation", pair_rotation(head_dim).t().contiguous(), persistent=False)

    def forward(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        # theta = [row, col] @ axis_angles: integer positions and one product, no elementwise
        # float op (PT2E int8 would quantize a mul, add or cat here, i.e. the angles themselves).
        # Each entry is one float product, position * angle, as in the original.
        # Row and column indices broadcast over the map rather than one token index split by
        # floor-division and remainder: under dynamic shapes the ONNX exporter cannot translate a
        # remainder by a symbolic size.
        rows = torch.arange(h, device=self.angle.device)[:, None].expand(h, w)
        cols = torch.arange(w, device=self.angle.device)[None, :].expand(h, w)
        position = torch.stack([rows, cols], dim=-1).reshape(h * w, 2)
        theta = torch.mm(position.to(self.angle.dtype), self.axis_angles)  # (h*w, d)
        return theta.cos(), theta.sin()


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an NCHW map; ``.norm`` keeps the original's key names."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class RavltAttention(nn.Module):
    """The gated attention of both kinds: qkvo 1x1 conv, LePE 5x5 dw on v, gate, 1x1 projection."""

    def __init__(self, dim: int, num_heads: int, kind: str) -> None:
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind must be one of {ATTENTION_KINDS}, got {kind!r}")
        self.dim, self.num_heads, self.kind = dim, num_heads, kind
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkvo = nn.Conv2d(dim, dim * 4, 1)
        self.lepe = nn.Conv2d(dim, dim, 5, 1, 2, groups=dim)
        self.proj = nn.Conv2d(dim, dim, 1)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(b, C, H, W) -> (b*n, d, H*W): channel-first heads."""
        return x.flatten(2).unflatten(1, (self.num_heads, self.head_dim)).flatten(0, 1)

    def use_export_form(self) -> None:
        """q, k, v and the gate as four 1x1 convs (``qkvo.0`` .. ``qkvo.3``) of the one conv's output
        channel blocks: the same products, without the four channel slices of its output. A slice
        is a copy in a program, XNNPACK does not take one of a dynamic-shape tensor, and in int8 it
        leaves a slice read by two layers (v: LePE and the attention) on a portable kernel."""
        if isinstance(self.qkvo, nn.ModuleList):
            return
        fused, c = self.qkvo, self.dim
        parts = nn.ModuleList(nn.Conv2d(c, c, 1).to(fused.weight) for _ in range(4))
        with torch.no_grad():
            for i, conv in enumerate(parts):
                conv.weight.copy_(fused.weight[i * c:(i + 1) * c])
                conv.bias.copy_(fused.bias[i * c:(i + 1) * c])
        self.qkvo = parts

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``rope``: the stage's (cos, sin) tables and its pair-rotation weight (:class:`RoPE`)."""
        c = self.dim
        if isinstance(self.qkvo, nn.ModuleList):  # the export form
            q, k, v, gate = (conv(x) for conv in self.qkvo)
        else:
            qkvo = self.qkvo(x)
            q, k, v, gate = (qkvo.narrow(1, i * c, c) for i in range(4))
        lepe = self.lepe(v)
        if self.kind == "linear":
            out = self._linear(q, k, v, *rope[:2])
        else:
            out = self._softmax(q, k, v, *rope)
        # (b*n, t, d) -> (b, C, H, W)
        out = out.transpose(1, 2).unflatten(0, (-1, self.num_heads)).flatten(1, 2).unflatten(-1, x.shape[2:])
        return self.proj((out + lepe) * gate)

    def _linear(self, q, k, v, cos, sin):
        # 3-D batched products over (b*n) throughout: 4-D matmuls export with expand copies
        # that XNNPACK does not take.
        q, k = elu_plus_one(q), elu_plus_one(k)
        # The query mean as a global average pool (b*n, 1, d), and the key weights alpha as a
        # softmax over tokens of its product with every key (b*n, 1, t).
        # One reshape (b, C, 1, 1) -> (b*n, 1, d): with a transpose, or a squeeze then an
        # unsqueeze, XNNPACK's int8 program failed to load (invalid transpose / squeeze node).
        q_mean = q.mean((2, 3), keepdim=True).reshape(-1, 1, self.head_dim)
        k_heads = self._heads(k)  # (b*n, d, t)
        alpha = torch.softmax(torch.bmm(q_mean * self.scale, k_heads), dim=-1)
        k_heads = k_heads * alpha
        n = self.num_heads
        q_t, k_t, v_t = (t.transpose(1, 2).unflatten(0, (-1, n)) for t in (self._heads(q), k_heads, self._heads(v)))
        return linear_attention(q_t, k_t, v_t, rope_cos=cos, rope_sin=sin).flatten(0, 1)

    def _softmax(self, q, k, v, cos, sin, rotation):
        q, k, v = (self._heads(t).transpose(1, 2) for t in (q, k, v))  # (b*n, t, d)
        q, k = apply_rope(q, cos, sin, rotation), apply_rope(k, cos, sin, rotation)
        attn = torch.softmax(torch.bmm(q * self.scale, k.transpose(1, 2)), dim=-1)
        return torch.bmm(attn, v)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(x))
        return self.fc2(x + self.dwconv(x))


class RavltBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden: int, kind: str, layer_scale: float) -> None:
        super().__init__()
        self.pos = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = RavltAttention(dim, num_heads, kind)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = FeedForward(dim, hidden)
        self.gamma_1 = nn.Parameter(torch.full((1, dim, 1, 1), float(layer_scale)))
        self.gamma_2 = nn.Parameter(torch.full((1, dim, 1, 1), float(layer_scale)))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.pos(x)
        x = x + self.gamma_1 * self.attn(self.norm1(x), rope)
        return x + self.gamma_2 * self.ffn(self.norm2(x))


class PatchMerging(nn.Module):
    """3x3/s2 conv + BatchNorm between stages."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


class RavltStage(nn.Module):
    def __init__(self, dim: int, out_dim: int | None, depth: int, num_heads: int, hidden: int, kind: str,
                 layer_scale: float) -> None:
        super().__init__()
        self.RoPE = RoPE(dim // num_heads)  # the original's attribute name (its keys)
        self.blocks = nn.ModuleList(RavltBlock(dim, num_heads, hidden, kind, layer_scale) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rope = (*self.RoPE(x.shape[2], x.shape[3]), self.RoPE.rotation)
        for block in self.blocks:
            x = block(x, rope)
        return self.downsample(x) if self.downsample is not None else x


def _stem(in_chans: int, dim: int) -> nn.Sequential:
    half = dim // 2
    return nn.Sequential(
        nn.Conv2d(in_chans, half, 3, 2, 1), nn.BatchNorm2d(half), nn.GELU(),
        nn.Conv2d(half, half, 3, 1, 1), nn.BatchNorm2d(half), nn.GELU(),
        nn.Conv2d(half, half, 3, 1, 1), nn.BatchNorm2d(half), nn.GELU(),
        nn.Conv2d(half, dim, 3, 2, 1), nn.BatchNorm2d(dim),
    )


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = _stem(in_chans, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Ravlt(nn.Module):
    def __init__(self, spec: RavltSpec, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        dims: Sequence[int] = spec.dims
        self.spec = spec
        self.patch_embed = PatchEmbed(in_chans, dims[0])
        self.layers = nn.ModuleList(
            RavltStage(dims[i], dims[i + 1] if i + 1 < len(dims) else None, spec.depths[i], spec.heads[i],
                       int(spec.mlp_ratio * dims[i]), spec.attention[i], spec.layer_scales[i])
            for i in range(len(dims))
        )
        self.proj = nn.Conv2d(dims[-1], spec.projection, 1)
        self.norm = nn.BatchNorm2d(spec.projection)
        self.num_features = spec.projection
        self.head = nn.Conv2d(spec.projection, num_classes, 1) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1024, 1, 1): projected, normalized, swished and pooled features."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return F.silu(self.norm(self.proj(x))).mean((2, 3), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)).flatten(1)

    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Drop the checkpoint's ``RoPE.angle`` constants (rebuilt from the configuration here);
        one of another shape is kept, for the strict load to report."""
        own = {name: m.angle for name, m in self.named_modules() if isinstance(m, RoPE)}
        out = {}
        for key, value in state.items():
            module, _, leaf = key.rpartition(".")
            if leaf == "angle" and module in own and value.shape == own[module].shape:
                continue
            out[key] = value
        return out


def _init_weights(m: nn.Module) -> None:
    # The original's init: truncated normal (std 0.02) convs with zero biases.
    if isinstance(m, nn.Conv2d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _build(name: str, resolution: int, num_classes: int, attention: Sequence[str] | None) -> Ravlt:
    if resolution % 32 or resolution < 32:
        raise InputShapeError(f"{name} needs a resolution that is a multiple of 32, got {resolution}")
    spec = SPECS[name]
    if attention is not None:
        attention = tuple(attention)
        if len(attention) != 4 or any(a not in ATTENTION_KINDS for a in attention):
            raise ValueError(f"attention must name 4 stages' kinds out of {ATTENTION_KINDS}, got {attention}")
        spec = RavltSpec(**{**spec.__dict__, "attention": attention})
    return Ravlt(spec, num_classes=num_classes)


_PAPER = "Breaking the Low-Rank Dilemma of Linear Attention, CVPR 2025 (arXiv 2411.07635)"

# Formats an end-to-end test exports, verifies and runs (tests/export/test_ravlt_e2e.py); every
# variant's exports are measured by benchmarks/zoo_status.py (README's zoo table).
VERIFIED_FORMATS = {"ravlt_t": ("pte", "onnx")}


def _config(name: str) -> ModelConfig:
    return ModelConfig(name=name, family="ravlt", resolution=224, paper=_PAPER,
                       formats=VERIFIED_FORMATS.get(name, ()))


@register_model(_config("ravlt_t"))
def ravlt_t(resolution: int = 224, num_classes: int = 1000, attention: Sequence[str] | None = None) -> Ravlt:
    return _build("ravlt_t", resolution, num_classes, attention)


@register_model(_config("ravlt_s"))
def ravlt_s(resolution: int = 224, num_classes: int = 1000, attention: Sequence[str] | None = None) -> Ravlt:
    return _build("ravlt_s", resolution, num_classes, attention)


@register_model(_config("ravlt_b"))
def ravlt_b(resolution: int = 224, num_classes: int = 1000, attention: Sequence[str] | None = None) -> Ravlt:
    return _build("ravlt_b", resolution, num_classes, attention)


@register_model(_config("ravlt_l"))
def ravlt_l(resolution: int = 224, num_classes: int = 1000, attention: Sequence[str] | None = None) -> Ravlt:
    return _build("ravlt_l", resolution, num_classes, attention)
