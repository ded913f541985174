"""The artifact manifest: ``<stem>.json`` next to every ``.pte``/``.onnx``.

It is the contract between the compiler and whatever runs the artifact (``edgeml verify``,
``edgeml profile``, the Android demo): nothing about the model is hard-coded downstream.
Schema version 1 (see README "Manifest"):

    format_version  int
    artifact        {file, format: pte|onnx, backend, sha256, size_bytes, export_seconds}
    model           {name, reference, source: zoo|file|module|huggingface|instance, files: {role: {path, sha256}},
                    kwargs, weights: {source, seed | path + sha256}, config: ModelConfig.to_dict()}
    inputs          [{name, shape, dtype, layout, dynamic: {axis: [min, max]}}]
    preprocessing   Preprocessing.to_dict() (+ "tiling" for tile encoders), or null
    outputs         [{name, shape, dtype, kind, labels}]
    quantization    {scheme, calibration: {images, source}, fp32_layers: [...], layers: {quantized, total},
                    norm_statistics: {precision, layers} (.pte int8 with LayerNorms), constant_layers:
                    {precision, layers} (layers computed from constants only), mixed_precision}
    delegation      {backend, delegated_nodes, total_nodes, share, portable_ops: {op: count}}
    parity          {reference, runtime, images, threshold_db, outputs: {name: metrics}; fp16:
                    host_fp16_arithmetic, whether the exporting CPU computed the fp16 ops in fp16}
    tools           {edgeml, torch, executorch, onnx, onnxruntime, python}
    created         ISO-8601 UTC
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeml.errors import ArtifactError

FORMAT_VERSION = 1
ARTIFACT_SUFFIXES = {".pte": "pte", ".onnx": "onnx", ".bpte": "bpte"}


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str = "float32"
    layout: str = "NCHW"
    kind: str = ""  # outputs: "logits", "embeddings", "tokens", "features", ...
    dynamic: dict[str, list[int]] = field(default_factory=dict)  # axis -> [min, max]
    labels: list[str] | None = None  # outputs: class names, when the user gave them (--labels, id2label)


@dataclass
class Manifest:
    artifact: dict[str, Any]
    model: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: dict[str, Any] | None
    quantization: dict[str, Any]
    delegation: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format_version": d.pop("format_version"), **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(f"manifest format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        try:
            fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
            fields["inputs"] = [TensorSpec(**t) for t in d["inputs"]]
            fields["outputs"] = [TensorSpec(**t) for t in d["outputs"]]
            return cls(**fields)
        except (KeyError, TypeError) as e:
            raise ArtifactError(f"manifest is missing or has a malformed field: {e}") from None

    @property
    def model_name(self) -> str:
        return self.model["name"]


def manifest_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def read_manifest(artifact: str | Path) -> Manifest:
    """The manifest beside ``artifact`` (ArtifactError if absent or malformed)."""
    path = manifest_path(artifact)
    if not path.is_file():
        raise ArtifactError(f"no manifest {path.name} next to {Path(artifact).name}: was it exported by edgeml?")
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"manifest {path} is not valid JSON: {e}") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("edgeml", "torch", "executorch", "torchao", "onnx", "onnxruntime", "onnxscript", "triton"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; artifacts are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())
