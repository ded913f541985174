"""MobileMamba: every variant through the pipeline, and the chunked scan vs the loop.

Part 1, per variant and artifact (pte/onnx x fp32/int8; int8 keeps the most sensitive layers in
fp32 until the edge runtime measures >= 25 dB, as ``edgeml export --min-sqnr 25`` does, and the
count of such layers is printed): export wall time and the process's CPU time (on a shared
machine the CPU time is the better estimate of a quiet machine's wall time; the 1-minute load
average at the start of each export is printed next to it), size, parity (worst-image SQNR
measured by export in the edge runtime), and for .pte the XNNPACK share (nodes and compute ops)
and the ops left on portable kernels, and the .pte vs ONNX Runtime latency (the two programs
timed alternately). Then the node count of the graph that is lowered (captured + custom ops
decomposed) at the published resolution and at +128 pixels (more tokens at every stage, same
parity of every stage's size, so the Haar pad/crop branches are the same): equal counts mean the
graph does not grow with the token count.

Part 2, T2 with the chunked ``edgeml::selective_scan`` against the same weights built with
``scan="loop"`` (the original's per-token CPU fallback, which unrolls): export time, node count
of the exported graph, and .pte fp32 latency, the two programs timed alternately in one run.

    python benchmarks/mobilemamba.py [--variants t2,s6] [--quant none,int8] [--formats pte,onnx]
                                     [--skip-variants] [--skip-loop] [--threads 2] [--rounds 30]
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

VARIANTS = ("t2", "t4", "s6", "b1", "b2", "b4")


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def timed_export(name: str, fmt: str, quant: str, out: Path, **kwargs):
    from edgeml.export import export

    load = _load()
    wall, cpu = time.perf_counter(), time.process_time()
    art = export(name, format=fmt, quantize=quant, output_dir=out, **kwargs)
    return art, time.perf_counter() - wall, time.process_time() - cpu, load


def lowered_node_count(name: str, resolution: int, **model_kwargs) -> int:
    """Nodes of the graph handed to the lowering: export's passes, captured, custom ops decomposed."""
    import edgeml
    from edgeml.export import decompose_custom_ops, prepare_for_export

    model = edgeml.create_model(name, **model_kwargs)
    x = (torch.randn(1, 3, resolution, resolution),)
    ep = decompose_custom_ops(torch.export.export(prepare_for_export(model, x, format="pte"), x))
    return len(ep.graph.nodes)


def bench_variants(args, out: Path) -> None:
    import edgeml
    from edgeml.export import DEFAULT_MIN_SQNR
    from edgeml.models import get_model_config

    rows, nodes = [], []
    for v in args.variants:
        name = f"mobilemamba_{v}"
        for quant in args.quant:
            paths = {}
            for fmt in args.formats:
                # int8 as a user gets it past the verify threshold: the most sensitive layers are
                # kept in fp32 until the edge runtime measures >= 25 dB (edgeml.quantize.mixed).
                # --plain-int8: the fully quantized program, as `edgeml export --quantize int8` writes it.
                kw = {} if quant == "none" or args.plain_int8 else {"fp32_fallback": True,
                                                                    "min_sqnr": DEFAULT_MIN_SQNR[quant]}
                try:
                    art, wall, cpu, load = timed_export(name, fmt, quant, out, **kw)
                except edgeml.EdgeMLError as e:
                    rows.append([name, f"{fmt} {quant}", "-", "-", "-", "-", f"FAILED: {e}", "", "", "", "", ""])
                    continue
                paths[fmt] = art.path
                d, p, q = art.manifest.delegation, art.manifest.parity, art.manifest.quantization
                share = node_share = portable = ""
                if fmt == "pte":
                    share = f"{d['compute_share'] * 100:.0f}% of {d['compute_total']}"
                    node_share = f"{d['share'] * 100:.0f}% of {d['total_nodes']}"
                    portable = ", ".join(f"{k.removeprefix('aten_').removesuffix('_default')} x{n}"
                                         for k, n in sorted(d["portable_ops"].items())) or "none"
                fp32_layers = "" if quant == "none" else f"{len(q['fp32_layers'])} of {q['layers']['total']}"
                rows.append([name, art.path.name, f"{wall:.0f}", f"{cpu:.0f}", load,
                             f"{art.size_bytes / 1e6:.2f}", f"{p['worst_sqnr_db']:.1f}", fp32_layers, share,
                             node_share, "", portable])
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
            if len(paths) == 2:  # .pte vs ONNX Runtime, timed alternately in this run
                pte_ms, ort_ms = pte_vs_ort_ms(paths["pte"], paths["onnx"], args)
                rows[-2][10] = f"{pte_ms:.1f} / {ort_ms:.1f} = {pte_ms / ort_ms:.2f}"
        if not args.skip_nodes:
            r = get_model_config(name).resolution
            nodes.append([name, r, lowered_node_count(name, r), r + 128, lowered_node_count(name, r + 128)])
    print_table(["model", "artifact", "export s (wall)", "export s (CPU)", "load", "MB", "SQNR dB (worst img)",
                 "fp32 layers", "XNNPACK compute ops", "XNNPACK nodes", "pte / ORT ms (median)", "portable ops"],
                rows)
    if nodes:
        print()
        print_table(["model", "resolution", "lowered nodes", "resolution +128", "lowered nodes"], nodes)


def bench_loop(args, out: Path) -> None:
    from edgeml.runtime.runners import make_runner

    rows, runners = [], []
    for scan in ("op", "loop"):
        art, wall, cpu, load = timed_export("mobilemamba_t2", "pte", "none", out / scan,
                                            model_kwargs={"scan": scan})
        n = lowered_node_count("mobilemamba_t2", 192, scan=scan)
        d = art.manifest.delegation
        rows.append([scan, f"{wall:.0f}", f"{cpu:.0f}", load, n, d["total_nodes"],
                     f"{d['share'] * 100:.0f}%", f"{art.manifest.parity['worst_sqnr_db']:.1f}",
                     f"{art.size_bytes / 1e6:.2f}"])
        runners.append(make_runner(art.path, threads=args.threads, spinning=False))
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    x = [torch.randn(1, 3, 192, 192)]
    ms = interleaved_medians([lambda r=r: r.run(x) for r in runners], args.rounds)
    for row, m in zip(rows, ms):
        row += [f"{m:.2f}", f"{m / ms[0]:.2f}"]
    print_table(["T2 scan", "export s (wall)", "export s (CPU)", "load", "exported nodes", "edge nodes",
                 "XNNPACK nodes", "SQNR dB", "MB", "pte ms (median)", "vs chunked"], rows)


def pte_vs_ort_ms(pte: Path, onnx: Path, args) -> tuple[float, float]:
    """Median ms of the two programs run alternately on one input; ORT's threads do not spin
    (they would take the cores from the ExecuTorch run that follows)."""
    from edgeml.runtime.runners import make_runner

    runners = [make_runner(pte, threads=args.threads), make_runner(onnx, threads=args.threads, spinning=False)]
    x = [torch.randn(*runners[0].input_shapes[0])]
    pte_ms, ort_ms = interleaved_medians([lambda r=r: r.run(x) for r in runners], args.rounds)
    return pte_ms, ort_ms


def bench_latency_only(args) -> None:
    """.pte vs .onnx latency of artifacts already exported into ``args.latency_only``, in pairs."""
    rows = []
    for pte in sorted(args.latency_only.glob("mobilemamba_*.pte")):
        onnx = pte.with_name(pte.name.replace("_xnnpack_", "_ort_")).with_suffix(".onnx")
        if not onnx.exists():
            continue
        pte_ms, ort_ms = pte_vs_ort_ms(pte, onnx, args)
        rows.append([pte.name, onnx.name, f"{pte_ms:.1f}", f"{ort_ms:.1f}", f"{pte_ms / ort_ms:.2f}"])
        print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print_table(["pte", "onnx", "pte ms (median)", "ORT ms (median)", "pte / ORT"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--formats", default="pte,onnx")
    ap.add_argument("--quant", default="none,int8")
    ap.add_argument("--skip-variants", action="store_true")
    ap.add_argument("--skip-nodes", action="store_true", help="no node count at two resolutions")
    ap.add_argument("--skip-loop", action="store_true")
    ap.add_argument("--plain-int8", action="store_true",
                    help="int8 with every layer quantized (no --min-sqnr search for fp32 layers)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir)")
    ap.add_argument("--latency-only", type=Path, metavar="DIR",
                    help="only time the .pte/.onnx pairs already exported into DIR (no export)")
    args = ap.parse_args()
    args.variants = [v.removeprefix("mobilemamba_") for v in args.variants.split(",")]
    args.formats, args.quant = args.formats.split(","), args.quant.split(",")
    warnings.simplefilter("ignore")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-mobilemamba-"))
    print(f"command: {command()}\nmachine: {machine()}\nload average at start: {_load()}\n"
          f"threads: {args.threads}, rounds: {args.rounds} (medians; the two .pte timed alternately)\n",
          flush=True)
    if args.latency_only:
        bench_latency_only(args)
        return
    if not args.skip_variants:
        bench_variants(args, out)
        print(flush=True)
    if not args.skip_loop:
        bench_loop(args, out)


if __name__ == "__main__":
    main()
