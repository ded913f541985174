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
    if lines[0].startswith("Failed to convert") and detail:
        return "; ".join(detail[:2])
    return lines[0]
