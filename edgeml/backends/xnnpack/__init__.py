"""The XNNPACK backend: ExecuTorch ``.pte`` programs whose compute XNNPACK runs.

* ``passes/``: module rewrites that let XNNPACK's partitioner take the whole graph (LayerNorm
  statistics as 1x1 convs / linears); blocks whose export form depends on the backend are told
  it is XNNPACK (``use_export_form(backend="xnnpack")``, the model protocol);
* ``quantizer.py``: PT2E ``XNNPACKQuantizer`` sessions (static / dynamic int8) and torchao 8da4w;
* ``lowering.py``: ``to_edge_transform_and_lower`` with ``XnnpackPartitioner``, the lowering
  speed-ups (each tested to keep the program's bytes) and the delegation summary;
* the host runner is ExecuTorch's Python runtime (``edgeml.runtime.runners.PteRunner``), which
  links XNNPACK.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.backends import CompileSpec
from edgeml.errors import LoweringError


class XnnpackProgram:
    """The prepared module and its quantization session; ``build`` captures, decomposes and lowers."""

    def __init__(self, module: nn.Module, example: tuple, spec: CompileSpec, session: Any) -> None:
        self.module, self.example, self.spec, self.session = module, example, spec, session

    def build(self, fp32_layers: Sequence[str] = ()) -> tuple[bytes, dict[str, Any]]:
        from edgeml.backends.xnnpack.lowering import lower_to_pte, lowering_failure
        from edgeml.export import capture, decompose_custom_ops

        module = self.session.quantized_module(fp32_layers) if self.session is not None else self.module
        exported = decompose_custom_ops(capture(module, self.example, self.spec.dynamic_shapes), backend="xnnpack")
        try:
            data, delegation = lower_to_pte(exported)
        except Exception as e:
            raise LoweringError(lowering_failure(e)) from e
        return data, delegation.to_dict()


class XnnpackBackend:
    name = "xnnpack"
    format = "pte"
    suffix = ".pte"
    runtime = "ExecuTorch (Python runtime, XNNPACK)"

    def prepare(self, module: nn.Module, example: tuple) -> nn.Module:
        from edgeml.backends.xnnpack.passes.layernorm import lower_layernorms

        return lower_layernorms(module)

    def decomposition_table(self, exported: torch.export.ExportedProgram) -> dict:
        from edgeml.backends.xnnpack.lowering import xnnpack_decomposition_table

        return xnnpack_decomposition_table(exported)

    def compile(self, module: nn.Module, example: tuple, spec: CompileSpec) -> XnnpackProgram:
        session = None
        if spec.scheme.name == "8da4w":
            from edgeml.backends.xnnpack.quantizer import Int4WeightSession

            session = Int4WeightSession(module, spec.scheme, spec.group_size, spec.model_name)
        elif spec.scheme.name != "none":
            from edgeml.backends.xnnpack.quantizer import Pt2eSession

            session = Pt2eSession(module, example, spec.scheme, spec.observer, list(spec.calibration),
                                  dynamic_shapes=spec.dynamic_shapes, on_batch=spec.on_batch)
        return XnnpackProgram(module, example, spec, session)

    def runner(self, path: str | Path, **options: Any):
        from edgeml.runtime.runners import PteRunner

        return PteRunner(path, **options)


BACKEND = XnnpackBackend()
