"""Benchmarks for edgeml.kernels: selective scan and linear attention.

CPU part (always): the chunked plain-aten form (the CPU kernel and export decomposition) against
the sequential loop and the quadratic form, side by side in one run, at MobileMamba-like shapes
(b = 1, d = 224..544, n = 1, grouped B/C with g = 2 as in its bidirectional scan) and vision
linear-attention shapes (b = 1, h = 4, k = v = 32); then the .pte latency of the decomposed op
(torch.export -> decomposition_table() -> XNNPACK -> ExecuTorch runtime) with node counts.

GPU part (only when torch.cuda.is_available()): Triton kernels against the PyTorch chunked form
and, when fla-core is installed, flash-linear-attention's chunk kernels, at vision shapes
(batch 64, h 4..8, t 196..4096, k = v = 32..64) and LM shapes, with each time also as a fraction
of the roofline bound max(FLOPs / peak_flops, min_bytes / peak_bandwidth) / time.

Timing: variants of one row are timed round-robin (one call of each per round) and the median
per variant is reported, so that ratios come from the same noise; this machine is shared.

    .venv/bin/python benchmarks/kernels.py [--threads 1] [--reps 7] [--skip-pte] [--gpu-only]
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from edgeml.kernels import (
    decomposition_table,
    linear_attention,
    linear_attention_chunked,
    linear_attention_naive,
    linear_attention_quadratic,
    selective_scan,
    selective_scan_chunked,
    selective_scan_naive,
    selective_scan_quadratic,
)
from edgeml.kernels.selective_scan import _discretize
from edgeml.profile.host import cpu_name

LENGTHS = (64, 256, 1024, 4096)
QUADRATIC_MAX_BYTES = 256 * 2**20  # the l x l tensors; above this the quadratic form is skipped


def machine_description() -> str:
    cpu = cpu_name()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return (
        f"{platform.node()} | {cpu} | {os.cpu_count()} logical CPUs | torch {torch.__version__} | "
        f"{torch.get_num_threads()} intra-op thread(s) | GPU: {gpu} | python {platform.python_version()}"
    )


def time_round_robin(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per variant; one call of each variant per round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:9.3f}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n## {title}")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


# --------------------------------------------------------------------------- inputs
def scan_inputs(d: int, l: int, n: int = 1, groups: int = 2, b: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return dict(
        u=torch.randn(b, d, l, generator=g),
        delta=torch.randn(b, d, l, generator=g) - 2.0,
        A=-torch.exp(torch.randn(d, n, generator=g)),
        B=torch.randn(b, groups, n, l, generator=g),
        C=torch.randn(b, groups, n, l, generator=g),
        D=torch.randn(d, generator=g),
        delta_bias=torch.randn(d, generator=g) * 0.1,
    )


def attention_inputs(b: int, h: int, t: int, dk: int, dv: int, device: str = "cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    q = torch.rand(b, h, t, dk, generator=g).to(device, dtype)
    k = torch.rand(b, h, t, dk, generator=g).to(device, dtype)
    v = torch.randn(b, h, t, dv, generator=g).to(device, dtype)
    log_decay = (-0.05 * torch.rand(b, h, t, generator=g)).to(device)
    return q, k, v, log_decay


# --------------------------------------------------------------------------- CPU: forms
def _shared_work(u, delta, A, B, C, D=None, delta_bias=None):
    """What every form computes before its scan: softplus(delta + bias), delta * A, delta * B * u
    and exp(delta * A). loop / shared bounds the loop/chunked ratio any such form can reach."""
    log_decay, _ = _discretize(u, delta, A, B, delta_bias, True)
    return torch.exp(log_decay)


def bench_selective_scan_cpu(lengths: tuple[int, ...], widths: tuple[int, ...], reps: int) -> None:
    rows = []
    for d in widths:
        for l in lengths:
            x = scan_inputs(d, l)
            fns = {
                "loop": lambda x=x: selective_scan_naive(**x, delta_softplus=True),
                "chunked": lambda x=x: selective_scan_chunked(**x, delta_softplus=True),
                "shared": lambda x=x: _shared_work(**x),
            }
            quad_bytes = d * l * l * 4
            if quad_bytes <= QUADRATIC_MAX_BYTES:
                fns["quadratic"] = lambda x=x: selective_scan_quadratic(**x, delta_softplus=True)
            t = time_round_robin(fns, reps)
            err = _rel_rms(
                selective_scan_chunked(**x, delta_softplus=True), selective_scan_naive(**x, delta_softplus=True)
            )
            rows.append([
                str(d), str(l), fmt_ms(t["loop"]), fmt_ms(t["chunked"]), fmt_ms(t.get("quadratic")),
                f"{t['loop'] / t['chunked']:7.1f}x", fmt_ms(t["shared"]), f"{t['loop'] / t['shared']:7.1f}x",
                "-" if "quadratic" not in t else f"{t['quadratic'] / t['chunked']:7.1f}x",
                f"{err:.1e}",
            ])
    print_table(
        "selective_scan, CPU, b=1, n=1, grouped B/C (g=2), delta_softplus; median ms "
        f"(quadratic skipped when its l x l tensor > {QUADRATIC_MAX_BYTES >> 20} MiB)",
        ["d", "l", "loop ms", "chunked ms", "quadratic ms", "loop/chunked", "shared ms", "loop/shared",
         "quad/chunked", "rel_rms"],
        rows,
    )


def bench_linear_attention_cpu(lengths: tuple[int, ...], reps: int) -> None:
    rows = []
    b, h, dk, dv = 1, 4, 32, 32
    for t_len in lengths:
        q, k, v, g = attention_inputs(b, h, t_len, dk, dv)
        kw = dict(causal=True, log_decay=g, scale=dk**-0.5)
        a = (q, k, v)
        fns = {
            "loop": lambda a=a, kw=kw: linear_attention_naive(*a, **kw),
            "chunked": lambda a=a, kw=kw: linear_attention_chunked(*a, **kw),
            "noncausal": lambda a=a: linear_attention_chunked(*a, scale=dk**-0.5),
        }
        if b * h * t_len * t_len * 4 <= QUADRATIC_MAX_BYTES:
            fns["quadratic"] = lambda a=a, kw=kw: linear_attention_quadratic(*a, **kw)
        tm = time_round_robin(fns, reps)
        err = _rel_rms(linear_attention_chunked(q, k, v, **kw), linear_attention_naive(q, k, v, **kw))
        rows.append([
            str(t_len), fmt_ms(tm["loop"]), fmt_ms(tm["chunked"]), fmt_ms(tm.get("quadratic")),
            fmt_ms(tm["noncausal"]), f"{tm['loop'] / tm['chunked']:7.1f}x",
            "-" if "quadratic" not in tm else f"{tm['quadratic'] / tm['chunked']:7.1f}x", f"{err:.1e}",
        ])
    print_table(
        f"linear_attention causal with per-token decay, CPU, b={b} h={h} k=v={dk}; median ms "
        "(noncausal = normalized non-causal chunked form)",
        ["t", "loop ms", "chunked ms", "quadratic ms", "noncausal ms", "loop/chunked", "quad/chunked", "rel_rms"],
        rows,
    )


def _rel_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()).item()


# --------------------------------------------------------------------------- CPU: .pte
class _ScanOnly(nn.Module):
    def __init__(self, x: dict[str, torch.Tensor]):
        super().__init__()
        self.A, self.D, self.delta_bias = (nn.Parameter(x[k]) for k in ("A", "D", "delta_bias"))

    def forward(self, u, delta, B, C):
        return selective_scan(u, delta, self.A, B, C, self.D, None, self.delta_bias, True)


class _AttentionOnly(nn.Module):
    def forward(self, q, k, v, log_decay):
        return linear_attention(q, k, v, causal=True, log_decay=log_decay, scale=32**-0.5)


def bench_pte(lengths: tuple[int, ...], reps: int, d: int) -> None:
    """Each op exported as ``edgeml export`` does it (decomposition table, constants folded,
    XNNPACK); the selective scan in both chunked forms, ``matmul`` (the decomposition) and
    ``tree`` (the eager CPU form, the decomposition before the matmul form replaced it)."""
    import functools

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    from edgeml.export import fold_constants

    runtime = Runtime.get()
    rows = []
    for op, form in (("selective_scan", "matmul"), ("selective_scan", "tree"), ("linear_attention", "")):
        table = decomposition_table()
        if form:
            table[torch.ops.edgeml.selective_scan.default] = functools.partial(
                selective_scan_chunked, for_export=True, form=form)
        for l in lengths:
            if op == "selective_scan":
                x = scan_inputs(d, l)
                module = _ScanOnly(x).eval()
                args = (x["u"], x["delta"], x["B"], x["C"])
            else:
                q, k, v, g = attention_inputs(1, 4, l, 32, 32)
                module, args = _AttentionOnly().eval(), (q, k, v, g)
            ep = fold_constants(torch.export.export(module, args).run_decompositions(table))
            aten_nodes = sum(1 for n in ep.graph.nodes if n.op == "call_function")
            start = time.perf_counter()
            edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
            edge_nodes = edge.exported_program().graph.nodes
            delegates = sum(1 for n in edge_nodes if "executorch_call_delegate" in str(n.target))
            portable = sum(
                1 for n in edge_nodes
                if n.op == "call_function" and "executorch_call_delegate" not in str(n.target)
                and str(n.target) != "<built-in function getitem>"
            )
            buffer = edge.to_executorch().buffer
            lower_s = time.perf_counter() - start
            method = runtime.load_program(buffer).load_method("forward")
            with torch.no_grad():
                ref = module(*args)
            out = method.execute(list(args))[0]
            tm = time_round_robin(
                {"pte": lambda m=method, a=args: m.execute(list(a)), "eager": lambda m=module, a=args: m(*a)},
                reps,
            )
            rows.append([
                f"{op} {form}".strip(), str(l), str(aten_nodes), f"{delegates}+{portable}", fmt_ms(tm["pte"]),
                fmt_ms(tm["eager"]),
                f"{_rel_rms(out, ref):.1e}", f"{lower_s:5.1f}",
            ])
    print_table(
        f"decomposed op as .pte (XNNPACK + portable, constants folded), ExecuTorch runtime, median ms; selective_scan "
        f"d={d} n=1 g=2, linear_attention causal b=1 h=4 k=v=32",
        ["op", "l", "aten nodes", "delegates+portable ops", ".pte ms", "eager chunked ms", "rel_rms", "lower s"],
        rows,
    )


# --------------------------------------------------------------------------- GPU
PEAKS = {  # dense bf16 FLOP/s and HBM bytes/s from the vendors' datasheets (SXM parts)
    "H100": (989.4e12, 3.35e12),
    "H200": (989.4e12, 4.8e12),
    "A100": (312e12, 2.039e12),
}


def _peaks() -> tuple[float, float, str]:
    name = torch.cuda.get_device_name()
    for key, (flops, bw) in PEAKS.items():
        if key in name:
            return flops, bw, key
    return 989.4e12, 3.35e12, f"unknown ({name}); H100 SXM peaks assumed"


def bench_gpu(reps: int) -> None:
    import triton.testing

    from edgeml.kernels._triton_linear_attention import linear_attention_triton
    from edgeml.kernels._triton_selective_scan import selective_scan_triton

    try:
        from fla.ops.simple_gla import chunk_simple_gla
    except ImportError:
        chunk_simple_gla = None
    peak_flops, peak_bw, which = _peaks()
    print(f"\nGPU peaks used for the roofline: {which}: {peak_flops / 1e12:.1f} TFLOP/s, {peak_bw / 1e12:.2f} TB/s")

    def bench(fn):
        return triton.testing.do_bench(fn, warmup=10, rep=max(reps * 10, 50)) * 1e-3

    rows = []
    shapes = [(64, h, t, dkv) for h in (4, 8) for t in (196, 1024, 4096) for dkv in (32, 64)]
    shapes += [(1, 32, 4096, 128), (4, 32, 4096, 128)]  # LM shapes
    for dtype in (torch.bfloat16, torch.float32):
        for b, h, t, dkv in shapes:
            q, k, v, g = attention_inputs(b, h, t, dkv, dkv, device="cuda", dtype=dtype)
            kw = dict(causal=True, log_decay=g, scale=dkv**-0.5)
            a = (q, k, v)
            times = {
                "triton": bench(lambda a=a, kw=kw: linear_attention_triton(*a, **kw)),
                "torch chunked": bench(lambda a=a, kw=kw: linear_attention_chunked(*a, **kw)),
            }
            if chunk_simple_gla is not None:
                # fla-core takes (B, T, H, K) and g as a per-token natural-log decay (B, T, H).
                qt, kt, vt, gt = (x.transpose(1, 2).contiguous() for x in (q, k, v, g))
                times["fla chunk_simple_gla"] = bench(
                    lambda qt=qt, kt=kt, vt=vt, gt=gt, s=dkv**-0.5: chunk_simple_gla(q=qt, k=kt, v=vt, g=gt, scale=s)
                )
            es = q.element_size()
            flops = b * h * t * (2 * 64 * (dkv + dkv) + 4 * dkv * dkv)  # chunk 64, full tiles
            min_bytes = b * h * t * (es * (3 * dkv + dkv) + 4)  # q, k, v, o once; fp32 decay
            bound = max(flops / peak_flops, min_bytes / peak_bw)
            for name, sec in times.items():
                rows.append([str(dtype).split(".")[1], f"{b}x{h}x{t}x{dkv}", name, fmt_ms(sec), f"{bound / sec:6.1%}"])
    print_table("linear_attention causal+decay, GPU, median ms and fraction of roofline",
                ["dtype", "b x h x t x k=v", "impl", "ms", "of roofline"], rows)

    rows = []
    for d in (224, 544):
        for l in (1024, 4096, 16384):
            x = {k: val.cuda() for k, val in scan_inputs(d, l, b=64).items()}
            times = {
                "triton": bench(lambda x=x: selective_scan_triton(**x, delta_softplus=True)),
                "torch chunked": bench(lambda x=x: selective_scan_chunked(**x, delta_softplus=True)),
            }
            min_bytes = 64 * d * l * 4 * 3 + 64 * 2 * 2 * l * 4  # u, delta, out; B, C
            flops = 64 * d * l * 12
            bound = max(flops / peak_flops, min_bytes / peak_bw)
            for name, sec in times.items():
                rows.append([f"64x{d}x{l}", name, fmt_ms(sec), f"{bound / sec:6.1%}"])
    print_table("selective_scan fp32, GPU, b=64 n=1 g=2, median ms and fraction of roofline",
                ["b x d x l", "impl", "ms", "of roofline"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--widths", type=int, nargs="+", default=[224, 544], help="scan channels d")
    parser.add_argument("--pte-d", type=int, default=544, help="channels of the .pte selective scan")
    parser.add_argument("--skip-pte", action="store_true")
    parser.add_argument("--gpu-only", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lengths = tuple(args.lengths)

    print("command:", shlex.join([os.path.relpath(sys.executable), *sys.argv]))
    print("machine:", machine_description())
    print("date:", time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    # Shared machine: the load average says how much else was running (2 vCPUs here).
    print("load average (1, 5, 15 min) at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if not args.gpu_only:
        with torch.no_grad():
            bench_selective_scan_cpu(lengths, tuple(args.widths), args.reps)
            bench_linear_attention_cpu(lengths, args.reps)
            if not args.skip_pte:
                bench_pte(lengths, args.reps, args.pte_d)
    print("load average (1, 5, 15 min) at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if torch.cuda.is_available():
        bench_gpu(args.reps)
    else:
        print("\nGPU part not run: torch.cuda.is_available() is False on this machine.")


if __name__ == "__main__":
    main()
