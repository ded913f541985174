"""What each zoo model is proven to do: the formats and quantizations it was exported and verified in.

``edgeml/data/zoo_status.json`` holds, per zoo model and per artifact kind ("pte fp32", "pte int8",
"onnx fp32", ...), what a real export measured: the worst-image SQNR against eager PyTorch on the
sample images, the threshold the scheme is judged by (``edgeml.quantize.schemes``), the date,
machine, commit and tool versions. Only ``benchmarks/zoo_status.py`` writes it, from the manifests
of artifacts it exported (or was pointed at); nothing is entered by hand. ``edgeml list`` reads
it, and ``zoo_markdown_table`` renders it for the README. A model without an entry, or a kind
without a record, is "not measured": it may well work, nothing here proves it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from edgeml.quantize.schemes import SCHEME_INFO, default_min_sqnr

STATUS_FILE = "zoo_status.json"
FORMAT_VERSION = 1
# The kinds a table shows by default, in this order: the formats every family is tried in.
TABLE_KINDS = ("pte fp32", "pte int8", "onnx fp32", "onnx int8")
NOT_MEASURED = "not measured"


def kind_name(fmt: str, scheme: str) -> str:
    """ "pte fp32", "onnx int8", "pte int8-dynamic": an artifact's format and quantization scheme."""
    return f"{fmt} {'fp32' if scheme == 'none' else scheme}"


def status_path() -> Path:
    return Path(str(resources.files("edgeml") / "data" / STATUS_FILE))


def load_status(path: str | Path | None = None) -> dict[str, Any]:
    """The status file (the packaged one by default); an empty status if there is none."""
    path = Path(path) if path is not None else status_path()
    if not path.is_file():
        return {"format_version": FORMAT_VERSION, "models": {}}
    data = json.loads(path.read_text())
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
    return data


def model_status(name: str, status: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{kind: record}`` for zoo model ``name``; empty when nothing was measured."""
    status = load_status() if status is None else status
    return dict(status.get("models", {}).get(name, {}).get("results", {}))


def record_from_manifest(manifest, *, export_seconds: float | None, measured: str, machine: str,
                         commit: str) -> tuple[str, dict[str, Any]]:
    """(kind, record) of one exported artifact, from its manifest (``edgeml.manifest.Manifest``)."""
    scheme = manifest.quantization.get("scheme", "none")
    if scheme not in SCHEME_INFO:
        raise ValueError(f"unknown quantization scheme {scheme!r} in the manifest")
    parity = manifest.parity
    sqnr = float(parity["worst_sqnr_db"])
    threshold = default_min_sqnr(scheme)
    weights = manifest.model.get("weights", {})
    fp32_layers = manifest.quantization.get("fp32_layers") or []
    record = {
        "sqnr_db": round(sqnr, 2),
        "threshold_db": threshold,
        "verified": sqnr >= threshold,
        "images": len(parity.get("images", [])),
        "input": list(manifest.inputs[0].shape) if manifest.inputs else None,
        "weights": weights.get("source", "unknown") + (f" seed {weights['seed']}" if "seed" in weights else ""),
        "fp32_layers": len(fp32_layers),
        "artifact": manifest.artifact.get("file"),
        "sha256": manifest.artifact.get("sha256"),
        "size_mb": round(manifest.artifact.get("size_bytes", 0) / 1e6, 2),
        "export_s": None if export_seconds is None else round(export_seconds, 1),
        "measured": measured,
        "machine": machine,
        "commit": commit,
        "tools": dict(manifest.tools),
    }
    return kind_name(manifest.artifact.get("format", "pte"), scheme), record


def merge_record(status: dict[str, Any], name: str, kind: str, record: Mapping[str, Any], *,
                 params: int | None = None) -> None:
    """Put ``record`` into ``status`` (in place), replacing an earlier one of the same model and kind."""
    status.setdefault("format_version", FORMAT_VERSION)
    entry = status.setdefault("models", {}).setdefault(name, {"results": {}})
    if params is not None:
        entry["params"] = int(params)
    entry.setdefault("results", {})[kind] = dict(record)
    entry["results"] = dict(sorted(entry["results"].items(), key=lambda kv: _kind_order(kv[0])))
    status["models"] = dict(sorted(status["models"].items()))


def _kind_order(kind: str) -> tuple[int, str]:
    return (TABLE_KINDS.index(kind) if kind in TABLE_KINDS else len(TABLE_KINDS), kind)


def describe_record(record: Mapping[str, Any]) -> str:
    """ "30.2 dB" when it passes its threshold, "10.9 dB < 25" when not; "+N fp32" when layers stayed fp32;
    "export fails" when the export raised a user error (the record keeps its message)."""
    if record.get("error"):
        return "export fails"
    text = f"{record['sqnr_db']:.1f} dB"
    if record.get("fp32_layers"):
        text += f" (+{record['fp32_layers']} fp32)"
    if not record["verified"]:
        text += f" < {record['threshold_db']:g}"
    return text


def verified_summary(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One line for ``edgeml list``: every measured kind with its SQNR, or "not measured"."""
    if not results:
        return NOT_MEASURED
    return ", ".join(f"{kind} {describe_record(r)}" for kind, r in results.items())


def zoo_markdown_table(models: Sequence[str] | None = None, *, kinds: Sequence[str] = TABLE_KINDS,
                       status: Mapping[str, Any] | None = None) -> str:
    """The zoo as a markdown table: one row per model, one column per artifact kind (worst-image SQNR
    in dB; "< T" marks a figure below the scheme's threshold T), and when it was measured.

    ``models`` defaults to every zoo model; a model or kind without a record reads "not measured".
    Kinds beyond ``kinds`` that a model has records for (int8-dynamic, 8da4w) go in an "other" column.
    """
    from edgeml.models import get_model_config, list_models
    from edgeml.models._registry import count_model_params

    status = load_status() if status is None else status
    names = list(models) if models is not None else list_models()
    header = ["model", "params", "input", "output", *(f"`.{k.split()[0]}` {k.split(' ', 1)[1]}" for k in kinds),
              "other", "measured"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        cfg = get_model_config(name)
        entry = status.get("models", {}).get(name, {})
        results = entry.get("results", {})
        params = entry.get("params") or count_model_params(name)
        cells = [f"`{name}`", f"{params / 1e6:.2f}M", str(cfg.resolution), cfg.output]
        cells += [describe_record(results[k]) if k in results else NOT_MEASURED for k in kinds]
        other = [f"{k} {describe_record(r)}" for k, r in results.items() if k not in kinds]
        cells.append(", ".join(other) or "–")
        dates = sorted({r["measured"] for r in results.values()})
        cells.append(" – ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else NOT_MEASURED)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
