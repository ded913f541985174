"""FastViTHD latency versus input resolution: .pte (ExecuTorch + XNNPACK) vs .onnx (ONNX Runtime).

For each resolution the fp32 .pte and .onnx are exported (timed: wall and CPU seconds, and the
load average, since the machines this runs on are shared), then run alternately on the same
random input with the same thread count; the table gives both medians and the ratio pte/ort
(< 1: ExecuTorch faster), and the .pte's delegation. Export's parity check runs on
``--images`` sample images (all six by default; fewer keeps 1024 affordable on two cores).

Weights: the zoo's seeded random init, which goes through the training form (BatchNorm
statistics estimated on the sample images, then merged; see ``edgeml.models.fastvit``), so the
output depends on the image and the parity figures measure the toolchain. Run:

    python benchmarks/fastvithd_resolution.py [--resolutions 256,512,768,1024] [--formats pte,onnx]
        [--quant none[,int8]] [--threads 2] [--rounds 5] [--images 6] [--out DIR]
        [--dynamic 256:1024 [--dynamic-only]] [--reuse]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, interleaved_medians, machine, print_table  # noqa: E402


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def _image_folder(n: int, root: Path) -> Path | None:
    from edgeml.images import sample_images

    paths = sample_images()
    if n >= len(paths):
        return None
    folder = root / f"images_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths[:n]:
        shutil.copy(p, folder / p.name)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resolutions", default="256,512,768,1024")
    ap.add_argument("--formats", default="pte,onnx")
    ap.add_argument("--quant", default="none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=6, help="sample images for export's parity check")
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir, deleted)")
    ap.add_argument("--dynamic", metavar="MIN:MAX",
                    help="also export one dynamic-resolution program per format (traced at 512) and time it "
                         "at each of --resolutions")
    ap.add_argument("--dynamic-only", action="store_true", help="with --dynamic: no static programs")
    ap.add_argument("--reuse", action="store_true",
                    help="use an artifact --out already holds instead of exporting it again (export s: reused)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from edgeml.export import Artifact, artifact_name, export
    from edgeml.manifest import read_manifest
    from edgeml.runtime.runners import make_runner

    keep = args.out is not None
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-fastvithd-"))
    images = _image_folder(args.images, out)
    formats, quants = args.formats.split(","), args.quant.split(",")
    print(f"command: {command()}\nmachine: {machine()}\nload average at start: {_load()}\n"
          f"threads: {args.threads}, rounds: {args.rounds} (medians; pte and ort timed alternately), "
          f"parity images: {min(args.images, 6)}, weights: zoo random init (seed 0)\n", flush=True)
    export_rows, latency_rows = [], []

    def get(fmt: str, quant: str, res: int, dynamic: tuple[int, int] | None = None):
        """Export (or, with --reuse, read back what --out already holds) and add the export row."""
        name = artifact_name("fastvithd", fmt, quant, res, 1024, dynamic_resolution=dynamic)
        if args.reuse and (out / name).exists():
            art, wall, cpu = Artifact(out / name, read_manifest(out / name), float("nan")), "reused", "reused"
        else:
            wall, cpu = time.perf_counter(), time.process_time()
            art = export("fastvithd", format=fmt, quantize=quant, resolution=res, output_dir=out,
                         verify_images=images, dynamic_resolution=dynamic)
            wall, cpu = f"{time.perf_counter() - wall:.0f}", f"{time.process_time() - cpu:.0f}"
        d = art.manifest.delegation
        share = f"{d['compute_share'] * 100:.0f}%" if "compute_share" in d else "n/a"
        portable = ", ".join(f"{k} x{n}" for k, n in sorted(d.get("portable_ops", {}).items()))
        parity = art.manifest.parity
        sqnr = (" / ".join(f"{r}: {v:.1f}" for r, v in parity["resolutions"].items()) if "resolutions" in parity
                else f"{parity['worst_sqnr_db']:.1f}")
        export_rows.append([f"{dynamic[0]}-{dynamic[1]}" if dynamic else res, art.path.name, wall, cpu, _load(),
                            f"{art.size_bytes / 1e6:.1f}", sqnr, share, portable or ("none" if fmt == "pte" else "")])
        print(f"  {export_rows[-1]}", file=sys.stderr, flush=True)
        return art

    def time_at(res: int, quant: str, arts: dict, kind: str) -> None:
        x = [torch.rand(1, 3, res, res)]
        runners = [make_runner(arts[f].path, threads=args.threads, spinning=False) for f in formats]
        ms = interleaved_medians([lambda r=r, x=x: r.run(x) for r in runners], args.rounds, warmup=1)
        row = [res, kind, quant, *(f"{m:.1f}" for m in ms)]
        if len(ms) == 2:
            row.append(f"{ms[0] / ms[1]:.2f}")
        row.append(_load())
        latency_rows.append(row)
        print(f"  {row}", file=sys.stderr, flush=True)

    resolutions = [int(r) for r in args.resolutions.split(",")]
    if args.dynamic:
        lo, hi = (int(v) for v in args.dynamic.split(":"))
        traced = 512 if lo <= 512 <= hi else lo
        for quant in quants:
            arts = {fmt: get(fmt, quant, traced, (lo, hi)) for fmt in formats}
            for res in resolutions:
                time_at(res, quant, arts, f"dynamic {lo}-{hi}")
    for res in resolutions if not args.dynamic_only else []:
        for quant in quants:
            arts = {fmt: get(fmt, quant, res) for fmt in formats}
            time_at(res, quant, arts, "static")
            if not keep:
                for art in arts.values():
                    art.path.unlink(missing_ok=True)
    print_table(["resolution", "artifact", "export s (wall)", "export s (CPU)", "load after", "MB",
                 "SQNR dB (worst img)", "XNNPACK compute", "portable ops"], export_rows)
    print()
    headers = ["resolution", "program", "quant", *(f"{f} ms (median)" for f in formats)]
    if len(formats) == 2:
        headers.append(f"{formats[0]}/{formats[1]}")
    headers.append("load after")
    print_table(headers, latency_rows)
    print(f"\nload average at end: {_load()}")
    if not keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
