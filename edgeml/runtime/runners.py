"""Edge runtimes on the host: ExecuTorch's Python runtime for .pte, ONNX Runtime for .onnx.

Artifacts may come from anywhere, so opening one never trusts it: the file's sha256 must match
its manifest (a truncated or flipped byte is caught before any native code parses it), and
ExecuTorch programs are loaded with ``Verification.InternalConsistency`` so the flatbuffer's
offsets are bounds-checked. ONNX models go through ``onnx.checker`` first.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeml.errors import ArtifactError, InputShapeError
from edgeml.manifest import ARTIFACT_SUFFIXES, Manifest, read_manifest, sha256_file


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native libraries (cpuinfo probes) and torch.export's failure dumps print on
    fd 2 while the block runs (not with EDGEML_DEBUG=1)."""
    if os.environ.get("EDGEML_DEBUG"):
        yield
        return
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()  # what Python buffered meanwhile goes where it was going
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class OpenedArtifact:
    path: Path
    format: str
    manifest: Manifest


def open_artifact(path: str | Path, *, check_hash: bool = True) -> OpenedArtifact:
    """Check that ``path`` is an edgeml artifact whose bytes match its manifest."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist")
    fmt = ARTIFACT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ArtifactError(f"{path.name}: unknown artifact type (expected {', '.join(ARTIFACT_SUFFIXES)})")
    manifest = read_manifest(path)
    if check_hash:
        expected = manifest.artifact.get("sha256")
        actual = sha256_file(path)
        if expected != actual:
            raise ArtifactError(
                f"{path.name} does not match its manifest (sha256 {actual[:12]}... != {str(expected)[:12]}...): "
                "the file is truncated, corrupted or was modified after export. Export it again."
            )
    return OpenedArtifact(path, fmt, manifest)


class Runner:
    """Runs one artifact: ``run(inputs) -> outputs`` with torch tensors."""

    format: str
    runtime: str = ""  # what runs it, in words (the backend's ``runtime``)
    input_shapes: list[tuple[int, ...]]
    dynamic_axes: list[dict] = []  # per input {axis: [min, max]}, from the manifest

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def check_inputs(self, inputs: Sequence[torch.Tensor], dynamic: Sequence[dict] | None = None) -> None:
        if len(inputs) != len(self.input_shapes):
            raise InputShapeError(f"artifact takes {len(self.input_shapes)} inputs, got {len(inputs)}")
        for i, (x, shape) in enumerate(zip(inputs, self.input_shapes)):
            dyn = ((dynamic or self.dynamic_axes or [{}] * len(inputs))[i]) or {}
            ok = x.dim() == len(shape) and all(
                str(a) in dyn and dyn[str(a)][0] <= s <= dyn[str(a)][1] or s == e
                for a, (s, e) in enumerate(zip(x.shape, shape))
            )
            if not ok:
                raise InputShapeError(
                    f"input {i} has shape {tuple(x.shape)} but the artifact was exported for {tuple(shape)}"
                    + (f" with dynamic axes {dyn}" if dyn else "")
                    + "; export again with --resolution (or --dynamic-resolution) to change it"
                )


class PteRunner(Runner):
    """ExecuTorch's runtime, for any ``.pte`` whose delegates this runtime build links (XNNPACK)."""

    format = "pte"

    def __init__(self, path: str | Path, *, threads: int | None = None, etdump: bool = False,
                 **_: object) -> None:
        with quiet_native_stderr():
            from executorch.runtime import Runtime, Verification

            runtime = Runtime.get()
            if threads:
                from executorch.extension.pybindings import portable_lib

                portable_lib._unsafe_reset_threadpool(int(threads))
        data = Path(path).read_bytes()
        try:
            with quiet_native_stderr():  # XNNPACK probes the CPU when its delegate initializes
                self.program = runtime.load_program(
                    data, verification=Verification.InternalConsistency, enable_etdump=etdump,
                    debug_buffer_size=0,
                )
                self.method = self.program.load_method("forward")
        except (RuntimeError, ValueError) as e:
            raise ArtifactError(f"ExecuTorch cannot load {Path(path).name}: {str(e).splitlines()[0]}") from None
        meta = self.method.metadata
        self.input_shapes = [tuple(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        try:
            outs = self.method.execute([x.contiguous() for x in inputs])
        except RuntimeError as e:
            raise ArtifactError(f"ExecuTorch failed to run the program: {str(e).splitlines()[0]}") from None
        return [o.clone() if isinstance(o, torch.Tensor) else torch.as_tensor(o) for o in outs]

    def write_etdump(self, etdump_path: Path) -> None:
        self.program.write_etdump_result_to_file(str(etdump_path), "")


def make_runner(artifact: OpenedArtifact | str | Path, **kwargs) -> Runner:
    """The host runner of the artifact's backend (the manifest's ``artifact.backend``); options a
    runner does not take (``etdump`` for ONNX Runtime, ``spinning`` for ExecuTorch) are ignored."""
    from edgeml.backends import backend_for, get_backend

    opened = artifact if isinstance(artifact, OpenedArtifact) else open_artifact(artifact)
    if opened.format not in ("pte", "onnx"):
        raise ArtifactError(f"{opened.path.name}: no host runner for format {opened.format!r}")
    name = opened.manifest.artifact.get("backend")
    backend = get_backend(name) if name else backend_for(opened.format)
    runner = backend.runner(opened.path, **kwargs)
    runner.runtime = backend.runtime
    runner.dynamic_axes = [dict(spec.dynamic) for spec in opened.manifest.inputs]
    return runner


def runner_from_bytes(data: bytes, backend: str, **kwargs) -> Runner:
    """Run freshly serialized bytes of ``backend`` (a name, or a format for its default backend):
    export measures parity this way before writing anything."""
    from edgeml.backends import FORMATS, get_backend

    chosen = get_backend(FORMATS.get(backend, backend))
    with tempfile.TemporaryDirectory(prefix="edgeml-") as tmp:
        path = Path(tmp) / f"candidate{chosen.suffix}"
        path.write_bytes(data)
        runner = chosen.runner(path, **kwargs)
    runner.runtime = chosen.runtime
    return runner


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - t0) * 1e3, out
