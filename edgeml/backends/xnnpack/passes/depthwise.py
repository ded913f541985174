"""Large depthwise convolutions as sums of depthwise convolutions XNNPACK has kernels for.

XNNPACK's depthwise-convolution microkernels (as ExecuTorch 1.5 builds it) cover kernels of at
most 25 taps (5x5, 1x25, 3x7, dilated 2x11, ...). A larger depthwise kernel, such as the 7x7 of
EfficientMod's context branch and FastViT's ConvFFN, falls through to its grouped IGEMM path,
which computes every channel as a separate 1-channel matrix product: measured on a 64-channel
56x56 map (2-core Intel Xeon, 1 thread), a 7x7 depthwise convolution takes 7.9 ms where a 5x5
takes 0.21 ms.

A k x k depthwise convolution with "same" padding (``k // 2``) is the sum of convolutions over
disjoint sets of its kernel rows, each with the same stride and output grid:

* the band of the ``2c + 1`` centre rows, with padding ``(c, k // 2)``, as wide a band as fits in
  the tap limit (``(2c + 1) * k <= 25``);
* each remaining pair of rows ``r`` above and below the centre, as a 2-row kernel dilated by
  ``2r`` vertically, with padding ``(r, k // 2)``.

Every part is symmetric, so it keeps the convolution's padding convention and output size; every
part has at most 25 taps, so XNNPACK runs it on its depthwise kernels. A 7x7 becomes a 3x7 band
and two dilated 2x7 pairs (21 + 14 + 14 taps) and two adds; the bias goes to the band.

``split_large_depthwise`` rewrites, in place, every ``nn.Conv2d`` that is depthwise (``groups ==
in_channels``, any channel multiplier), square with odd ``k``, ``5 < k <= 12``, "same"-padded with
zeros and not dilated; other convolutions are left alone (``k > 12``: a 2-row pair would exceed
the limit). The parts are submodules of the replacement, so their quantized layers are named
``<conv>.band``, ``<conv>.rows<r>`` and ``<conv>:add*``, and a ``--keep-fp32`` list that names
the convolution keeps all of them in fp32 (``QuantSession.check_names``).
"""
from __future__ import annotations

import torch
from torch import nn

# The largest depthwise kernel (in taps) XNNPACK's depthwise microkernels take; past it, XNNPACK
# runs the convolution as grouped IGEMM.
XNNPACK_DWCONV_MAX_TAPS = 25
MAX_SPLIT_KERNEL = 12  # a pair of rows of a wider kernel exceeds the limit


class SplitDepthwiseConv2d(nn.Module):
    """A k x k depthwise convolution as a centre band plus dilated pairs of rows (module doc)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        k = conv.kernel_size[0]
        half = k // 2
        c = ((XNNPACK_DWCONV_MAX_TAPS // k) - 1) // 2  # the centre band has 2c + 1 rows
        w = conv.weight.detach()
        common = dict(in_channels=conv.in_channels, out_channels=conv.out_channels, stride=conv.stride,
                      groups=conv.groups, device=w.device, dtype=w.dtype)
        self.kernel_size = k
        self.band = nn.Conv2d(kernel_size=(2 * c + 1, k), padding=(c, half), bias=conv.bias is not None, **common)
        with torch.no_grad():
            self.band.weight.copy_(w[:, :, half - c: half + c + 1])
            if conv.bias is not None:
                self.band.bias.copy_(conv.bias.detach())
        self.pairs: list[str] = []
        for r in range(c + 1, half + 1):
            pair = nn.Conv2d(kernel_size=(2, k), padding=(r, half), dilation=(2 * r, 1), bias=False, **common)
            with torch.no_grad():
                pair.weight.copy_(torch.stack([w[:, :, half - r], w[:, :, half + r]], dim=2))
            setattr(self, f"rows{r}", pair)
            self.pairs.append(f"rows{r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.band(x)
        for name in self.pairs:
            y = y + getattr(self, name)(x)
        return y

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, parts={1 + len(self.pairs)}"


def splittable(conv: nn.Module) -> bool:
    """Whether ``conv`` is a depthwise convolution this pass rewrites (module doc)."""
    if type(conv) is not nn.Conv2d or conv.groups != conv.in_channels or conv.groups == 1:
        return False
    k = conv.kernel_size
    return (k[0] == k[1] and k[0] % 2 == 1 and k[0] * k[1] > XNNPACK_DWCONV_MAX_TAPS and k[0] <= MAX_SPLIT_KERNEL
            and conv.padding == (k[0] // 2, k[0] // 2) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros")


def split_large_depthwise(module: nn.Module) -> int:
    """Replace, in place, every splittable depthwise convolution in ``module``; returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if splittable(child):
                setattr(parent, name, SplitDepthwiseConv2d(child).train(child.training))
                count += 1
    return count
