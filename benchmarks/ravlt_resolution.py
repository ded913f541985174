"""RAVLT-T: .pte latency and peak memory against resolution, linear vs softmax attention in stages 1-2.

The point of RALA's linear attention: stages 1-2 hold 16x and 4x more tokens than stage 3, so
softmax attention there costs O(t^2) time and memory (one t x t matrix per head: at 1024 x 1024
input, stage 1 has t = 65536 tokens and its attention matrix alone is 16 GiB), while linear
attention costs O(t). Two networks are compared: ``ravlt_t`` as published (linear in stages 1-2,
softmax in 3-4) and the same network with softmax attention in stages 1-2 too
(``attention=("softmax",) * 4``, the zoo's config switch). For each resolution both are exported
to fp32 .pte (XNNPACK), then timed alternately on the same random input (medians of ``--rounds``
alternating runs), and the peak RSS of a fresh process loading and running each program once is
measured (``edgeml.profile.host.measure_memory``). A softmax program whose stage-1 attention
matrix would exceed ``--max-attention-gib`` is not exported or run (the table says so): on a
shared machine it would only swap or be killed.

Weights: the zoo's seeded random init (no RAVLT weights are downloadable); latency and memory do
not depend on the weights. Export's parity check runs on one sample image. Run:

    python benchmarks/ravlt_resolution.py [--resolutions 224,512,1024] [--threads 2] [--rounds 5]
        [--max-attention-gib 2] [--out DIR] [--plot ravlt_resolution.png]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, interleaved_medians, machine, print_table  # noqa: E402

VARIANTS = {"linear (published)": None, "softmax in stages 1-2": ("softmax",) * 4}


def attention_gib(resolution: int) -> float:
    """Size of stage 1's t x t fp32 attention matrix (one head in RAVLT-T)."""
    t = (resolution // 4) ** 2
    return t * t * 4 / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resolutions", default="224,512,1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-attention-gib", type=float, default=2.0)
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir, deleted)")
    ap.add_argument("--plot", type=Path, help="write a chart of latency and memory against resolution")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import torch

    from edgeml.export import export
    from edgeml.images import sample_images
    from edgeml.profile.host import measure_memory
    from edgeml.runtime.runners import make_runner

    resolutions = [int(r) for r in args.resolutions.split(",")]
    print(f"command: {command()}\nmachine: {machine()}\ndate: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-ravlt-"))
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample_images()[0], images)
    rows, series = [], {name: [] for name in VARIANTS}
    try:
        for r in resolutions:
            arts, seconds = {}, {}
            for name, attention in VARIANTS.items():
                if attention is not None and attention_gib(r) > args.max_attention_gib:
                    continue
                t0 = time.perf_counter()
                kwargs = {} if attention is None else {"attention": attention}
                arts[name] = export("ravlt_t", format="pte", resolution=r, output_dir=out / name.split()[0],
                                    verify_images=images, model_kwargs=kwargs)
                seconds[name] = time.perf_counter() - t0
            runners = {n: make_runner(a.path, threads=args.threads) for n, a in arts.items()}
            x = [torch.randn(1, 3, r, r, generator=torch.Generator().manual_seed(0))]
            medians = dict(zip(runners, interleaved_medians([lambda rn=rn, x=x: rn.run(x) for rn in runners.values()],
                                                            args.rounds, warmup=1)))
            del runners
            for name in VARIANTS:
                if name not in arts:
                    rows.append([r, name, "-", "-", "-", "-", f"not run: stage-1 attention matrix "
                                 f"{attention_gib(r):.1f} GiB"])
                    series[name].append((r, None, None))
                    continue
                a = arts[name]
                peak, _ = measure_memory(a.path)
                d = a.manifest.delegation
                ratio = medians[name] / medians["linear (published)"]
                rows.append([r, name, f"{medians[name]:.1f}", f"{ratio:.2f}", f"{peak:.0f}",
                             f"{seconds[name]:.0f}", f"SQNR {a.manifest.parity['worst_sqnr_db']:.0f} dB, "
                             f"compute in XNNPACK {d['compute_share']:.0%}"])
                series[name].append((r, medians[name], peak))
            for row in rows[-len(VARIANTS):]:
                print("  " + " | ".join(str(c) for c in row), flush=True)  # progress: the table is at the end
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print()
    print_table(["resolution", "stages 1-2", "p50 ms", "vs linear", "peak RSS MB", "export s", "notes"], rows)
    if args.plot:
        _plot(series, args.plot)
        print(f"\nchart: {args.plot}")


def _plot(series: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in series.items():
        done = [(r, t, m) for r, t, m in points if t is not None]
        if done:
            ax_t.plot([p[0] for p in done], [p[1] for p in done], "o-", label=name)
            ax_m.plot([p[0] for p in done], [p[2] for p in done], "o-", label=name)
    ax_t.set(xlabel="input resolution (px)", ylabel="median latency (ms)", yscale="log", title="RAVLT-T .pte fp32")
    ax_m.set(xlabel="input resolution (px)", ylabel="peak RSS (MB)", title="load + one run")
    ax_t.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
