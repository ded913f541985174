"""How fast the two runtimes run fp32 1x1 convolutions: the GEMMs that dominate MobileNetV1,
SigLIP and FastViTHD.

    python benchmarks/gemm_bound.py [--channels 256] [--resolution 56] [--rounds 100] [--out DIR]

A program of four 1x1 convolutions (C -> 4C -> C -> 4C -> C, ReLUs between, after a 3 -> C stem)
is exported as `.pte` (XNNPACK) and `.onnx` (ONNX Runtime, spinning off) and timed alternately
with 1 and 2 threads; the table gives each runtime's throughput in GFLOP/s (2 x the convolutions'
multiply-adds per second). Where both reach the CPU's fp32 FMA throughput, a model whose time is
mostly such GEMMs cannot run in much less than ONNX Runtime's time on that CPU, whatever the graph.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, interleaved_medians, machine, print_table  # noqa: E402


class Pointwise(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, c, 1), nn.Conv2d(c, 4 * c, 1), nn.ReLU(), nn.Conv2d(4 * c, c, 1),
                                  nn.ReLU(), nn.Conv2d(c, 4 * c, 1), nn.ReLU(), nn.Conv2d(4 * c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--resolution", type=int, default=56)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--out", type=Path, help="artifacts go here (default: a temporary folder)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from edgeml.export import export
    from edgeml.runtime.runners import make_runner

    torch.manual_seed(0)
    c, r = args.channels, args.resolution
    model = Pointwise(c).eval()
    shape = (1, 3, r, r)
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-gemm-"))
    arts = [export(model, format=fmt, input_shape=shape, output_dir=out) for fmt in ("pte", "onnx")]
    gflop = 2 * 4 * (c * 4 * c) * r * r / 1e9  # the four C <-> 4C convolutions; the stem is 1% of it
    print(f"command: {command()}\nmachine: {machine()}\nprogram: 1x1 convolutions {c} <-> {4 * c} at {r}x{r}, "
          f"{gflop:.2f} GFLOP per inference; {args.rounds} rounds, medians, timed alternately\n", flush=True)
    x = torch.randn(*shape)
    rows = []
    for threads in (1, 2):
        # ONNX Runtime not spinning; make_runner ignores the option for ExecuTorch.
        runners = [make_runner(a.path, threads=threads, spinning=False) for a in arts]
        pte_ms, ort_ms = interleaved_medians([lambda rn=rn: rn.run([x]) for rn in runners], args.rounds)
        rows.append([threads, f"{pte_ms:.2f}", f"{ort_ms:.2f}", f"{pte_ms / ort_ms:.2f}",
                     f"{gflop / pte_ms * 1e3:.0f}", f"{gflop / ort_ms * 1e3:.0f}"])
    print_table(["threads", "pte ms", "ort ms", "pte/ort", "pte GFLOP/s", "ort GFLOP/s"], rows)


if __name__ == "__main__":
    main()
