"""SigLIP ViT trunks and the BlueLM-V tile encoder (trunk + token downsampler + MLP projector).

* SigLIP trunks (Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023) with
  timm's state_dict keys of ``vit_so400m_patch14_siglip_384`` / ``vit_base_patch16_siglip_384``
  (``patch_embed.proj``, ``pos_embed`` without a class token, ``blocks.{i}.{norm1,attn.qkv,
  attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``): pre-norm blocks, LayerNorm eps 1e-6, exact GELU,
  qkv bias. The output is the patch tokens after the final norm, (B, tokens, width). timm's
  attention-pool head (``attn_pool.*``) and a classifier (``head.*``) are accepted in checkpoints
  and dropped: the tile encoder never pools.
* BlueLM-V-3B (arXiv 2411.10640): the SigLIP-400M trunk encodes each 384x384 tile into 27x27 =
  729 tokens; a token downsampler concatenates each 2x2 group of neighbouring tokens and projects
  them (VILA-style), 729 -> 196 tokens, after zero-padding the 27x27 grid to 28x28 at the bottom and
  right (the paper does not say how it pads); a 2-layer MLP projector (GELU) maps the tokens to the
  language model's width. BlueLM's weights are not public, so the downsampler and projector are
  randomly initialized; ``trunk_checkpoint=`` loads SigLIP weights (timm keys) into the trunk.

Written from the papers and from reading timm's ``vision_transformer.py`` for the key names; no
code is taken from timm. Everything is static-shape Python (no data-dependent branches), so the
models export with ``torch.export`` for a fixed or a dynamic batch dimension.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeml.errors import InputShapeError
from edgeml.models._registry import SIGLIP_MEAN, SIGLIP_STD, ModelConfig, register_model
from edgeml.models.layers.attention import split_heads_attention

_PAPER_SIGLIP = "SigLIP, ICCV 2023 (arXiv 2303.15343); timm vit_*_siglip_384 keys"
_PAPER_BLUELM = "BlueLM-V-3B, arXiv 2411.10640"
# Keys in timm SigLIP checkpoints that belong to heads the trunk does not have.
_IGNORED_PREFIXES = ("attn_pool.", "head.", "fc_norm.")

TILE = 384
# BlueLM-3B's hidden size is not stated in the paper; 2048 is a placeholder, set llm_width.
DEFAULT_LLM_WIDTH = 2048


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (B, grid * grid, width), row-major."""

    def __init__(self, patch_size: int, width: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Plain matmul-softmax-matmul rather than F.scaled_dot_product_attention: SDPA's
        # decomposition for export adds any/eq/where/full_like guards for fully masked rows,
        # which XNNPACK does not take. The shared helper slices q/k/v and uses 3-D bmm: the
        # unbind + 4-D matmul written here before left 3 squeeze_copy and 4 expand_copy per block
        # on portable kernels (189 in so400m), each splitting the XNNPACK graph.
        return self.proj(split_heads_attention(self.qkv(x), self.num_heads, self.head_dim))


class Mlp(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, width: int, num_heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SigLIPTrunk(nn.Module):
    """SigLIP image tower without its pooling head: (B, 3, S, S) -> (B, grid**2, width)."""

    def __init__(self, *, img_size: int = TILE, patch_size: int = 16, width: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_hidden: int = 3072) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid = img_size // patch_size  # the conv drops the remainder (384 / 14 -> 27)
        self.width = width
        self.patch_embed = PatchEmbed(patch_size, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, width))
        self.blocks = nn.Sequential(*[Block(width, num_heads, mlp_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=1e-6)
        _init_vit_weights(self)

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def forward_patch_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels -> position-embedded tokens. BlueLM runs this conv on the CPU (its pipeline)."""
        if tuple(x.shape[-3:]) != (3, self.img_size, self.img_size):
            raise InputShapeError(
                f"SigLIP trunk takes (B, 3, {self.img_size}, {self.img_size}) tiles, got {tuple(x.shape)}; "
                "cut larger images into tiles with edgeml.dynres.tile_image"
            )
        return self.patch_embed(x) + self.pos_embed

    def forward_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> transformer blocks -> final norm. BlueLM runs this part on the NPU."""
        return self.norm(self.blocks(tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_blocks(self.forward_patch_embed(x))

    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return drop_head_keys(state)


def drop_head_keys(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Drop timm's attention-pool / classifier head keys (under ``prefix``) that the trunk lacks."""
    heads = tuple(prefix + p for p in _IGNORED_PREFIXES)
    return {k: v for k, v in state.items() if not k.startswith(heads)}


class TokenDownsampler(nn.Module):
    """Concatenate each 2x2 group of tokens and project: (B, g*g, C) -> (B, ceil(g/2)**2, out_dim).

    An odd grid is zero-padded at the bottom and right first (27 -> 28, so 729 -> 196 tokens).
    The four tokens of a group are concatenated in row-major order (top-left, top-right,
    bottom-left, bottom-right); output tokens are row-major over the 14x14 grid.
    """

    def __init__(self, grid: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.pad = grid % 2
        self.out_grid = (grid + self.pad) // 2
        self.proj = nn.Linear(4 * in_dim, out_dim)

    @property
    def num_tokens(self) -> int:
        return self.out_grid * self.out_grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        g, h = self.grid, self.out_grid
        x = x.reshape(b, g, g, c)
        if self.pad:  # static: decided by the grid at construction, never by data
            x = F.pad(x, (0, 0, 0, self.pad, 0, self.pad))
        x = x.reshape(b, h, 2, h, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * h, 4 * c)
        return self.proj(x)


class MLPProjector(Mlp):
    """The 2-layer MLP (Linear, GELU, Linear) from vision tokens to the LLM's width."""

    def __init__(self, in_dim: int, llm_width: int) -> None:
        super().__init__(in_dim, llm_width, llm_width)


class BlueLMTileEncoder(nn.Module):
    """Tiles -> LLM-ready tokens: SigLIP trunk, 2x2 token downsampler, MLP projector.

    (B, 3, 384, 384) -> (B, tokens_per_tile, llm_width); 196 tokens per tile with SigLIP-400M.
    """

    def __init__(self, trunk: SigLIPTrunk, *, downsample_dim: int | None = None,
                 llm_width: int = DEFAULT_LLM_WIDTH) -> None:
        super().__init__()
        self.trunk = trunk
        self.downsampler = TokenDownsampler(trunk.grid, trunk.width, downsample_dim or trunk.width)
        self.projector = MLPProjector(downsample_dim or trunk.width, llm_width)
        _init_vit_weights(self.downsampler)
        _init_vit_weights(self.projector)

    @property
    def tokens_per_tile(self) -> int:
        return self.downsampler.num_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.downsampler(self.trunk(x)))

    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return drop_head_keys(state, prefix="trunk.")

    def load_trunk_checkpoint(self, checkpoint: str | Path | Mapping[str, Any]) -> None:
        """Load SigLIP weights with timm's keys into the trunk (strict, heads ignored)."""
        from edgeml.models._checkpoint import load_checkpoint

        load_checkpoint(self.trunk, checkpoint)


@torch.no_grad()
def _init_vit_weights(module: nn.Module) -> None:
    # timm-like init (truncated normal 0.02 for linears and positions, LayerNorm 1/0), so an
    # uncheckpointed model has sane activations for quantization and parity figures.
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            nn.init.trunc_normal_(m.weight, std=1.0 / math.sqrt(fan_in))
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if isinstance(module, SigLIPTrunk):
        nn.init.trunc_normal_(module.pos_embed, std=0.02)


# Architecture hyper-parameters (timm's vit_*_siglip_384: no class token, 'map' head dropped).
SIGLIP_VARIANTS: dict[str, dict[str, int]] = {
    # 3.7362 * 1152 -> 4304 MLP hidden; 384 // 14 = 27 -> 729 tokens
    "so400m": dict(patch_size=14, width=1152, depth=27, num_heads=16, mlp_hidden=4304),
    "b16": dict(patch_size=16, width=768, depth=12, num_heads=12, mlp_hidden=3072),
}


def _trunk_config(name: str, variant: str) -> ModelConfig:
    v = SIGLIP_VARIANTS[variant]
    grid = TILE // v["patch_size"]
    return ModelConfig(
        name=name, family="siglip", resolution=TILE, mean=SIGLIP_MEAN, std=SIGLIP_STD, num_classes=0,
        output="tokens",
        output_description=f"patch tokens after the final norm (B, {grid * grid}, {v['width']})",
        # The position embedding is fixed: the trunk takes exactly one tile size. Larger images
        # go through edgeml.dynres tiling instead of a dynamic resolution.
        stride=TILE, min_resolution=TILE, max_resolution=TILE, labels=None, paper=_PAPER_SIGLIP,
        extra={"patch_size": v["patch_size"], "grid": grid, "tokens": grid * grid, "width": v["width"],
               "depth": v["depth"], "tile": TILE},
    )


def _encoder_config(name: str, variant: str, llm_width: int = DEFAULT_LLM_WIDTH) -> ModelConfig:
    v = SIGLIP_VARIANTS[variant]
    grid = TILE // v["patch_size"]
    out_grid = (grid + grid % 2) // 2
    return ModelConfig(
        name=name, family="bluelm", resolution=TILE, mean=SIGLIP_MEAN, std=SIGLIP_STD, num_classes=0,
        output="tokens",
        output_description=f"LLM-ready tokens per tile (B, {out_grid * out_grid}, llm_width={llm_width})",
        stride=TILE, min_resolution=TILE, max_resolution=TILE, labels=None, paper=_PAPER_BLUELM,
        extra={
            "trunk": f"siglip_{variant}_384", "tile": TILE, "patch_size": v["patch_size"],
            "trunk_tokens": grid * grid, "tokens_per_tile": out_grid * out_grid, "llm_width": llm_width,
            # How host code tiles an image for this encoder (edgeml.dynres defaults, as BlueLM).
            "tiling": {"policy": "relaxed", "alpha": 0.1, "max_grid": 3, "thumbnail": True,
                       "order": "row-major tiles, then the thumbnail"},
            "tiles_per_batch": 4,
        },
    )


def _build_trunk(variant: str, depth: int | None = None) -> SigLIPTrunk:
    v = dict(SIGLIP_VARIANTS[variant])
    if depth is not None:  # reduced-depth builds for tests and quick runs
        v["depth"] = int(depth)
    return SigLIPTrunk(img_size=TILE, **v)


@register_model(_trunk_config("siglip_so400m_384", "so400m"))
def siglip_so400m_384(depth: int | None = None) -> SigLIPTrunk:
    return _build_trunk("so400m", depth)


@register_model(_trunk_config("siglip_b16_384", "b16"))
def siglip_b16_384(depth: int | None = None) -> SigLIPTrunk:
    return _build_trunk("b16", depth)


def _build_encoder(variant: str, *, llm_width: int, downsample_dim: int | None, depth: int | None,
                   trunk_checkpoint: str | Path | Mapping[str, Any] | None) -> BlueLMTileEncoder:
    model = BlueLMTileEncoder(_build_trunk(variant, depth), downsample_dim=downsample_dim,
                              llm_width=llm_width)
    if trunk_checkpoint is not None:
        model.load_trunk_checkpoint(trunk_checkpoint)
    return model


@register_model(_encoder_config("bluelm_tile_encoder_so400m", "so400m"))
def bluelm_tile_encoder_so400m(llm_width: int = DEFAULT_LLM_WIDTH, downsample_dim: int | None = None,
                               depth: int | None = None,
                               trunk_checkpoint: str | Path | Mapping[str, Any] | None = None,
                               ) -> BlueLMTileEncoder:
    return _build_encoder("so400m", llm_width=llm_width, downsample_dim=downsample_dim, depth=depth,
                          trunk_checkpoint=trunk_checkpoint)


@register_model(_encoder_config("bluelm_tile_encoder_b16", "b16"))
def bluelm_tile_encoder_b16(llm_width: int = DEFAULT_LLM_WIDTH, downsample_dim: int | None = None,
                            depth: int | None = None,
                            trunk_checkpoint: str | Path | Mapping[str, Any] | None = None,
                            ) -> BlueLMTileEncoder:
    return _build_encoder("b16", llm_width=llm_width, downsample_dim=downsample_dim, depth=depth,
                          trunk_checkpoint=trunk_checkpoint)
