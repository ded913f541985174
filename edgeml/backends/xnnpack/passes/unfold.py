"""Non-overlapping ``unfold`` / ``fold`` as the reshapes and permutes they are, for XNNPACK.

``F.unfold`` / ``F.fold`` (``aten.im2col`` / ``aten.col2im``) reach ExecuTorch's edge dialect as
index arithmetic: ``arange``, ``index``, ``index_put``, ``full``, none of which XNNPACK takes, so a
model that cuts its feature map into patches this way (MobileViTV2's unfolding into 2x2 patches
and back) runs it on the portable kernels. When the patches do not overlap (stride equal to the
kernel, no padding, no dilation, and the map a whole number of patches) both are pure data
movement: ``unfold`` of an ``(N, C, H, W)`` map with ``k_h x k_w`` patches is

    x.view(N, C, H / k_h, k_h, W / k_w, k_w).permute(0, 1, 3, 5, 2, 4).view(N, C * k_h * k_w, L)

and ``fold`` its inverse (no overlap: nothing to sum). XNNPACK runs both as one transpose. Any other
``unfold`` / ``fold`` is left to the default decomposition.
"""
from __future__ import annotations

import torch

from edgeml.backends.xnnpack.passes import static


def _non_overlapping(kernel, dilation, padding, stride) -> bool:
    return list(stride) == list(kernel) and all(d == 1 for d in dilation) and all(p == 0 for p in padding)



def im2col_as_permute(x: torch.Tensor, kernel_size, dilation, padding, stride):
    if x.dim() != 4 or not _non_overlapping(kernel_size, dilation, padding, stride) or not static(*x.shape):
        return NotImplemented
    n, c, h, w = x.shape
    kh, kw = kernel_size
    if h % kh or w % kw:
        return NotImplemented
    y = x.reshape(n, c, h // kh, kh, w // kw, kw).permute(0, 1, 3, 5, 2, 4)
    return y.reshape(n, c * kh * kw, (h // kh) * (w // kw))


def col2im_as_permute(x: torch.Tensor, output_size, kernel_size, dilation, padding, stride):
    if x.dim() != 3 or not _non_overlapping(kernel_size, dilation, padding, stride) or not static(*x.shape):
        return NotImplemented
    n, ckk, blocks = x.shape
    h, w = output_size
    kh, kw = kernel_size
    if h % kh or w % kw or ckk % (kh * kw) or blocks != (h // kh) * (w // kw):
        return NotImplemented
    c = ckk // (kh * kw)
    y = x.reshape(n, c, kh, kw, h // kh, w // kw).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c, h, w)


def unfold_decompositions() -> dict:
    return {torch.ops.aten.im2col.default: im2col_as_permute, torch.ops.aten.col2im.default: col2im_as_permute}
