"""GELU's tanh approximation written out, because ExecuTorch 1.5.1's XNNPACK delegate computes the
exact (erf) GELU for it.

``F.gelu(x, approximate="tanh")`` (SigLIP's ``gelu_pytorch_tanh``, GPT-style MLPs) is taken by
XNNPACK's partitioner as a GELU, and the delegate runs XNNPACK's erf GELU whatever ``approximate``
says: up to 4.7e-4 away from PyTorch per activation, which left transformers' SigLIP at 67.8 dB and
SigLIP2 at 52.9 dB against eager fp32 (the models themselves are good to 136 / 113 dB in fp32).
Written as ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``, the function PyTorch computes,
it is multiplies, adds and a tanh, all of which XNNPACK runs. The exact GELU is left alone
(XNNPACK's is the exact one). ``tests/export/test_xnnpack_decompositions.py`` asserts the
upstream behaviour, so it says when this can go. fp16 programs write every GELU in this form
(``edgeml.quantize.fp16``: XNNPACK has no fp16 GELU).
"""
from __future__ import annotations

import math

import torch


def gelu_tanh_form(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU's tanh approximation as elementwise ops, whatever ``approximate`` says."""
    inner = x * (math.sqrt(2.0 / math.pi) * (1.0 + 0.044715 * x * x))
    return 0.5 * x * (1.0 + torch.tanh(inner))


def tanh_gelu_written_out(x: torch.Tensor, approximate: str = "none"):
    if approximate != "tanh" or not x.dtype.is_floating_point:
        return NotImplemented
    return gelu_tanh_form(x)


def gelu_decompositions() -> dict:
    return {torch.ops.aten.gelu.default: tanh_gelu_written_out}
