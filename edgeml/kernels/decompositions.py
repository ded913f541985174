"""Decomposition table: each edgeml op overload -> its plain-aten chunked form.

``edgeml.export`` applies it with ``ExportedProgram.run_decompositions(decomposition_table())``
before lowering, so stock ExecuTorch (XNNPACK + portable kernels) and ONNX Runtime run the
result with no custom kernels. Custom ops (including ``torch.library.triton_op`` ones) are
kept opaque by torch.export, hence an explicit table (pytorch/pytorch#142426).
"""
from collections.abc import Callable

import torch

from .linear_attention import linear_attention_decomposition
from .selective_scan import selective_scan_decomposition, selective_scan_decomposition_onnx


def decomposition_table(*, onnx: bool = False) -> dict[torch._ops.OpOverload, Callable]:
    """Map every edgeml custom op overload to the function that decomposes it (``onnx``: the forms
    for ONNX, where they differ; see ``selective_scan_decomposition_onnx``)."""
    return {
        torch.ops.edgeml.selective_scan.default: selective_scan_decomposition_onnx if onnx
        else selective_scan_decomposition,
        torch.ops.edgeml.linear_attention.default: linear_attention_decomposition,
    }
