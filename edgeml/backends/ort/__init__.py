"""The ONNX Runtime backend: ``.onnx`` programs run by ORT's CPU execution provider.

* ``lowering.py``: the dynamo ONNX exporter (opset 20, weights inside the file);
* ``quantizer.py``: ORT's ``quantize_static`` (QDQ) / ``quantize_dynamic`` as a session;
* ``runner.py``: ``onnxruntime.InferenceSession`` on the CPU provider, checked by ``onnx.checker``.

ORT takes LayerNorm and concatenations as they are, so this backend rewrites nothing before
capture. The fp32 graph is lowered first; int8 quantizes that graph. fp16 lowers the model in half
precision (``edgeml.quantize.fp16``) and quantizes nothing.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.backends import CompileSpec
from edgeml.errors import UsageError


class OrtProgram:
    def __init__(self, fp32_onnx: Path, session: Any) -> None:
        self.fp32_onnx, self.session = fp32_onnx, session

    def build(self, fp32_layers: Sequence[str] = ()) -> tuple[bytes, dict[str, Any]]:
        data = self.session.quantized_onnx(fp32_layers) if self.session is not None else self.fp32_onnx.read_bytes()
        return data, {"backend": "CPUExecutionProvider", "share": 1.0,
                      "note": "ONNX Runtime runs every node on its CPU execution provider"}


class OrtBackend:
    name = "ort"
    format = "onnx"
    suffix = ".onnx"
    runtime = "ONNX Runtime (CPU EP)"

    def prepare(self, module: nn.Module, example: tuple) -> nn.Module:
        return module

    def decomposition_table(self, exported: torch.export.ExportedProgram) -> dict:
        return {}

    def compile(self, module: nn.Module, example: tuple, spec: CompileSpec) -> OrtProgram:
        from edgeml.backends.ort.lowering import contiguous_views, lower_to_onnx
        from edgeml.export import capture, decompose_custom_ops
        from edgeml.export.passes.affine import fold_channel_affines

        if spec.workdir is None:
            raise ValueError("the ONNX backend writes its graph to a working directory: set CompileSpec.workdir")
        if spec.scheme.name == "8da4w":
            raise UsageError("8da4w is not available for .onnx (ONNX Runtime has no int4 grouped-weight scheme "
                             "here); use --format pte")
        if spec.scheme.name == "fp16":
            from edgeml.quantize.fp16 import half_precision

            module = half_precision(module)
        fp32 = Path(spec.workdir) / "model.onnx"
        exported = capture(module, example, spec.dynamic_shapes)
        fold_channel_affines(exported)  # layer scales and norm affines into 1x1 convs / linears
        exported = contiguous_views(decompose_custom_ops(exported))
        lower_to_onnx(exported, example, fp32, input_names=spec.input_names, output_names=spec.output_names)
        session = None
        if spec.scheme.layerwise:
            from edgeml.backends.ort.quantizer import OrtSession

            session = OrtSession(fp32, spec.input_names[0], spec.scheme, spec.observer, list(spec.calibration),
                                 Path(spec.workdir), example=example[0])
        return OrtProgram(fp32, session)

    def runner(self, path: str | Path, **options: Any):
        from edgeml.backends.ort.runner import OnnxRunner

        return OnnxRunner(path, **options)


BACKEND = OrtBackend()
