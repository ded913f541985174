"""FastViTHD: the image encoder of FastVLM (Vasu et al., CVPR 2025, arXiv 2412.13303).

Follows ``fastvithd`` in apple/ml-fastvlm ``llava/model/multimodal_encoder/mobileclip/mci.py``
(read, not copied), a 5-stage FastViT (Vasu et al., ICCV 2023):

* stem: three MobileOne blocks (3x3 s2, depthwise 3x3 s2, 1x1), GELU after each, no 1x1 scale
  branch in the training form (``stem_scale_branch=False``);
* stages of 2/12/24/4/2 blocks at widths 96/192/384/768/1536: RepMixer blocks in stages 1-3,
  attention blocks (channel LayerNorm, 32-wide heads) in stages 4-5, each followed by a ConvFFN
  (depthwise 7x7 conv + BN, 1x1 to 4C, GELU, 1x1 back); a RepCPE (depthwise 7x7) before stages 4
  and 5;
* between stages a patch embedding (depthwise-by-input 7x7 s2 large-kernel conv to twice the
  channels, GELU, MobileOne 1x1, GELU), so the total stride is 64;
* ``conv_exp``: MobileOne 3x3 with groups=1536 to 3072 channels, SE, GELU.

The output is ``image_embeddings`` (B, 3072, H/64, W/64), what FastVLM feeds its projector; the
CLIP head (global pool + projection) is not built, since FastVLM does not use it. Input is RGB in
[0, 1] (FastVLM's processor uses mean 0, std 1). Any resolution that is a multiple of 64 works.

State_dict keys are the original's. The model is built in the reparameterized (inference) form
FastVLM ships.

Random init (no checkpoint): merging freshly initialized branches whose BatchNorms still hold
mean 0 / var 1 gives a network whose signal shrinks about 4x per stage until the RepCPE biases
swamp it, so its output is the same for every image to -60 dB. So the zoo's seeded init goes
through the training form, as a trained checkpoint would (``finish_random_init``): fresh branches
from the builder's seeded random stream, BatchNorm statistics estimated on the sample images at
256 x 256 (the network is fully convolutional, so one small resolution serves every size and the
weights do not depend on the ``resolution`` argument), then every block merged back into the
inference form. ``adapt_official_state_dict`` (called by the zoo loader) looks at the
checkpoint's keys block by block and switches each reparameterizable block to the form the
checkpoint holds: the unfused training form (MobileOne branches with BN, large-kernel conv with
its small kernel, RepMixer with norm and layer scale, RepCPE), the inference form, or the form
``edgeml.export.passes.reparameterize`` produces (also with the ConvFFN BN folded into its conv).
So official checkpoints of either form load strictly, and so does the model's own state_dict
after the pass.

Divergences from the original, none changing a key or the function: SE averages with ``mean``
(not ``avg_pool2d`` with the runtime size as kernel); attention reshapes with ``unflatten`` and
``reshape_as`` instead of Python ints read from the shape; attention is plain matmul/softmax.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgeml.errors import InputShapeError
from edgeml.models._registry import UNIT_MEAN, UNIT_STD, ModelConfig, register_model
from edgeml.models.layers.attention import split_heads_attention
from edgeml.models.layers.norm import LayerNorm2d
from edgeml.models.layers.reparam import (
    MobileOneBlock,
    ReparamLargeKernelConv,
    ReparamModule,
    RepCPE,
    RepMixer,
    conv_bn,
)

FORMS = ("inference", "training")
RANDOM_INIT_RESOLUTION = 256  # where a random init estimates its BatchNorm statistics


class ConvFFN(nn.Module):
    """Depthwise 7x7 conv + BN, then a 1x1 MLP (C -> hidden -> C) with GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv = conv_bn(dim, dim, 7, padding=3, groups=dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        for conv in (self.conv.conv, self.fc1, self.fc2):  # the original's init
            nn.init.normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


class MHSA(nn.Module):
    """Self-attention over the H*W positions of an NCHW map, 32-wide heads, no qkv bias."""

    def __init__(self, dim: int, head_dim: int = 32) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"dim {dim} is not a multiple of head_dim {head_dim}")
        self.head_dim, self.num_heads = head_dim, dim // head_dim
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        out = self.proj(split_heads_attention(self.qkv(tokens), self.num_heads, self.head_dim))
        return out.transpose(1, 2).reshape_as(x)


class RepMixerBlock(nn.Module):
    def __init__(
        self, dim: int, mlp_ratio: float, inference_mode: bool, layer_scale_init: float = 1e-5
    ) -> None:
        super().__init__()
        self.token_mixer = RepMixer(dim, 3, layer_scale_init, inference_mode=inference_mode)
        self.convffn = ConvFFN(dim, int(dim * mlp_ratio))
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.layer_scale * self.convffn(x)


class AttentionBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, layer_scale_init: float = 1e-5) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.token_mixer = MHSA(dim)
        self.convffn = ConvFFN(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))
        self.layer_scale_2 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1 * self.token_mixer(self.norm(x))
        return x + self.layer_scale_2 * self.convffn(x)


class PatchEmbed(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, inference_mode: bool, patch_size: int = 7) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            ReparamLargeKernelConv(
                in_chs, out_chs, patch_size, stride=2, groups=in_chs, small_kernel=3,
                inference_mode=inference_mode,
            ),
            MobileOneBlock(out_chs, out_chs, 1, inference_mode=inference_mode),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class FastViT(nn.Module):
    """FastViT/MCi encoder up to ``conv_exp`` (no classifier or CLIP head)."""

    def __init__(
        self,
        layers: Sequence[int],
        embed_dims: Sequence[int],
        token_mixers: Sequence[str],
        cpe_before: Sequence[bool],
        mlp_ratio: float = 4.0,
        cls_ratio: float = 2.0,
        stem_scale_branch: bool = False,
        inference_mode: bool = True,
    ) -> None:
        super().__init__()
        if not len(layers) == len(embed_dims) == len(token_mixers) == len(cpe_before):
            raise ValueError("layers, embed_dims, token_mixers and cpe_before must have one entry per stage")
        c0, im, ssb = embed_dims[0], inference_mode, stem_scale_branch
        self.patch_embed = nn.Sequential(
            MobileOneBlock(3, c0, 3, stride=2, padding=1, use_scale_branch=ssb, inference_mode=im),
            MobileOneBlock(c0, c0, 3, 2, 1, groups=c0, use_scale_branch=ssb, inference_mode=im),
            MobileOneBlock(c0, c0, 1, use_scale_branch=ssb, inference_mode=im),
        )
        network: list[nn.Module] = []
        for i, (depth, dim, mixer) in enumerate(zip(layers, embed_dims, token_mixers, strict=True)):
            if cpe_before[i]:
                network.append(RepCPE(dim, 7, inference_mode=im))
            if mixer == "repmixer":
                blocks = [RepMixerBlock(dim, mlp_ratio, im) for _ in range(depth)]
            elif mixer == "attention":
                blocks = [AttentionBlock(dim, mlp_ratio) for _ in range(depth)]
            else:
                raise ValueError(f"unknown token mixer {mixer!r}")
            network.append(nn.Sequential(*blocks))
            if i + 1 < len(layers):
                network.append(PatchEmbed(dim, embed_dims[i + 1], im))
        self.network = nn.ModuleList(network)
        self.conv_exp = MobileOneBlock(
            embed_dims[-1], int(embed_dims[-1] * cls_ratio), 3, padding=1, groups=embed_dims[-1],
            use_se=True, inference_mode=im,
        )
        self.num_features = int(embed_dims[-1] * cls_ratio)
        self.stride = 4 * 2 ** (len(layers) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for stage in self.network:
            x = stage(x)
        return self.conv_exp(x)

    @property
    def form(self) -> str:
        """``inference`` when every reparameterizable block is merged, ``training`` when none is,
        ``mixed`` otherwise."""
        modes = {m.inference_mode for m in self.modules() if isinstance(m, ReparamModule)}
        return "mixed" if len(modes) > 1 else ("inference" if modes == {True} else "training")

    def set_form(self, form: str) -> None:
        """Rebuild every reparameterizable block in ``form`` (fresh weights: load a checkpoint after)."""
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, not {form!r}")
        for m in _outermost_reparam_modules(self):
            if form == "training" and m.inference_mode:
                m.set_training_form()
            elif form == "inference" and not m.inference_mode:
                m.set_inference_form()

    def estimates_batchnorm_on_init(self) -> bool:
        """Whether :meth:`finish_random_init` will estimate every BatchNorm (training form) itself.

        Then the zoo's generic estimation pass on the inference form is skipped: its statistics
        were all reset and re-estimated here (about 14 s of FastViTHD's build at 256)."""
        return getattr(self, "_random_init_rng_state", None) is not None

    @torch.no_grad()
    def finish_random_init(self) -> None:
        """Called by the zoo after a seeded random init (``edgeml.models._init``): rebuild every
        reparameterizable block's training-form branches from the builder's seeded random stream,
        estimate all BatchNorm statistics on the sample images, merge back into the inference form.

        Deterministic: the same seed gives the same weights, whatever ``resolution`` was asked for.
        """
        from edgeml.models._init import _BN, _estimate

        rng_state = getattr(self, "_random_init_rng_state", None)
        if rng_state is None:  # not built by ``fastvithd()``: nothing to redo
            return
        del self._random_init_rng_state
        form = self.form
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng_state)
            self.set_form("training")
        config = self.edgeml_config.with_resolution(RANDOM_INIT_RESOLUTION)
        _estimate(self, [m for m in self.modules() if isinstance(m, _BN)], config)
        if form == "inference":
            for block in _outermost_reparam_modules(self):
                block.reparameterize()
        self.eval()

    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Switch each block to the form ``state`` holds, so that the strict load can match it.

        A block whose keys the checkpoint lacks in both forms is left alone, and the strict load
        then names the missing keys.
        """
        self.__dict__.pop("_random_init_rng_state", None)  # a checkpoint replaces the random init
        for name, m in _named_outermost_reparam_modules(self):
            merged = f"{name}.{m.inference_conv_name}.weight" in state
            if merged and not m.inference_mode:
                m.set_inference_form()
            elif not merged and m.inference_mode and any(k.startswith(f"{name}.") for k in state):
                m.set_training_form()
        for name, m in self.named_modules():
            if isinstance(m, ConvFFN):
                _match_bn_folding(m.conv, f"{name}.conv.", state)
        return state


def _named_outermost_reparam_modules(model: nn.Module, prefix: str = "") -> list[tuple[str, ReparamModule]]:
    # A RepMixer's training form contains MobileOne blocks; the RepMixer decides for all of them.
    found = []
    for name, child in model.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, ReparamModule):
            found.append((full, child))
        else:
            found += _named_outermost_reparam_modules(child, f"{full}.")
    return found


def _outermost_reparam_modules(model: nn.Module) -> list[ReparamModule]:
    return [m for _, m in _named_outermost_reparam_modules(model)]


def _match_bn_folding(seq: nn.Sequential, prefix: str, state: dict[str, torch.Tensor]) -> None:
    """Make ``Sequential(conv, bn)`` match a checkpoint that has the BN folded into the conv (keys
    ``conv.weight``/``conv.bias`` and no ``bn.*``), or the reverse."""
    conv = seq.conv
    folded_in_state = f"{prefix}conv.bias" in state and f"{prefix}bn.weight" not in state
    folded_here = isinstance(seq.bn, nn.Identity)
    if folded_in_state == folded_here:
        return
    ref = conv.weight
    new = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        groups=conv.groups, bias=folded_in_state,
    ).to(device=ref.device, dtype=ref.dtype)
    seq.conv = new
    seq.bn = nn.Identity() if folded_in_state else nn.BatchNorm2d(conv.out_channels).to(device=ref.device)
    seq.train(seq.training)


_FASTVITHD = dict(
    layers=(2, 12, 24, 4, 2),
    embed_dims=(96, 192, 384, 768, 1536),
    token_mixers=("repmixer", "repmixer", "repmixer", "attention", "attention"),
    cpe_before=(False, False, False, True, True),
)


@register_model(
    ModelConfig(
        name="fastvithd",
        family="fastvit",
        resolution=1024,
        mean=UNIT_MEAN,
        std=UNIT_STD,
        num_classes=0,
        output="embeddings",
        output_description="FastVLM image embeddings (B, 3072, H/64, W/64), input RGB in [0, 1]",
        stride=64,
        min_resolution=256,
        labels=None,
        # tests/export/test_efficientmod_fastvit_e2e.py exports, checks parity and runs the .pte (256)
        formats=("pte",),
        paper="FastVLM, CVPR 2025 (arXiv 2412.13303)",
    )
)
def fastvithd(resolution: int = 1024, form: str = "inference") -> FastViT:
    """FastViTHD built in ``form`` (``inference``: reparameterized, as FastVLM ships it; ``training``:
    unfused branches). ``resolution`` only has to be a multiple of 64 of at least 256: the
    network itself takes any such size."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    if resolution % 64 or resolution < 256:
        raise InputShapeError(
            f"fastvithd needs a resolution that is a multiple of 64 and at least 256, got {resolution}"
        )
    rng_state = torch.get_rng_state()  # the zoo seeds it: finish_random_init replays it
    model = FastViT(**_FASTVITHD, inference_mode=form == "inference")
    model._random_init_rng_state = rng_state
    return model
