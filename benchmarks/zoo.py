"""Every zoo model through the pipeline: export time, size, parity, and .pte vs ONNX Runtime latency.

For each model and each artifact (pte/onnx x fp32/int8) the export is timed and its parity
(SQNR on the sample images, measured by export in the edge runtime) read from the manifest.
Then, per quantization, the .pte (ExecuTorch + XNNPACK) and the .onnx (ONNX Runtime CPU EP)
run alternately on the same input with the same thread count; the table gives both medians and
the ratio pte/ort (< 1: ExecuTorch faster). Run:

    python benchmarks/zoo.py [--models a,b] [--schemes none,int8,fp16] [--threads 2] [--rounds 30] [--out DIR]
    python benchmarks/zoo.py --models a,b --artifacts DIR   # time artifacts exported before

Each quantized ``.pte`` is timed in the same alternation as the fp32 ``.pte`` too: the column
"pte / pte fp32" is the speed-up quantization buys in ExecuTorch. After the table of every
artifact comes a summary, one line per model; ``--summarize FILE`` prints the summary of a table
earlier runs printed (their stdout saved in FILEs).

``--artifacts`` takes the four default-named artifacts of each model from DIR (as
``benchmarks/zoo_status.py --out DIR`` writes them, mixed-precision ones included; each checked
against its manifest) instead of exporting: export seconds are then the manifest's.

The load average (1, 5, 15 min) is printed after each export and each timing: these machines are
shared, so absolute seconds depend on it; the pte/ort ratios, timed alternately, much less.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, interleaved_medians, machine, print_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated zoo names (default: every model in the zoo)")
    ap.add_argument("--schemes", default="none,int8", help="comma-separated quantization schemes (none = fp32)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir)")
    ap.add_argument("--artifacts", type=Path, metavar="DIR", help="time the artifacts in DIR; export nothing")
    ap.add_argument("--summarize", type=Path, nargs="+", metavar="FILE",
                    help="print the summary of earlier runs' outputs")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.summarize:
        print_table(SUMMARY_HEADERS, summary_rows([r for f in args.summarize for r in _read_table(f.read_text())]))
        return

    import edgeml
    from edgeml.export import export
    from edgeml.runtime.runners import make_runner

    names = args.models.split(",") if args.models else edgeml.list_models()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-zoo-"))
    print(f"command: {command()}\nmachine: {machine()}\nload average at start: {_load()}\n"
          f"threads: {args.threads}, rounds: {args.rounds} (medians; pte and ort timed alternately)\n", flush=True)
    schemes = args.schemes.split(",")
    rows = []
    for name in names:
        arts, loads = {}, {}
        for fmt in ("pte", "onnx"):
            for quant in dict.fromkeys(["none", *schemes]):
                if args.artifacts:
                    art = _exported(args.artifacts, name, fmt, quant)
                    if art is not None:
                        arts[fmt, quant], loads[fmt, quant] = art, "-"
                    continue
                t = time.perf_counter()
                try:
                    arts[fmt, quant] = export(name, format=fmt, quantize=quant, output_dir=out)
                except edgeml.EdgeMLError as e:
                    print(f"{name} {fmt} {quant}: {e}", file=sys.stderr)
                    continue
                arts[fmt, quant].export_seconds = time.perf_counter() - t
                loads[fmt, quant] = _load()
                print(f"  {name} {fmt} {quant}: {arts[fmt, quant].export_seconds:.0f} s, load {loads[fmt, quant]}",
                      file=sys.stderr, flush=True)
        for quant in schemes:
            pte, ort, pte32 = arts.get(("pte", quant)), arts.get(("onnx", quant)), arts.get(("pte", "none"))
            lat = ["-"] * 5
            if pte and ort:
                programs = [pte, ort] + ([pte32] if quant != "none" and pte32 else [])
                runners = [make_runner(a.path, threads=args.threads, **({"spinning": False} if a is ort else {}))
                           for a in programs]
                x = [torch.randn(*pte.manifest.inputs[0].shape)]
                ms = interleaved_medians([lambda r=r, x=x: r.run(x) for r in runners], args.rounds)
                lat = [f"{ms[0]:.2f}", f"{ms[1]:.2f}", f"{ms[0] / ms[1]:.2f}",
                       f"{ms[0] / ms[2]:.2f}" if len(ms) == 3 else "-", _load()]
                del runners
            for fmt, art in (("pte", pte), ("onnx", ort)):
                if art is None:
                    continue
                d = art.manifest.delegation
                share = f"{d['compute_share'] * 100:.0f}%" if "compute_share" in d else "n/a"
                portable = ", ".join(f"{k} x{n}" for k, n in sorted(d.get("portable_ops", {}).items()))
                rows.append([name, art.path.name, f"{art.export_seconds:.1f}", loads[fmt, quant],
                             f"{art.size_bytes / 1e6:.2f}", f"{art.manifest.parity['worst_sqnr_db']:.1f}", share,
                             portable or ("none" if fmt == "pte" else ""),
                             *(lat if fmt == "pte" else [""] * 5)])
                print(f"  row: {' | '.join(rows[-1])}", file=sys.stderr, flush=True)
    print_table(HEADERS, rows)
    print()
    print_table(SUMMARY_HEADERS, summary_rows(rows))
    print(f"\nload average at end: {_load()}")


HEADERS = ["model", "artifact", "export s", "load after", "MB", "SQNR dB (worst img)", "XNNPACK compute",
           "portable ops", "pte ms", "ort ms", "pte/ort", "pte / pte fp32", "load after timing"]
SUMMARY_HEADERS = ["model", "pte/ort fp32", "pte/ort int8", "pte/ort fp16", "pte int8/fp32", "pte fp16/fp32",
                   "pte fp32 ms", "pte int8 export s", "SQNR dB pte int8 / fp16", "SQNR dB onnx fp16",
                   "pte MB fp32 / int8 / fp16"]


def summary_rows(rows: list[list[str]]) -> list[list[str]]:
    """One line per model from the rows of the full table: the ratios, int8 export time, SQNRs, sizes."""
    by_model: dict[str, dict[tuple[str, str], list[str]]] = {}
    for row in rows:
        stem = row[1].rsplit(".", 1)
        fmt, tag = stem[1], stem[0].rsplit("_", 1)[1]
        by_model.setdefault(row[0], {})[fmt, tag] = row

    def cell(model, fmt, tag, column, default="-"):
        row = by_model[model].get((fmt, tag))
        return row[HEADERS.index(column)] if row and row[HEADERS.index(column)] else default

    out = []
    for model in by_model:
        out.append([model, cell(model, "pte", "fp32", "pte/ort"), cell(model, "pte", "int8", "pte/ort"),
                    cell(model, "pte", "fp16", "pte/ort"), cell(model, "pte", "int8", "pte / pte fp32"),
                    cell(model, "pte", "fp16", "pte / pte fp32"), cell(model, "pte", "fp32", "pte ms"),
                    cell(model, "pte", "int8", "export s"),
                    f"{cell(model, 'pte', 'int8', 'SQNR dB (worst img)')} / "
                    f"{cell(model, 'pte', 'fp16', 'SQNR dB (worst img)')}",
                    cell(model, "onnx", "fp16", "SQNR dB (worst img)"),
                    " / ".join(cell(model, "pte", t, "MB") for t in ("fp32", "int8", "fp16"))])
    return out


def _read_table(text: str) -> list[list[str]]:
    """The rows of the full table in a run's printed output."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(HEADERS) and cells[0] != "model" and not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows


def _exported(folder: Path, name: str, fmt: str, quant: str):
    """The artifact ``export`` would have written for (name, fmt, quant) at the defaults, read back
    from ``folder`` and checked against its manifest; None (and a line on stderr) when absent."""
    from edgeml.export import Artifact, artifact_name
    from edgeml.models import get_model_config
    from edgeml.runtime.runners import open_artifact

    resolution = get_model_config(name).resolution
    path = folder / artifact_name(name, fmt, quant, resolution, resolution)
    if not path.exists():
        print(f"{name} {fmt} {quant}: no {path.name} in {folder}", file=sys.stderr)
        return None
    opened = open_artifact(path)  # refuses bytes that differ from the manifest's hash
    return Artifact(path, opened.manifest, float(opened.manifest.artifact.get("export_seconds") or float("nan")))


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
