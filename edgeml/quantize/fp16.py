"""fp16: the whole model in half precision, weights and activations, with fp32 input and output.

The program keeps the manifest's fp32 image input and fp32 outputs, so an app feeds an fp16
program exactly like an fp32 one: the first op casts the image to fp16 and the last ones cast
the outputs back. Everything between computes in fp16 where the runtime has fp16 kernels:
XNNPACK's fp16 microkernels (ARMv8.2 ``fp16`` arithmetic on phones; on an x86 CPU XNNPACK uses
AVX512-FP16 or F16C conversions around fp32 arithmetic) and ONNX Runtime's fp16 kernels (ORT
inserts casts to fp32 around the ops its CPU provider has no fp16 kernel for).

One op changes form: XNNPACK has no fp16 GELU, so fp16 programs for XNNPACK compute GELU in its
tanh form (``GELU_TANH_MAX_DEVIATION`` from the erf form, below the spacing of fp16 numbers
around 1), as fp16 multiplies, adds and a tanh that XNNPACK runs; left as it is, every GELU would
run on ExecuTorch's portable kernels between two delegate partitions.
"""
from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

# max |gelu_tanh(x) - gelu_erf(x)| over the reals (measured on a dense grid in fp64; the
# largest deviation is at |x| = 2.70, where fp16 numbers are 2**-9 = 2.0e-3 apart).
GELU_TANH_MAX_DEVIATION = 4.74e-4


class HalfPrecision(nn.Module):
    """``module`` in fp16 (a copy; the caller's module is untouched), fp32 in and out."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module).half()

    def forward(self, x: torch.Tensor) -> Any:
        y = self.module(x.to(torch.float16))
        return tree_map(lambda t: t.float() if isinstance(t, torch.Tensor) and t.dtype == torch.float16 else t, y)


def half_precision(module: nn.Module) -> nn.Module:
    return HalfPrecision(module).eval()


def fp16_decompositions() -> dict:
    """aten decompositions for fp16 XNNPACK programs (``decompose_custom_ops(..., extra=...)``):
    every GELU in its tanh form, as elementwise ops XNNPACK runs in fp16."""
    from edgeml.backends.xnnpack.passes.gelu import gelu_tanh_form

    return {torch.ops.aten.gelu.default: gelu_tanh_form}


_aten = torch.ops.aten
# Binary elementwise ops whose Scalar operand ExecuTorch's edge dialect makes into an fp32 tensor
# plus a cast: {op: its Tensor-Tensor form}.
_SCALAR_OPERAND_OPS = {
    _aten.add.Tensor: _aten.add.Tensor, _aten.sub.Tensor: _aten.sub.Tensor, _aten.mul.Tensor: _aten.mul.Tensor,
    _aten.div.Tensor: _aten.div.Tensor, _aten.add.Scalar: _aten.add.Tensor, _aten.sub.Scalar: _aten.sub.Tensor,
    _aten.mul.Scalar: _aten.mul.Tensor, _aten.div.Scalar: _aten.div.Tensor,
}


def fp16_scalar_operands(gm: torch.fx.GraphModule) -> int:
    """Give every Python-number operand of an fp16 add / sub / mul / div an fp16 tensor of its own.

    ExecuTorch's edge dialect turns ``x * 0.5`` into a multiply by a 0-d *fp32* tensor constant and
    a cast of it to fp16, and XNNPACK takes no dtype casts: each of them would run on the portable
    kernels at run time (283 in EfficientMod-XXS, one per scalar of its GELUs and norms). Here each
    number becomes ``full((), value, dtype=float16)``, which ``fold_constants`` then turns into an
    fp16 constant. Returns the number of operands changed."""
    changed = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _SCALAR_OPERAND_OPS:
            continue
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor) or value.dtype != torch.float16 or node.kwargs.get("alpha", 1) != 1:
            continue
        args, before = list(node.args), changed
        for i, a in enumerate(args[:2]):
            if isinstance(a, (int, float)) and not isinstance(a, bool):
                with gm.graph.inserting_before(node):
                    const = gm.graph.call_function(_aten.full.default, ([], float(a)),
                                                   {"dtype": torch.float16, "device": value.device})
                const.meta["val"] = torch.full((), float(a), dtype=torch.float16, device=value.device)
                args[i] = const
                changed += 1
        if changed > before:
            node.args = tuple(args)
            node.target = _SCALAR_OPERAND_OPS[node.target]
    gm.recompile()
    return changed


def host_fp16_arithmetic(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this machine's CPU does fp16 arithmetic (x86 ``avx512_fp16``, ARM ``asimdhp``), as
    Linux's ``cpuinfo`` lists it; False where it cannot tell. Without it XNNPACK computes an fp16
    program's ops in fp32 (and ONNX Runtime casts around them), so the program's parity on this
    machine is higher than on a phone's fp16 cores."""
    from edgeml.aarch64._remote_runner import cpu_info

    return bool({"avx512_fp16", "asimdhp"} & set(cpu_info(cpuinfo).get("features", ())))


HOST_FP32_NOTE = ("this CPU has no fp16 arithmetic, so the fp16 program computed in fp32 here and its parity "
                  "is higher than on a phone's fp16 cores (SigLIP-B/16: 56 dB here, 38 dB on an emulated "
                  "Cortex-A76); `edgeml verify ARTIFACT --on aarch64` runs the phone's kernels")


def precision_record() -> dict[str, str]:
    """The manifest's ``quantization.precision`` for fp16 programs."""
    return {"weights": "float16", "activations": "float16", "input": "float32", "outputs": "float32",
            "gelu": f"tanh form (max deviation {GELU_TANH_MAX_DEVIATION:g} from erf) on XNNPACK"}
