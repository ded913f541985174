"""Export and verify zoo models, and record what was proven in edgeml/data/zoo_status.json.

For each model and artifact kind ("pte fp32", "pte int8", "onnx fp32", "onnx int8", or any
"FORMAT SCHEME" of edgeml.quantize.schemes) it runs the real export (build, passes, capture,
quantize, lower, parity on the sample images in the edge runtime, write), reads the manifest,
and stores the worst-image SQNR against the scheme's default threshold with the date, machine,
commit and tool versions (edgeml.zoo_status). The file is updated after every export, so an
interrupted run keeps what it measured; records of other models and kinds stay as they were.
`edgeml list` shows the file; `--table` prints it as the README's zoo table. Run:

    python benchmarks/zoo_status.py [--models a,b] [--kinds "pte fp32,onnx int8"] [--keep-fp32 [FORMAT=]@FILE ...]
        [--out DIR]
    python benchmarks/zoo_status.py --from-artifacts DIR   # manifests of artifacts already exported
    python benchmarks/zoo_status.py --table                # the markdown table, measuring nothing

--from-artifacts reads artifacts exported elsewhere (e.g. `benchmarks/zoo.py --out DIR`): each
artifact's bytes are checked against its manifest, and only zoo models at their default input
(batch 1, default resolution, static shapes, random init or a checkpoint) are recorded.
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, machine, print_table  # noqa: E402


def main() -> None:
    from edgeml.zoo_status import TABLE_KINDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated zoo names (default: every model in the zoo)")
    ap.add_argument("--kinds", default=",".join(TABLE_KINDS),
                    help=f"comma-separated 'FORMAT SCHEME' (default: {','.join(TABLE_KINDS)})")
    ap.add_argument("--keep-fp32", metavar="[FORMAT=]LAYERS", action="append", default=[],
                    help="quantized kinds: keep these layers in fp32 (as `edgeml export --keep-fp32`, e.g. "
                    "@benchmarks/ravlt_int8_fp32_layers.txt); FORMAT= (pte=, onnx=) for one format only; "
                    "may be repeated")
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir, removed)")
    ap.add_argument("--from-artifacts", type=Path, metavar="DIR", help="record these artifacts instead of exporting")
    ap.add_argument("--status", type=Path, help="the status file to update (default: edgeml/data/zoo_status.json)")
    ap.add_argument("--commit", help="the edgeml commit measured (default: `git rev-parse` of edgeml's checkout)")
    ap.add_argument("--table", action="store_true", help="print the markdown zoo table and exit")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import edgeml
    from edgeml.zoo_status import load_status, status_path, zoo_markdown_table

    path = args.status or status_path()
    models = args.models.split(",") if args.models else None
    if args.table:
        print(zoo_markdown_table(models, status=load_status(path)))
        return
    commit = args.commit or _commit(Path(edgeml.__file__).resolve().parent)
    print(f"command: {command()}\nmachine: {machine()}\ndate: {_today()}\ncommit: {commit}\nstatus file: {path}\n",
          flush=True)
    if args.from_artifacts:
        rows = _record_artifacts(args.from_artifacts, path, models, commit)
    else:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        with tempfile.TemporaryDirectory(prefix="edgeml-zoo-status-") as tmp:
            rows = _export_and_record(models or edgeml.list_models(), kinds, args.out or Path(tmp), path, commit,
                                      keep_fp32=_keep_lists(args.keep_fp32))
    print_table(["model", "kind", "worst-image SQNR dB", "threshold dB", "verified", "fp32 layers", "XNNPACK compute",
                 "portable ops", "export s", "artifact"], rows)


def _keep_lists(items: list[str]) -> dict[str, list[str]]:
    """``--keep-fp32`` values -> {format: layer names}; an item without ``FORMAT=`` is for both."""
    from edgeml.commands import _layer_names

    keep: dict[str, list[str]] = {"pte": [], "onnx": []}
    for item in items:
        fmt, sep, names = item.partition("=")
        if not (sep and fmt in keep):
            fmt, names = None, item
        for f in [fmt] if fmt else list(keep):
            keep[f] += _layer_names(names)
    return keep


def _export_and_record(models, kinds, out: Path, path: Path, commit: str, *,
                       keep_fp32: dict[str, list[str]] | None = None) -> list[list[str]]:
    from edgeml.errors import EdgeMLError
    from edgeml.export import export
    from edgeml.models._registry import count_model_params
    from edgeml.zoo_status import kind_name, load_status, merge_record, record_from_manifest

    rows = []
    for name in models:
        params = count_model_params(name)
        for kind in kinds:
            fmt, _, label = kind.partition(" ")
            scheme = "none" if label == "fp32" else label
            t = time.perf_counter()
            listed = (keep_fp32 or {}).get(fmt)
            keep = {"keep_fp32": listed} if listed and scheme != "none" else {}
            try:
                artifact = export(name, format=fmt, quantize=scheme, output_dir=out, **keep)
            except EdgeMLError as e:  # recorded as such: an export that fails is a result too
                seconds = time.perf_counter() - t
                record = {"sqnr_db": None, "threshold_db": None, "verified": False, "error": str(e).splitlines()[0],
                          "export_s": round(seconds, 1), "measured": _today(), "machine": machine(), "commit": commit}
                kind = kind_name(fmt, scheme)
                rows.append([name, kind, "export failed", "", "no", "", "", "", f"{seconds:.0f}", record["error"][:60]])
            else:
                kind, record = record_from_manifest(artifact.manifest, export_seconds=time.perf_counter() - t,
                                                    measured=_today(), machine=machine(), commit=commit)
                rows.append([name, kind, f"{record['sqnr_db']:.1f}", f"{record['threshold_db']:g}",
                             "yes" if record["verified"] else "no", str(record["fp32_layers"]),
                             *_delegation(artifact.manifest), f"{record['export_s']:.0f}", record["artifact"]])
                for p in (artifact.path, artifact.manifest_path):
                    if out.name.startswith("edgeml-zoo-status-"):
                        p.unlink(missing_ok=True)
            status = load_status(path)
            merge_record(status, name, kind, record, params=params)
            _write(path, status)
            print(f"  {' | '.join(rows[-1])}  (load {_load()})", file=sys.stderr, flush=True)
    return rows


def _record_artifacts(folder: Path, path: Path, models, commit: str) -> list[list[str]]:
    from edgeml.errors import EdgeMLError
    from edgeml.models import get_model_config, list_models
    from edgeml.models._registry import count_model_params
    from edgeml.runtime.runners import open_artifact
    from edgeml.zoo_status import load_status, merge_record, record_from_manifest

    zoo = set(list_models())
    rows = []
    for artifact in sorted(p for p in folder.iterdir() if p.suffix in (".pte", ".onnx")):
        try:
            opened = open_artifact(artifact)
        except EdgeMLError as e:
            print(f"  skipped {artifact.name}: {e}", file=sys.stderr)
            continue
        m = opened.manifest
        name = m.model.get("name")
        why = None
        if name not in zoo or (models and name not in models):
            why = "not a zoo model asked for"
        else:
            cfg = get_model_config(name)
            shape = list(m.inputs[0].shape) if m.inputs else []
            if shape != [1, cfg.in_chans, cfg.resolution, cfg.resolution] or any(s.dynamic for s in m.inputs):
                why = f"input {shape} is not the default 1x{cfg.in_chans}x{cfg.resolution}x{cfg.resolution}"
            elif m.model.get("kwargs"):
                why = f"built with arguments {m.model['kwargs']}"
            elif not m.parity:
                why = "no parity in the manifest"
        if why:
            print(f"  skipped {artifact.name}: {why}", file=sys.stderr)
            continue
        kind, record = record_from_manifest(m, export_seconds=None, measured=(m.created or "")[:10] or _today(),
                                            machine=f"not recorded (read from {folder})", commit=commit)
        status = load_status(path)
        merge_record(status, name, kind, record, params=count_model_params(name))
        _write(path, status)
        rows.append([name, kind, f"{record['sqnr_db']:.1f}", f"{record['threshold_db']:g}",
                     "yes" if record["verified"] else "no", str(record["fp32_layers"]), *_delegation(m), "",
                     artifact.name])
    return rows


def _delegation(manifest) -> list[str]:
    """XNNPACK's share of the compute ops and the ops left on portable kernels ("" for .onnx)."""
    d = manifest.delegation or {}
    if "compute_total" not in d:
        return ["", ""]
    portable = ", ".join(f"{op.removeprefix('aten_')} x{n}" for op, n in sorted(d.get("portable_ops", {}).items()))
    return [f"{d['compute_delegated']}/{d['compute_total']}", portable or "none"]


def _write(path: Path, status: dict) -> None:
    from edgeml.manifest import atomic_write_json

    atomic_write_json(path, status)


def _commit(source: Path) -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(source), *argv], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        # (the status file this script writes is not a change to the code it measures)
        dirty = git("status", "--porcelain", "--", *(str(source.parent / d) for d in ("edgeml", "export", "kernels")),
                    f":!{source / 'data' / 'zoo_status.json'}")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + (" with uncommitted changes" if dirty else "")


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
