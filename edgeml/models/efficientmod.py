"""EfficientMod (Ma et al., "Efficient Modulation for Vision Networks", ICLR 2024, arXiv 2403.19963).

Follows ma-xu/EfficientMod ``models/EfficientMod.py`` (read, not copied): a 4-stage network with a
7x7/s4 conv stem and 3x3/s2 conv downsampling (each followed by LayerNorm), stages of
efficient-modulation blocks

    x + gamma * fc2( act_r(fc1(LN(x))) * tile_r( g(GELU(DW7x7(f(LN(x))))) ) )

whose MLP ratio r alternates 1, R, 1, R, ... (``act_r`` is GELU when r > 1 and the identity when
r = 1; ``tile_r`` repeats the C context channels r times, in tile order, to match fc1's r*C
outputs), followed in stages 3 and 4 by plain pre-LN ViT blocks (8 heads of width max(C//8, 32),
no qkv bias, no layer scale), then LayerNorm, global average pool and a linear classifier.

Divergence, on purpose: the original is channels-last, with Linear layers around the depthwise
conv, which costs a permute pair per block on a phone (the paper's appendix makes the same point
for CoreML). Here the network is channels-first end to end: the Linears of the modulation blocks
are 1x1 convolutions, LayerNorm is taken over the channel axis (``LayerNorm2d``), layer scales are
stored (C, 1, 1), and the context tiling is a channel ``cat``. The modulation blocks therefore
export with no permute or transpose at all; only the attention blocks flatten to tokens (and keep
Linear layers). The official channels-last keys load unchanged: ``adapt_official_state_dict``
reshapes (out, in) Linear weights to (out, in, 1, 1) and (C,) layer scales to (C, 1, 1), and the
model's own state_dict loads back as well.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgeml.errors import InputShapeError
from edgeml.models._registry import ModelConfig, register_model
from edgeml.models.layers.attention import split_heads_attention
from edgeml.models.layers.norm import LayerNorm2d


@dataclass(frozen=True)
class EfficientModSpec:
    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]  # modulation blocks per stage
    attention_depths: tuple[int, int, int, int]  # attention blocks appended per stage
    expand_ratio: int  # R of the alternating 1, R, 1, R, ... MLP ratios
    att_ratios: tuple[float, float, float, float] = (4, 4, 4, 4)
    context_size: int = 7


# The published configurations (the repository's efficientMod_* builders).
SPECS = {
    "efficientmod_xxs": EfficientModSpec((32, 64, 128, 256), (2, 2, 6, 2), (0, 0, 1, 2), 6),
    "efficientmod_xs": EfficientModSpec((32, 64, 144, 288), (3, 3, 4, 2), (0, 0, 3, 3), 4),
    "efficientmod_s": EfficientModSpec((32, 64, 144, 312), (4, 4, 8, 4), (0, 0, 4, 4), 6, (4, 4, 4, 5)),
    "efficientmod_s_conv": EfficientModSpec((40, 80, 160, 344), (4, 4, 12, 8), (0, 0, 0, 0), 6),
}


def tile_channels(x: torch.Tensor, times: int) -> torch.Tensor:
    """``x.repeat(1, times, 1, 1)`` as a channel concat: tile order (c0..cC, c0..cC, ...), which is
    what the original's channels-last ``repeat(1, 1, 1, r)`` gives, and an op XNNPACK takes."""
    return x if times == 1 else torch.cat([x] * times, dim=1)


class ContextLayer(nn.Module):
    """f (1x1) -> depthwise k x k conv with bias -> GELU -> g (1x1): the modulation context."""

    def __init__(self, dim: int, context_size: int) -> None:
        super().__init__()
        self.f = nn.Conv2d(dim, dim, 1)
        self.context_list = nn.ModuleList(
            [nn.Conv2d(dim, dim, context_size, padding=context_size // 2, groups=dim)]
        )
        self.act = nn.GELU()
        self.g = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.f(x)
        ctx = self.act(self.context_list[0](x))
        for conv in self.context_list[1:]:
            ctx = ctx + self.act(conv(x))
        return self.g(ctx)


class ModulationMlp(nn.Module):
    def __init__(self, dim: int, ratio: int, context_size: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.fc1 = nn.Conv2d(dim, dim * ratio, 1)
        self.act = nn.GELU() if ratio > 1 else nn.Identity()
        self.context_layer = ContextLayer(dim, context_size)
        self.fc2 = nn.Conv2d(dim * ratio, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context_layer(x)
        if isinstance(self.fc1, nn.ModuleList):  # the XNNPACK export form
            return self.fc2(torch.cat([self.act(fc(x)) * ctx for fc in self.fc1], dim=1))
        return self.fc2(self.act(self.fc1(x)) * tile_channels(ctx, self.ratio))

    def use_export_form(self, backend: str | None = None) -> None:
        """For XNNPACK: the context tiling without a concat of one tensor with itself.

        XNNPACK's partitioner counts a concat's *distinct* inputs and refuses a concat of fewer
        than two, so ``tile_r(ctx)`` stays on a portable kernel and cuts the delegated graph at
        every block with ratio ``r > 1``. The product is elementwise, so it splits along the ``r``
        channel chunks of ``fc1``'s output: ``act(fc1(x)) * tile_r(ctx) = cat_k(act(fc1_k(x)) *
        ctx)``, with ``fc1_k`` the 1x1 conv of output channels ``k*C .. (k+1)*C - 1``. The concat
        then has ``r`` distinct inputs and the MAC count is exactly the original's (folding the
        tile into the context's last conv instead would add ``(r - 1) * C^2`` MACs per pixel, +16%
        for efficientmod_xxs). ONNX Runtime takes the repeated concat as it is: nothing changes."""
        if backend != "xnnpack" or self.ratio == 1 or isinstance(self.fc1, nn.ModuleList):
            return
        fc1, dim = self.fc1, self.fc1.out_channels // self.ratio
        chunks = nn.ModuleList()
        for k in range(self.ratio):
            conv = nn.Conv2d(fc1.in_channels, dim, 1, bias=fc1.bias is not None).to(fc1.weight)
            with torch.no_grad():
                conv.weight.copy_(fc1.weight[k * dim:(k + 1) * dim])
                if fc1.bias is not None:
                    conv.bias.copy_(fc1.bias[k * dim:(k + 1) * dim])
            chunks.append(conv)
        self.fc1 = chunks


class EfficientModBlock(nn.Module):
    """The efficient-modulation block: ``x + gamma * mlp(LN(x))``, channels-first throughout."""

    def __init__(self, dim: int, ratio: int, context_size: int, layer_scale_init: float = 1e-4) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.mlp = ModulationMlp(dim, ratio, context_size)
        self.gamma_1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma_1 * self.mlp(self.norm(x))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, max(dim // num_heads, 32)
        inner = num_heads * self.head_dim  # may exceed dim (e.g. 8 x 32 = 256 for dim 128)
        self.qkv = nn.Linear(dim, inner * 3, bias=False)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(split_heads_attention(self.qkv(x), self.num_heads, self.head_dim))


class AttMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class AttentionBlock(nn.Module):
    """Pre-LN ViT block over the H*W tokens of an NCHW map (global attention)."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = AttMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        tokens = tokens + self.attn(self.norm1(tokens))
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape_as(x)


class ConvDownsample(nn.Module):
    """Conv (stem: 7x7/s4, between stages: 3x3/s2) followed by channel LayerNorm."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2)
        self.norm = LayerNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


class EfficientModStage(nn.Module):
    def __init__(
        self, dim: int, out_dim: int | None, depth: int, attention_depth: int, spec: EfficientModSpec,
        att_ratio: float,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            EfficientModBlock(dim, spec.expand_ratio if i % 2 else 1, spec.context_size) for i in range(depth)
        ]
        blocks += [AttentionBlock(dim, att_ratio) for _ in range(attention_depth)]
        self.blocks = nn.ModuleList(blocks)
        self.downsample = ConvDownsample(dim, out_dim, 3, 2) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class EfficientMod(nn.Module):
    def __init__(self, spec: EfficientModSpec, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        dims: Sequence[int] = spec.dims
        self.patch_embed = ConvDownsample(in_chans, dims[0], 7, 4)
        self.layers = nn.ModuleList(
            EfficientModStage(
                dims[i], dims[i + 1] if i + 1 < len(dims) else None, spec.depths[i], spec.attention_depths[i],
                spec, spec.att_ratios[i],
            )
            for i in range(len(dims))
        )
        self.norm = LayerNorm2d(dims[-1])
        self.num_features = dims[-1]
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H/32, W/32) features after the final LayerNorm."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean with keepdim over H, W is the global-average-pool form backends take directly.
        return self.head(self.forward_features(x).mean((2, 3), keepdim=True).flatten(1))

    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reshape the channels-last originals' tensors to this channels-first layout.

        Only a difference in trailing singleton axes is bridged ((out, in) -> (out, in, 1, 1),
        (C,) -> (C, 1, 1)); any other mismatch is left for the strict load to report.
        """
        own = self.state_dict()
        out = {}
        for key, value in state.items():
            target = own.get(key)
            if target is not None and value.shape != target.shape and _same_but_trailing_ones(value, target):
                value = value.reshape(target.shape)
            out[key] = value
        return out


def _same_but_trailing_ones(a: torch.Tensor, b: torch.Tensor) -> bool:
    def strip(shape: torch.Size) -> tuple[int, ...]:
        dims = list(shape)
        while dims and dims[-1] == 1:
            dims.pop()
        return tuple(dims)

    return strip(a.shape) == strip(b.shape)


def _init_weights(m: nn.Module) -> None:
    # The original's init: truncated normal (std 0.02) for the Linears (here also the 1x1 convs
    # that replace them), zero biases, unit LayerNorms.
    if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _build(name: str, resolution: int, num_classes: int) -> EfficientMod:
    if resolution % 32 or resolution < 32:
        raise InputShapeError(f"{name} needs a resolution that is a multiple of 32, got {resolution}")
    return EfficientMod(SPECS[name], num_classes=num_classes)


_PAPER = "Efficient Modulation for Vision Networks, ICLR 2024 (arXiv 2403.19963)"


def _config(name: str) -> ModelConfig:
    return ModelConfig(name=name, family="efficientmod", resolution=224, paper=_PAPER,
                       formats=VERIFIED_FORMATS.get(name, ()))


# Formats an end-to-end test exports, verifies and runs (tests/export/test_efficientmod_fastvit_e2e.py,
# fp32); the other variants are not exported by a test.
VERIFIED_FORMATS = {"efficientmod_xxs": ("pte", "onnx")}


@register_model(_config("efficientmod_xxs"))
def efficientmod_xxs(resolution: int = 224, num_classes: int = 1000) -> EfficientMod:
    return _build("efficientmod_xxs", resolution, num_classes)


@register_model(_config("efficientmod_xs"))
def efficientmod_xs(resolution: int = 224, num_classes: int = 1000) -> EfficientMod:
    return _build("efficientmod_xs", resolution, num_classes)


@register_model(_config("efficientmod_s"))
def efficientmod_s(resolution: int = 224, num_classes: int = 1000) -> EfficientMod:
    return _build("efficientmod_s", resolution, num_classes)


@register_model(_config("efficientmod_s_conv"))
def efficientmod_s_conv(resolution: int = 224, num_classes: int = 1000) -> EfficientMod:
    return _build("efficientmod_s_conv", resolution, num_classes)
