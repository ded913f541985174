"""Lowering to ONNX with the dynamo exporter (torch.onnx.export(..., dynamo=True))."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from edgeml.errors import LoweringError

OPSET = 20


def lower_to_onnx(model: nn.Module | torch.export.ExportedProgram, example_inputs: tuple, path: Path,
                  *, input_names: list[str], output_names: list[str],
                  dynamic_shapes: object | None = None) -> None:
    """Write a self-contained .onnx (weights inside the file) to ``path``."""
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, example_inputs, dynamo=True, opset_version=OPSET,
                input_names=input_names, output_names=output_names,
                dynamic_shapes=dynamic_shapes, optimize=True, verbose=False,
            )
            program.save(str(path), external_data=False)
    except Exception as e:  # the exporter raises many types; all mean "cannot lower"
        raise LoweringError(f"ONNX export failed: {exporter_failure(e)}") from e


_RESHAPES = (torch.ops.aten.view.default, torch.ops.aten.reshape.default, torch.ops.aten._unsafe_view.default)


def contiguous_views(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Every reshape or view of a computed tensor made to read an unconditional contiguous copy of
    it, in place, for the ONNX exporter.

    The ONNX exporter decomposes the captured graph in two rounds. In the first, a ``reshape`` or a
    ``.contiguous()`` becomes a plain view wherever the strides its input has there allow one, and
    those strides are the fused ``scaled_dot_product_attention``'s; in the second, that op becomes
    its math, whose output has other strides, and the view no longer fits: transformers' Swin
    reshapes attention's transposed output ("Cannot view a tensor with shape [64, 49, 3, 32] and
    strides (4704, 32, 1568, 1) as (64, 49, 96)"). ``clone(memory_format=contiguous_format)``
    always copies, so every view after it fits whatever the strides before it; in ONNX it is an
    ``Identity``, which the exporter's optimizer drops."""
    graph = exported.graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is torch.ops.aten.contiguous.default:
            node.target, node.kwargs = torch.ops.aten.clone.default, {"memory_format": torch.contiguous_format}
            changed = True
        elif (node.target in _RESHAPES and isinstance(node.args[0], torch.fx.Node)
              and node.args[0].op == "call_function"
              and not (node.args[0].target is torch.ops.aten.clone.default
                       and node.args[0].kwargs.get("memory_format") == torch.contiguous_format)):
            source = node.args[0]
            with graph.inserting_before(node):
                copy = graph.call_function(torch.ops.aten.clone.default, (source,),
                                           {"memory_format": torch.contiguous_format})
            val = source.meta.get("val")
            if isinstance(val, torch.Tensor):
                copy.meta["val"] = val.clone(memory_format=torch.contiguous_format)
            node.args = (copy, *node.args[1:])
            changed = True
    if changed:
        exported.graph_module.recompile()
    return exported


def exporter_failure(e: BaseException) -> str:
    """One line for a failed ``torch.onnx.export``: its own first line says only which step failed
    ("Failed to convert the exported program to an ONNX model ... Next steps:"); the node it could
    not translate and why are in the exceptions it was raised from."""
    lines = []
    while e is not None and len(lines) < 8:
        text = str(e).strip()
        lines.append(text.splitlines()[0] if text else type(e).__name__)
        e = e.__cause__ or e.__context__
    detail = [line for line in lines[1:] if not line.startswith("Error when calling function")]
    if lines[0].startswith("Failed to ") and detail:
        return "; ".join(detail[:2])
    return lines[0]
