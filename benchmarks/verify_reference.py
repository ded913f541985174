"""Throughput of verify's references: images/s of the PyTorch reference forms.

Rows, timed round-robin in one run (one batch of each per round, median per row):

* ``eager cpu``: the model on the CPU, edgeml ops in their chunked plain-aten form (``--reference
  eager``);
* ``triton cuda`` (with a GPU): the model on CUDA, edgeml ops on their Triton kernels (``--reference
  triton``), and ``eager cuda``: the same model on CUDA with the edgeml ops replaced by their
  chunked plain-aten form (``edgeml.kernels.selective_scan_chunked`` / ``linear_attention_chunked``
  called directly), i.e. what PyTorch alone does on that GPU;
* ``triton interpret`` (no GPU, only with ``--interpret``; set TRITON_INTERPRET=1 yourself): the
  Triton kernels in the interpreter, which checks the kernels but says nothing about GPU speed.

    .venv/bin/python benchmarks/verify_reference.py [--model mobilemamba_t2] [--resolution 224]
        [--batch 32] [--rounds 5] [--interpret]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, interleaved_medians, machine, print_table  # noqa: E402

from edgeml import create_model  # noqa: E402
from edgeml.images import Preprocessing, load_image, sample_images  # noqa: E402
from edgeml.runtime.verify import Reference  # noqa: E402


@contextlib.contextmanager
def chunked_ops_on_cuda() -> Iterator[None]:
    """Route ``edgeml.kernels.selective_scan`` / ``linear_attention`` (which the models look up at
    call time) to the chunked plain-aten forms: PyTorch alone, on any device, no custom op."""
    import edgeml.kernels as k

    saved = k.selective_scan, k.linear_attention
    k.selective_scan, k.linear_attention = k.selective_scan_chunked, k.linear_attention_chunked
    try:
        yield
    finally:
        k.selective_scan, k.linear_attention = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilemamba_t2")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interpret", action="store_true", help="also time the Triton interpreter on the CPU")
    args = ap.parse_args()

    module = create_model(args.model, resolution=args.resolution)
    cfg = module.edgeml_config
    pre = Preprocessing.for_resolution(args.resolution, cfg.mean, cfg.std)
    images = sample_images()
    x = torch.cat([pre(load_image(images[i % len(images)])) for i in range(args.batch)])

    rows: list[tuple[str, object]] = [("eager cpu", Reference(create_model(args.model, resolution=args.resolution)))]
    if torch.cuda.is_available():
        rows.append(("triton cuda", Reference(create_model(args.model, resolution=args.resolution), "triton")))
        eager_cuda = Reference(create_model(args.model, resolution=args.resolution), "eager", device="cuda")
        rows.append(("eager cuda", eager_cuda))
    elif args.interpret:
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("--interpret needs TRITON_INTERPRET=1 in the environment")
        rows.append(("triton interpret", Reference(create_model(args.model, resolution=args.resolution), "triton")))

    def timed(name: str, ref: Reference):
        def run() -> None:
            ctx = chunked_ops_on_cuda() if name == "eager cuda" else contextlib.nullcontext()
            with ctx:
                ref(x)
            if ref.device.type == "cuda":
                torch.cuda.synchronize()
        return run

    fns = [timed(n, r) for n, r in rows]
    t0 = time.perf_counter()
    medians = interleaved_medians(fns, args.rounds, warmup=1)
    print(f"# {command()}\n# {machine()}\n# {args.model} at {args.resolution}, batch {args.batch}, "
          f"{args.rounds} rounds, {time.perf_counter() - t0:.0f} s")
    base = medians[0]
    print_table(["reference", "ms/batch (median)", "images/s", "vs eager cpu"],
                [(n, f"{m:.1f}", f"{args.batch * 1e3 / m:.1f}", f"{base / m:.2f}x")
                 for (n, _), m in zip(rows, medians)])


if __name__ == "__main__":
    main()
