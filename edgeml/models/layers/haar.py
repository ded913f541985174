"""One-level 2-D Haar wavelet transform in ops that lower well to XNNPACK and ONNX.

The usual formulation (WTConv, MobileNet-style wavelet blocks, MobileMamba's ``MBWTConv2d``)
is a grouped stride-2 convolution with four fixed 2x2 filters per channel for the forward
transform and a grouped ``conv_transpose2d`` for the inverse. Both are awkward on edge
runtimes: grouped transposed convolutions are not delegated by XNNPACK, and a grouped
stride-2 convolution with four outputs per group is an unusual, slow shape.

Here the same transforms are written as

* forward: ``pixel_unshuffle`` (space-to-depth; channel ``4c + 2p + q`` holds pixel
  ``(2i + p, 2j + q)`` of channel ``c``), then a fixed 4x4 mix of each channel's four
  phases, done as a 1x1 convolution with ``groups=C``;
* inverse: the inverse 4x4 mix (the mix is the 4x4 Sylvester-Hadamard matrix divided by 2,
  which is symmetric and orthogonal, so it is its own inverse), then ``pixel_shuffle``.

Sub-band order per channel is the one pywt's ``db1`` filters give in the conv formulation:
``(LL, LH, HL, HH)`` = filters ``[[.5, .5], [.5, .5]]``, ``[[.5, .5], [-.5, -.5]]``,
``[[.5, -.5], [.5, -.5]]``, ``[[.5, -.5], [-.5, .5]]``, and channel ``4c + k`` holds sub-band
``k`` of channel ``c`` (the layout of ``F.conv2d(x, filters, stride=2, groups=C)``).

Odd sizes: the conv formulation zero-pads the bottom/right by ``H % 2`` / ``W % 2`` before the
forward transform and crops after the inverse. :class:`HaarDWT` gets the same result from a
3x3 stride-2 conv with padding 1 (no pad node: XNNPACK cannot initialize a quantized constant
pad); :func:`pad_to_even` is the reference, and the ``size`` argument of :class:`HaarIWT`
crops. The branch depends on the (static) spatial size; under a dynamic H/W export it would
have to be specialized (see the note in ``edgeml/models/mobilemamba.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Row k = sub-band k; column 2p + q = phase (p, q) of the 2x2 block.
HAAR_MIX = 0.5 * torch.tensor(
    [
        [1.0, 1.0, 1.0, 1.0],  # LL
        [1.0, 1.0, -1.0, -1.0],  # LH: rows differ (p)
        [1.0, -1.0, 1.0, -1.0],  # HL: columns differ (q)
        [1.0, -1.0, -1.0, 1.0],  # HH
    ]
)


def haar_conv_filters(channels: int) -> torch.Tensor:
    """The conv-formulation filters, shape ``(4 * channels, 1, 2, 2)``, as pywt ``db1`` builds them.

    Used as the reference in tests and to recognise official ``wt_filter``/``iwt_filter``
    tensors; the transforms themselves do not use them.
    """
    return HAAR_MIX.reshape(4, 1, 2, 2).repeat(channels, 1, 1, 1)


def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad the bottom row / right column when H / W is odd (static shapes only)."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))
    return x


class _HaarMix(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        # Not persistent: a constant of the transform, never part of a checkpoint.
        mix = HAAR_MIX.repeat(channels, 1).reshape(4 * channels, 4, 1, 1)
        self.register_buffer("mix", mix, persistent=False)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class HaarDWT(_HaarMix):
    """``(B, C, H, W) -> (B, 4C, ceil(H/2), ceil(W/2))``, sub-bands ``(LL, LH, HL, HH)`` per channel.

    Odd H or W: instead of a zero pad (XNNPACK fails to initialize a *quantized* constant pad,
    ``xnn_status_invalid_parameter``, so a PT2E int8 program would not load), a grouped 3x3
    stride-2 conv with padding 1 whose filters hold the 2x2 Haar filters in their bottom-right
    taps: the window centred on (2i, 2j) reads rows 2i, 2i+1 and columns 2j, 2j+1, and the conv's
    own zero padding supplies the missing last row/column. Same result as pad + space-to-depth.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        shifted = torch.zeros(4 * channels, 1, 3, 3)
        shifted[:, :, 1:, 1:] = haar_conv_filters(channels)
        self.register_buffer("shifted_filters", shifted, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            return F.conv2d(x, self.shifted_filters, stride=2, padding=1, groups=self.channels)
        x = F.pixel_unshuffle(x, 2)
        return F.conv2d(x, self.mix, groups=self.channels)


class HaarIWT(_HaarMix):
    """Inverse of :class:`HaarDWT`: ``(B, 4C, h, w) -> (B, C, 2h, 2w)``, cropped to ``size`` if given."""

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        x = F.pixel_shuffle(F.conv2d(x, self.mix, groups=self.channels), 2)
        if size is not None and (x.shape[-2] != size[0] or x.shape[-1] != size[1]):
            x = x[..., : size[0], : size[1]]
        return x
