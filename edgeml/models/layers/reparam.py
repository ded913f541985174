"""Structurally reparameterizable blocks: MobileOne, RepLKNet's large-kernel conv, and FastViT's
RepMixer and RepCPE.

Each block exists in two forms whose state_dict keys are those of apple/ml-fastvit and
apple/ml-fastvlm (``mobileclip/mci.py``):

* the *training form*: parallel branches, each a conv followed by BatchNorm (plus an identity
  BN, a 1x1 "scale" branch, a layer scale, ...), e.g. ``rbr_conv.0.conv.weight``;
* the *inference form*: one convolution with bias that computes the same function,
  ``reparam_conv`` (``lkb_reparam`` for the large-kernel conv).

Besides the originals' one-way ``reparameterize()`` (merge in place), a block can switch back:
``set_training_form()`` rebuilds fresh branches, which the zoo loader uses when a training-form
checkpoint is loaded into a model built in inference form. ``fused_kernel_bias()`` gives the merged
conv in either form. The export pass ``edgeml.export.passes.reparameterize.reparameterize_model``
applies the merges to a copy of a whole model. The merges follow RepVGG (Ding et al., CVPR 2021),
MobileOne (Vasu et al., CVPR 2023), RepLKNet (Ding et al., CVPR 2022) and FastViT (Vasu et al.,
ICCV 2023): every branch is linear up to the block's activation, a conv-BN pair becomes one conv
(``fuse_bn``), an identity branch is a conv with a centre-tap one (``identity_kernel``), smaller
kernels are zero-padded to the large one, and parallel branches add their kernels and biases.

A block built with ``inference_mode=True`` is initialized as the merge of freshly initialized
branches, so a randomly initialized inference-form network computes what a fresh training-form
one does.

Divergences from the originals, none of which changes a key or a function:
* SE uses ``mean`` over H, W instead of ``avg_pool2d`` with a kernel read from the runtime shape,
  so the blocks work at any resolution and under symbolic shapes;
* ``RepMixer`` always has its layer scale (every FastViT variant uses one);
* the large-kernel conv has no SE option (no FastViT variant uses it).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

KernelBias = tuple[torch.Tensor, torch.Tensor]


def conv_bn(
    in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, padding: int = 0, groups: int = 1
) -> nn.Sequential:
    """``Sequential(conv=Conv2d(bias=False), bn=BatchNorm2d)``: the originals' branch layout."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_chs),
        )
    )


class SqueezeExcite(nn.Module):
    """SE of MobileOne/FastViT: mean over H, W -> 1x1 reduce -> ReLU -> 1x1 expand -> sigmoid."""

    def __init__(self, channels: int, rd_ratio: float = 0.0625) -> None:
        super().__init__()
        hidden = int(channels * rd_ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


def fuse_bn(weight: torch.Tensor, bn: nn.BatchNorm2d, bias: torch.Tensor | None = None) -> KernelBias:
    """Kernel and bias of ``bn(conv(x))`` for a conv of ``weight`` (and optional ``bias``), with the
    BN's running statistics: ``(W * g/s, beta - (mean - b) * g/s)``, ``s = sqrt(var + eps)``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    base = bn.running_mean if bias is None else bn.running_mean - bias
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - base * scale


def identity_kernel(
    channels: int, in_per_group: int, kernel_size: tuple[int, int], like: torch.Tensor
) -> torch.Tensor:
    """Kernel of a (grouped) conv mapping each channel to itself: 1 at the centre tap of output
    channel i's input i mod (input channels per group)."""
    kernel = torch.zeros(channels, in_per_group, *kernel_size, dtype=like.dtype, device=like.device)
    idx = torch.arange(channels, device=like.device)
    kernel[idx, idx % in_per_group, kernel_size[0] // 2, kernel_size[1] // 2] = 1.0
    return kernel


def pad_kernel(kernel: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad a smaller odd kernel to ``size`` around its centre (same conv with padding k//2)."""
    dh, dw = size[0] - kernel.shape[-2], size[1] - kernel.shape[-1]
    return F.pad(kernel, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


class ReparamModule(nn.Module):
    """A block that is either a set of linear branches or one merged conv named
    ``inference_conv_name``; both forms compute the same function (BN in eval mode)."""

    inference_conv_name = "reparam_conv"

    @property
    def inference_mode(self) -> bool:
        return getattr(self, self.inference_conv_name, None) is not None

    def _make_inference_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    def _build_training_branches(self) -> None:
        raise NotImplementedError

    def _drop_training_branches(self) -> None:
        raise NotImplementedError

    def _branches_kernel_bias(self) -> KernelBias:
        raise NotImplementedError

    def fused_kernel_bias(self) -> KernelBias:
        """Kernel and bias of the single conv equivalent to this block (in either form)."""
        if self.inference_mode:
            conv = getattr(self, self.inference_conv_name)
            return conv.weight, conv.bias
        return self._branches_kernel_bias()

    def reparameterize(self) -> None:
        """Merge the branches into one conv, in place (no-op in inference form). The export pass
        ``reparameterize_model`` does this on a copy of a whole model."""
        if not self.inference_mode:
            with torch.no_grad():
                weight, bias = self.fused_kernel_bias()
                self.set_inference_form(weight.detach().clone(), bias.detach().clone())

    def set_inference_form(
        self, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> None:
        """Replace the branches by one conv, set to ``weight``/``bias`` when given."""
        conv = self._make_inference_conv()
        ref = next(self.parameters(), None)
        if ref is not None:
            conv = conv.to(device=ref.device, dtype=ref.dtype)
        if weight is not None:
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias if bias is not None else torch.zeros_like(conv.bias))
        self._drop_training_branches()
        setattr(self, self.inference_conv_name, conv)

    def set_training_form(self) -> None:
        """Replace the merged conv by freshly initialized training-form branches."""
        ref = next(self.parameters(), None)
        setattr(self, self.inference_conv_name, None)
        self._build_training_branches()
        if ref is not None:
            self.to(device=ref.device, dtype=ref.dtype)
        self.train(self.training)  # new BNs must follow the model's eval/train mode

    def _init_form(self, inference_mode: bool) -> None:
        # Built in inference form, a fresh block is the merge of fresh branches, so a randomly
        # initialized network computes what a fresh training-form one does (a RepMixer starts
        # near identity, not as a random depthwise conv that shrinks every activation).
        self._build_training_branches()
        if inference_mode:
            self.reparameterize()


class MobileOneBlock(ReparamModule):
    """MobileOne (Vasu et al., CVPR 2023): skip BN + 1x1 scale conv-BN + k x k conv-BN branches."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        use_se: bool = False,
        use_act: bool = True,
        use_scale_branch: bool = True,
        num_conv_branches: int = 1,
        inference_mode: bool = False,
    ) -> None:
        super().__init__()
        self.in_chs, self.out_chs, self.kernel_size = in_chs, out_chs, kernel_size
        self.stride, self.padding, self.groups = stride, padding, groups
        self.use_scale_branch, self.num_conv_branches = use_scale_branch, num_conv_branches
        self.se = SqueezeExcite(out_chs) if use_se else nn.Identity()
        self.activation = nn.GELU() if use_act else nn.Identity()
        self.reparam_conv: nn.Conv2d | None = None
        self.rbr_skip: nn.BatchNorm2d | None = None
        self.rbr_conv: nn.ModuleList | None = None
        self.rbr_scale: nn.Sequential | None = None
        self._init_form(inference_mode)

    def _make_inference_conv(self) -> nn.Conv2d:
        return nn.Conv2d(
            self.in_chs, self.out_chs, self.kernel_size, self.stride, self.padding, groups=self.groups,
            bias=True,
        )

    def _build_training_branches(self) -> None:
        has_skip = self.in_chs == self.out_chs and self.stride == 1
        self.rbr_skip = nn.BatchNorm2d(self.in_chs) if has_skip else None
        self.rbr_conv = (
            nn.ModuleList(
                conv_bn(self.in_chs, self.out_chs, self.kernel_size, self.stride, self.padding, self.groups)
                for _ in range(self.num_conv_branches)
            )
            if self.num_conv_branches > 0
            else None
        )
        self.rbr_scale = (
            conv_bn(self.in_chs, self.out_chs, 1, self.stride, 0, self.groups)
            if self.kernel_size > 1 and self.use_scale_branch
            else None
        )

    def _drop_training_branches(self) -> None:
        self.rbr_skip = self.rbr_conv = self.rbr_scale = None

    def _branches_kernel_bias(self) -> KernelBias:
        k = (self.kernel_size, self.kernel_size)
        in_per_group = self.in_chs // self.groups
        ref = next(self.parameters())
        weight = torch.zeros(self.out_chs, in_per_group, *k, dtype=ref.dtype, device=ref.device)
        bias = torch.zeros(self.out_chs, dtype=ref.dtype, device=ref.device)
        if self.rbr_skip is not None:
            w, b = fuse_bn(identity_kernel(self.in_chs, in_per_group, k, ref), self.rbr_skip)
            weight, bias = weight + w, bias + b
        if self.rbr_scale is not None:
            w, b = fuse_bn(self.rbr_scale.conv.weight, self.rbr_scale.bn)
            weight, bias = weight + pad_kernel(w, k), bias + b
        for branch in self.rbr_conv or ():
            w, b = fuse_bn(branch.conv.weight, branch.bn)
            weight, bias = weight + w, bias + b
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            out = self.reparam_conv(x)
        else:
            parts = [branch(x) for branch in (self.rbr_skip, self.rbr_scale) if branch is not None]
            parts += [branch(x) for branch in (self.rbr_conv or ())]
            out = parts[0]
            for p in parts[1:]:
                out = out + p
        return self.activation(self.se(out))


class ReparamLargeKernelConv(ReparamModule):
    """RepLKNet (Ding et al., CVPR 2022): a large-kernel conv-BN plus a parallel small-kernel conv-BN,
    followed by GELU."""

    inference_conv_name = "lkb_reparam"

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        groups: int,
        small_kernel: int | None = 3,
        inference_mode: bool = False,
    ) -> None:
        super().__init__()
        if small_kernel is not None and small_kernel > kernel_size:
            raise ValueError(f"small kernel {small_kernel} is larger than the large kernel {kernel_size}")
        self.in_chs, self.out_chs, self.kernel_size = in_chs, out_chs, kernel_size
        self.stride, self.groups, self.small_kernel = stride, groups, small_kernel
        self.activation = nn.GELU()
        self.lkb_reparam: nn.Conv2d | None = None
        self.lkb_origin: nn.Sequential | None = None
        self.small_conv: nn.Sequential | None = None
        self._init_form(inference_mode)

    def _make_inference_conv(self) -> nn.Conv2d:
        k = self.kernel_size
        return nn.Conv2d(self.in_chs, self.out_chs, k, self.stride, k // 2, groups=self.groups, bias=True)

    def _build_training_branches(self) -> None:
        k, s = self.kernel_size, self.small_kernel
        self.lkb_origin = conv_bn(self.in_chs, self.out_chs, k, self.stride, k // 2, self.groups)
        self.small_conv = (
            conv_bn(self.in_chs, self.out_chs, s, self.stride, s // 2, self.groups) if s is not None else None
        )

    def _drop_training_branches(self) -> None:
        self.lkb_origin = self.small_conv = None

    def _branches_kernel_bias(self) -> KernelBias:
        weight, bias = fuse_bn(self.lkb_origin.conv.weight, self.lkb_origin.bn)
        if self.small_conv is not None:
            w, b = fuse_bn(self.small_conv.conv.weight, self.small_conv.bn)
            weight, bias = weight + pad_kernel(w, weight.shape[-2:]), bias + b
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lkb_reparam is not None:
            out = self.lkb_reparam(x)
        else:
            out = self.lkb_origin(x)
            if self.small_conv is not None:
                out = out + self.small_conv(x)
        return self.activation(out)


class RepMixer(ReparamModule):
    """FastViT's token mixer (Vasu et al., ICCV 2023): ``x + ls * (mixer(x) - norm(x))`` with
    depthwise MobileOne ``mixer`` and BN-only ``norm``; merges into one depthwise conv."""

    def __init__(
        self, dim: int, kernel_size: int = 3, layer_scale_init: float = 1e-5, inference_mode: bool = False
    ) -> None:
        super().__init__()
        self.dim, self.kernel_size, self.layer_scale_init = dim, kernel_size, layer_scale_init
        self.reparam_conv: nn.Conv2d | None = None
        self.norm: MobileOneBlock | None = None
        self.mixer: MobileOneBlock | None = None
        self.layer_scale: nn.Parameter | None = None
        self._init_form(inference_mode)

    def _make_inference_conv(self) -> nn.Conv2d:
        k = self.kernel_size
        return nn.Conv2d(self.dim, self.dim, k, 1, k // 2, groups=self.dim, bias=True)

    def _build_training_branches(self) -> None:
        d, k = self.dim, self.kernel_size
        self.norm = MobileOneBlock(
            d, d, k, padding=k // 2, groups=d, use_act=False, use_scale_branch=False, num_conv_branches=0
        )
        self.mixer = MobileOneBlock(d, d, k, padding=k // 2, groups=d, use_act=False)
        self.layer_scale = nn.Parameter(torch.full((d, 1, 1), self.layer_scale_init))

    def _drop_training_branches(self) -> None:
        self.norm = self.mixer = None
        self.layer_scale = None

    def _branches_kernel_bias(self) -> KernelBias:
        # x + ls * (mixer(x) - norm(x)): the residual is an identity kernel, and both MobileOne
        # blocks are depthwise k x k convs once merged.
        w_mix, b_mix = self.mixer.fused_kernel_bias()
        w_norm, b_norm = self.norm.fused_kernel_bias()
        ls = self.layer_scale.reshape(-1)
        eye = identity_kernel(self.dim, 1, tuple(w_mix.shape[-2:]), w_mix)
        return eye + ls.reshape(-1, 1, 1, 1) * (w_mix - w_norm), ls * (b_mix - b_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        return x + self.layer_scale * (self.mixer(x) - self.norm(x))


class RepCPE(ReparamModule):
    """Conditional positional encoding (Chu et al., 2021) as in FastViT: ``x + DWConv_kxk(x)``."""

    def __init__(self, dim: int, kernel_size: int = 7, inference_mode: bool = False) -> None:
        super().__init__()
        self.dim, self.kernel_size = dim, kernel_size
        self.reparam_conv: nn.Conv2d | None = None
        self.pe: nn.Conv2d | None = None
        self._init_form(inference_mode)

    def _make_inference_conv(self) -> nn.Conv2d:
        k = self.kernel_size
        return nn.Conv2d(self.dim, self.dim, k, 1, k // 2, groups=self.dim, bias=True)

    def _build_training_branches(self) -> None:
        self.pe = self._make_inference_conv()

    def _drop_training_branches(self) -> None:
        self.pe = None

    def _branches_kernel_bias(self) -> KernelBias:
        eye = identity_kernel(self.dim, 1, tuple(self.pe.weight.shape[-2:]), self.pe.weight)
        return eye + self.pe.weight, self.pe.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        return self.pe(x) + x
