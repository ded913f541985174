"""Every zoo model through the pipeline: export time, size, parity, and .pte vs ONNX Runtime latency.

For each model and each artifact (pte/onnx x fp32/int8) the export is timed and its parity
(SQNR on the sample images, measured by export in the edge runtime) read from the manifest.
Then, per quantization, the .pte (ExecuTorch + XNNPACK) and the .onnx (ONNX Runtime CPU EP)
run alternately on the same input with the same thread count; the table gives both medians and
the ratio pte/ort (< 1: ExecuTorch faster). Run:

    python benchmarks/zoo.py [--models a,b] [--threads 2] [--rounds 30] [--out DIR]
"""
from __future__ import annotations

import argparse
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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import edgeml
    from edgeml.export import export
    from edgeml.runtime.runners import make_runner

    names = args.models.split(",") if args.models else edgeml.list_models()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-zoo-"))
    print(f"command: {command()}\nmachine: {machine()}\nthreads: {args.threads}, rounds: {args.rounds} "
          "(medians; pte and ort timed alternately)\n")
    rows = []
    for name in names:
        arts = {}
        for fmt in ("pte", "onnx"):
            for quant in ("none", "int8"):
                t = time.perf_counter()
                try:
                    arts[fmt, quant] = export(name, format=fmt, quantize=quant, output_dir=out)
                except edgeml.EdgeMLError as e:
                    print(f"{name} {fmt} {quant}: {e}", file=sys.stderr)
                    continue
                arts[fmt, quant].export_seconds = time.perf_counter() - t
        for quant in ("none", "int8"):
            pte, ort = arts.get(("pte", quant)), arts.get(("onnx", quant))
            lat = ["-", "-", "-"]
            if pte and ort:
                rp = make_runner(pte.path, threads=args.threads)
                ro = make_runner(ort.path, threads=args.threads)
                x = [torch.randn(*pte.manifest.inputs[0].shape)]
                mp, mo = interleaved_medians([lambda r=rp, x=x: r.run(x), lambda r=ro, x=x: r.run(x)], args.rounds)
                lat = [f"{mp:.2f}", f"{mo:.2f}", f"{mp / mo:.2f}"]
                del rp, ro
            for fmt, art in (("pte", pte), ("onnx", ort)):
                if art is None:
                    continue
                d = art.manifest.delegation
                share = f"{d['compute_share'] * 100:.0f}%" if "compute_share" in d else "n/a"
                rows.append([name, art.path.name, f"{art.export_seconds:.1f}", f"{art.size_bytes / 1e6:.2f}",
                             f"{art.manifest.parity['worst_sqnr_db']:.1f}", share,
                             *(lat if fmt == "pte" else ["", "", ""])])
    print_table(["model", "artifact", "export s", "MB", "SQNR dB (worst img)", "XNNPACK compute",
                 "pte ms", "ort ms", "pte/ort"], rows)


if __name__ == "__main__":
    main()
