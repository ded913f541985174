"""LayerNorm written with the feature-axis means as 1x1 convolutions / linears, for XNNPACK.

XNNPACK (as ExecuTorch 1.5 partitions it) takes ``mean.dim`` only over the two innermost axes of
a 4-D tensor (global average pooling) and has no LayerNorm node, so a LayerNorm over the channel
axis of an NCHW map (``LayerNorm2d``: EfficientMod, FastViT's attention blocks) leaves its two
means on portable kernels, and ``nn.LayerNorm`` on token sequences leaves ``native_layer_norm``
there; each one splits the delegated graph in two. An average over ``C`` features is also a
matrix product with a constant ``(1, C)`` vector of ``1/C``: a 1x1 convolution with one output
channel on NCHW maps, a linear with one output on tokens. Both are XNNPACK's bread and butter,
and so are the sub / mul / add / rsqrt around them:

    mean = avg(x);  c = x - mean;  var = avg(c * c);  y = c * rsqrt(var + eps) * weight + bias

which is ``nn.LayerNorm``'s function (biased variance), up to fp32 rounding.

In fp16 programs each average is taken in two stages: to the means of groups of ``g`` features
(``g`` the divisor of ``C`` nearest its square root), then the mean of the ``C / g`` group means.
XNNPACK's fp16 matrix products on ARMv8.2 cores keep one fp16 running sum per output, rounded
after every multiply-add, and a mean is the worst such sum: ``C`` small terms of one sign into a
total up to ``C`` times larger, which an fp16 sum stops resolving long before the end. Measured on
emulated cortex-a76 and i8mm cores (``benchmarks/arm_fp16_ops.py``), a LayerNorm over 768
features of N(0, 1) tokens reads 47.9 dB against fp32 PyTorch in one stage and 63.4 dB in two (24
features, then 32 group means); the host's x86 kernels, which compute in fp32, 64.8 dB. The extra
ops are one small product per average, all delegated, where computing the norm in fp32 would put
a dtype conversion (which ExecuTorch 1.5 leaves to its portable kernels) on each side of every
norm. fp32 programs keep the one-stage form (and the ``averaging_*`` buffers, which fp16 programs
do not read).

``lower_layernorms`` is pure: it returns a copy in which every ``LayerNorm2d`` and every
``nn.LayerNorm`` over one trailing axis is replaced by these forms, keeping ``weight``/``bias``.
"""
from __future__ import annotations

import copy
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from edgeml.backends.xnnpack.passes import static
from edgeml.models.layers.norm import LayerNorm2d

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _half(x: torch.Tensor) -> bool:
    return x.dtype in (torch.float16, torch.bfloat16)


def two_stage_group(channels: int) -> int | None:
    """The group size ``g`` of a two-stage average over ``channels`` features: the divisor nearest
    ``sqrt(channels)`` (the larger on a tie), so both sums are about as short as they can be;
    None when ``channels`` has no divisor other than 1 and itself."""
    divisors = [d for d in range(2, channels) if channels % d == 0]
    if not divisors:
        return None
    return min(divisors, key=lambda d: (abs(d * d - channels), -d))


def _group_averaging(c: int, g: int, x: torch.Tensor) -> torch.Tensor:
    """``(c // g, c)``: row ``j`` averages features ``j * g .. j * g + g - 1`` and is zero elsewhere."""
    rows = torch.arange(c // g, device=x.device).unsqueeze(1)
    return (torch.arange(c, device=x.device) // g == rows).to(x.dtype) / g


def _two_stage_linear_mean(x: torch.Tensor, g: int) -> torch.Tensor:
    """The mean over the last axis of ``x`` (keepdim) as two linears: one to the ``C / g`` group
    means (block-diagonal weight, as in ``_two_stage_channel_mean``), one averaging those."""
    c = x.shape[-1]
    second = torch.full((1, c // g), g / c, dtype=x.dtype, device=x.device)
    return F.linear(F.linear(x, _group_averaging(c, g, x)), second)


def _two_stage_channel_mean(x: torch.Tensor, g: int) -> torch.Tensor:
    """The mean over dim 1 of an NCHW map (keepdim) as two 1x1 convolutions: one to the ``C / g``
    group means, one averaging those. The first is a dense convolution with a block-diagonal
    weight rather than a grouped one with one output per group, which XNNPACK runs as many tiny
    products; its zero weights add exact zeros to the running sums, so each output still sums
    only its own group's ``g`` terms."""
    c = x.shape[1]
    first = _group_averaging(c, g, x).reshape(c // g, c, 1, 1)
    second = torch.full((1, c // g, 1, 1), g / c, dtype=x.dtype, device=x.device)
    return F.conv2d(F.conv2d(x, first), second)


class _AveragedLayerNorm(nn.Module):
    def __init__(self, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                 averaging_shape: tuple[int, ...]) -> None:
        super().__init__()
        channels = averaging_shape[1]
        self.num_channels, self.eps = channels, float(eps)
        ref = weight if weight is not None else torch.empty(0)
        # Parameter-like constants: torch.export lifts them as buffers, PT2E quantizes them as
        # weights (all entries equal, so per-channel int8 represents 1/C exactly), XNNPACK packs
        # them. One per mean, not one shared: when mixed precision keeps one of the two means in
        # fp32, a constant shared by a delegated and a non-delegated op makes the XNNPACK
        # partition depend on itself through the outside ("Invalid partition, found dependency
        # cycles": efficientmod_xxs with fp32 layers did not lower).
        for name in ("averaging_mean", "averaging_var"):
            self.register_buffer(
                name, torch.full(averaging_shape, 1.0 / channels, dtype=ref.dtype, device=ref.device)
            )
        self.weight = nn.Parameter(weight.detach().clone()) if weight is not None else None
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None

    def _average(self, x: torch.Tensor, averaging: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _affine_view(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centered = x - self._average(x, self.averaging_mean)
        var = self._average(centered * centered, self.averaging_var)
        x = centered * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            x = x * self._affine_view(self.weight)
        if self.bias is not None:
            x = x + self._affine_view(self.bias)
        return x

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


class ConvMeanLayerNorm2d(_AveragedLayerNorm):
    """LayerNorm over dim 1 of an NCHW map; both channel means are 1x1 convs with one output."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> None:
        super().__init__(weight, bias, eps, (1, weight.numel(), 1, 1))

    def _average(self, x: torch.Tensor, averaging: torch.Tensor) -> torch.Tensor:
        g = two_stage_group(self.num_channels) if _half(x) else None
        return F.conv2d(x, averaging) if g is None else _two_stage_channel_mean(x, g)

    def _affine_view(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, 1, 1)


class LinearMeanLayerNorm(_AveragedLayerNorm):
    """LayerNorm over the last axis; both means are linears with one output feature."""

    def __init__(self, num_features: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 eps: float) -> None:
        super().__init__(weight, bias, eps, (1, num_features))

    def _average(self, x: torch.Tensor, averaging: torch.Tensor) -> torch.Tensor:
        g = two_stage_group(self.num_channels) if _half(x) else None
        return F.linear(x, averaging) if g is None else _two_stage_linear_mean(x, g)


def _lowerable(module: nn.Module) -> bool:
    return isinstance(module, LayerNorm2d) or (
        type(module) is nn.LayerNorm and len(module.normalized_shape) == 1
    )


def _lowered(module: nn.Module) -> nn.Module | None:
    if not _lowerable(module):
        return None
    if isinstance(module, LayerNorm2d):
        return ConvMeanLayerNorm2d(module.weight, module.bias, module.eps)
    return LinearMeanLayerNorm(module.normalized_shape[0], module.weight, module.bias, module.eps)


def lower_layernorms(module: ModuleT) -> ModuleT:
    """Return a copy of ``module`` with every ``LayerNorm2d`` and one-axis ``nn.LayerNorm`` in the
    averaged-by-matmul form above; ``module`` itself is left untouched. Same function within fp32
    rounding, in eval and in training mode (the norms have no running state)."""
    if isinstance(module, fx.GraphModule):
        raise TypeError("lower_layernorms works on eager modules: apply it before torch.export")
    replacement = _lowered(module)
    if replacement is not None:
        return replacement.train(module.training)
    model = copy.deepcopy(module)
    _replace_in_place(model)
    return model


def _replace_in_place(module: nn.Module) -> None:
    for name, child in module.named_children():
        replacement = _lowered(child)
        if replacement is not None:
            setattr(module, name, replacement.train(child.training))
        else:
            _replace_in_place(child)


def count_lowerable_layernorms(module: nn.Module) -> int:
    """How many norms ``lower_layernorms`` would rewrite."""
    return sum(_lowerable(m) for m in module.modules())


def layer_norm_as_linears(x: torch.Tensor, normalized_shape, weight: torch.Tensor | None,
                          bias: torch.Tensor | None, eps: float):
    """``aten.native_layer_norm`` over one trailing axis in the averaged-by-matmul form above.

    The decomposition for the LayerNorms the module pass does not see: subclasses of
    ``nn.LayerNorm`` with a ``forward`` of their own (transformers' ConvNeXt / ConvNeXtV2 norm,
    which permutes a channels-first map around ``super().forward``) and ``F.layer_norm`` called
    directly. The averaging weight is a ``full`` of ``1/C`` (in fp16, the two stages of the module
    doc), a constant once the captured graph is folded (``edgeml.export.passes.constants``).
    Returns what the op returns, ``(y, mean, rstd)``; static shapes, floating point and one
    normalized axis only."""
    shape = list(normalized_shape)
    if len(shape) != 1 or not x.dtype.is_floating_point or not static(*x.shape):
        return NotImplemented
    c = shape[0]
    g = two_stage_group(c) if _half(x) else None
    if g is None:
        averaging = torch.full((1, c), 1.0 / c, dtype=x.dtype, device=x.device)
        average = lambda t: F.linear(t, averaging)  # noqa: E731
    else:
        average = lambda t: _two_stage_linear_mean(t, g)  # noqa: E731
    mean = average(x)
    centered = x - mean
    var = average(centered * centered)
    rstd = torch.rsqrt(var + eps)
    y = centered * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def layer_norm_decompositions() -> dict:
    return {torch.ops.aten.native_layer_norm.default: layer_norm_as_linears}
