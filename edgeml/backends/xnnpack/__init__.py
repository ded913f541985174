"""The XNNPACK backend: ExecuTorch ``.pte`` programs whose compute XNNPACK runs.

* ``passes/``: module rewrites that let XNNPACK's partitioner take the whole graph (LayerNorm
  statistics as 1x1 convs / linears) or run it on faster kernels (depthwise convolutions larger
  than 25 taps as sums of ones XNNPACK's depthwise kernels take); blocks whose export form
  depends on the backend are told it is XNNPACK (``use_export_form(backend="xnnpack")``, the model protocol);
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
    """The prepared module and its quantization session; ``build`` captures (or takes the capture
    made at compile time), decomposes and lowers."""

    def __init__(self, module: nn.Module, example: tuple, spec: CompileSpec, session: Any) -> None:
        self.module, self.example, self.spec, self.session = module, example, spec, session
        self.fp16 = spec.scheme.name == "fp16"
        # Without quantization the graph is captured now, so that a model torch.export cannot
        # capture fails in the capture stage; lowering consumes it, so a second build recaptures.
        self._captured = self._capture(module) if session is None else None

    def _capture(self, module: nn.Module) -> torch.export.ExportedProgram:
        from edgeml.backends.xnnpack.passes.broadcast_rank import rank_align_constant_operands
        from edgeml.backends.xnnpack.passes.scalars import scalar_ops_as_tensor_ops
        from edgeml.backends.xnnpack.passes.softmax import isolate_channels_last_softmax
        from edgeml.export import capture, decompose_custom_ops, fold_constants
        from edgeml.export.passes.affine import fold_channel_affines
        from edgeml.export.passes.constants import fold_constant_computations
        from edgeml.export.passes.reshapes import simplify_reshapes
        from edgeml.export.passes.softmax_guard import constant_values, drop_unmasked_softmax_guards

        extra = None
        if self.fp16:
            from edgeml.quantize.fp16 import fp16_decompositions

            extra = fp16_decompositions()  # GELU in its tanh form: XNNPACK has no fp16 GELU
        exported = capture(module, self.example, self.spec.dynamic_shapes)
        fold_channel_affines(exported)  # layer scales and norm affines into 1x1 convs / linears
        exported = decompose_custom_ops(exported, backend="xnnpack", extra=extra)
        if self.fp16:
            from edgeml.quantize.fp16 import fp16_scalar_operands

            # Numbers in fp16 arithmetic become fp16 constants, not fp32 ones cast at run time.
            if fp16_scalar_operands(exported.graph_module):
                exported = fold_constants(exported)
        if self.spec.dynamic_shapes is not None:
            # A reshape with one symbolic size becomes one with an inferred size, which XNNPACK
            # takes (decompose_custom_ops has done this already where it decomposed something).
            simplify_reshapes(exported.graph_module)
        # What depends on no input becomes a constant: weights computed from parameters (XNNPACK's
        # convolutions and linears take static weights only), attention masks, gather indices.
        exported = fold_constant_computations(exported)
        # An attention without a mask (or with a constant finite one) needs no fully-masked-row
        # guard: boolean ops XNNPACK lacks.
        drop_unmasked_softmax_guards(exported.graph_module, constant_values(exported))
        # A softmax over a conv's 4-D output: XNNPACK 1.5.1 normalizes the wrong axis of it.
        isolate_channels_last_softmax(exported.graph_module)
        if not self.fp16:
            scalar_ops_as_tensor_ops(exported.graph_module)  # x * 0.42 as XNNPACK's mul, not portable
            # A 0-D or (C, 1, 1) constant beside a 4-D activation made XNNPACK run the op in NCHW,
            # between two transposes of the activation.
            signature = exported.graph_signature
            constants = {*signature.inputs_to_parameters, *signature.inputs_to_buffers,
                         *signature.inputs_to_lifted_tensor_constants}
            if rank_align_constant_operands(exported.graph_module, constants):
                exported = fold_constants(exported)
        return exported

    def build(self, fp32_layers: Sequence[str] = ()) -> tuple[bytes, dict[str, Any]]:
        from edgeml.backends.xnnpack.lowering import lower_to_pte, lowering_failure

        if self.session is not None:
            exported = self._capture(self.session.quantized_module(fp32_layers))
        else:
            exported, self._captured = self._captured or self._capture(self.module), None
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
        from edgeml.backends.xnnpack.passes.depthwise import split_large_depthwise
        from edgeml.backends.xnnpack.passes.layernorm import lower_layernorms

        prepared = lower_layernorms(module)  # a copy
        split_large_depthwise(prepared)
        return prepared

    def decomposition_table(self, exported: torch.export.ExportedProgram) -> dict:
        from edgeml.backends.xnnpack.lowering import xnnpack_decomposition_table

        return xnnpack_decomposition_table(exported)

    def compile(self, module: nn.Module, example: tuple, spec: CompileSpec) -> XnnpackProgram:
        session = None
        if spec.scheme.name == "fp16":
            from edgeml.quantize.fp16 import half_precision

            module = half_precision(module)
        elif spec.scheme.name == "8da4w":
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
