"""Backends: where an exported program runs, each one folder.

A file format is a container; a backend is what computes inside it. ``.pte`` is ExecuTorch's
container and XNNPACK the backend edgeml delegates to (``edgeml.backends.xnnpack``); ``.onnx``
is run by ONNX Runtime's CPU execution provider (``edgeml.backends.ort``). A backend folder holds
everything that knows about its backend:

* ``prepare(module, example)``: the module passes that let the backend take the whole graph;
* ``decomposition_table(exported)``: aten decompositions its lowering applies (run in the same
  retrace as edgeml's custom-op decompositions);
* ``compile(module, example, spec)``: capture, quantize and lower into a ``Program``, whose
  ``build(fp32_layers)`` gives the serialized bytes and the delegation record, and whose
  ``session`` (a ``QuantSession``) ranks and re-quantizes layers for the mixed-precision search;
* ``runner(path, **options)``: the host runtime that runs the program (``verify``, ``profile``).

The manifest records ``artifact.backend``; ``verify`` and ``profile`` dispatch on it through
``get_backend``. Adding a backend (ExecuTorch's Vulkan or Core ML partitioners) is a new folder
with a module-level ``BACKEND`` and one line in ``BACKENDS``.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from edgeml.errors import ArtifactError, UsageError

# name -> module defining BACKEND; the first backend of a format is that format's default.
BACKENDS = {"xnnpack": "edgeml.backends.xnnpack", "ort": "edgeml.backends.ort"}
FORMATS = {"pte": "xnnpack", "onnx": "ort"}


@dataclass
class CompileSpec:
    """What ``Backend.compile`` needs beyond the module and its example inputs."""

    scheme: Any  # edgeml.quantize.schemes.Scheme
    observer: str | None = None
    calibration: Sequence[torch.Tensor] = ()
    group_size: int = 32
    dynamic_shapes: object | None = None
    input_names: list[str] = field(default_factory=lambda: ["image"])
    output_names: list[str] = field(default_factory=lambda: ["output"])
    model_name: str = "model"
    workdir: Path | None = None  # backends that write intermediate files (ONNX) put them here
    on_batch: Callable[[], None] | None = None


class Program(Protocol):
    """A compiled model that can be serialized with any set of quantized layers kept in fp32."""

    session: Any  # edgeml.quantize.session.QuantSession | None

    def build(self, fp32_layers: Sequence[str] = ()) -> tuple[bytes, dict[str, Any]]: ...


class Backend(Protocol):
    name: str
    format: str
    suffix: str
    runtime: str

    def prepare(self, module: nn.Module, example: tuple) -> nn.Module: ...

    def decomposition_table(self, exported: torch.export.ExportedProgram) -> dict: ...

    def compile(self, module: nn.Module, example: tuple, spec: CompileSpec) -> Program: ...

    def runner(self, path: str | Path, **options: Any) -> Any: ...


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (a manifest's ``artifact.backend``)."""
    if name not in BACKENDS:
        raise ArtifactError(f"unknown backend {name!r} (this edgeml knows {', '.join(BACKENDS)})")
    return importlib.import_module(BACKENDS[name]).BACKEND


def backend_for(format: str, backend: str | None = None) -> Backend:
    """The backend that ``format`` programs are compiled for: ``backend`` if given (it must write
    that format), else the format's default."""
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose {' or '.join(FORMATS)}")
    chosen = get_backend(backend or FORMATS[format])
    if chosen.format != format:
        raise UsageError(f"the {chosen.name} backend writes .{chosen.format} programs, not .{format}")
    return chosen


__all__ = ["BACKENDS", "FORMATS", "Backend", "CompileSpec", "Program", "backend_for", "get_backend"]
