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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoweringError(f"ONNX export failed: {first}") from e
