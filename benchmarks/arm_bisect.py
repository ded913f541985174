"""Which op makes an int8 program compute differently on ARM than on x86 (edgeml.aarch64.probes).

The model is exported as for ``edgeml export --quantize int8``, but lowered with every activation
quantization point as an extra output; that probed program runs on the host and on each emulated
ARM profile on the same images. The table lists the *origins*: quantization points whose int8
values differ between ARM and x86 while every point they read from agrees, with the module and the
ops between. A summary line gives how many points differ in all (origins and what inherits them).

Needs ``edgeml setup-aarch64``. Run it niced:

    nice -n 19 .venv/bin/python benchmarks/arm_bisect.py efficientmod_xs [--cpu cortex-a76] [--images DIR]
        [--keep-fp32 NAME,...] [--markdown FILE]
"""
from __future__ import annotations

import argparse
import datetime
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, machine, print_table  # noqa: E402

from edgeml.aarch64 import resolve_cpu  # noqa: E402
from edgeml.aarch64.probes import compare_probes, probed_program, run_on_host, summarize_ops  # noqa: E402
from edgeml.aarch64.run import kernel_features, run_calls  # noqa: E402
from edgeml.aarch64.setup import find_env  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="zoo name or anything `edgeml export` takes")
    ap.add_argument("--scheme", default="int8")
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--keep-fp32", default="", help="comma-separated layers kept in fp32, as for export")
    ap.add_argument("--cpu", action="append", help="qemu CPU profile (repeatable; default cortex-a76)")
    ap.add_argument("--images", type=Path, help="folder of images (default: the samples)")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    ap.add_argument("--work", type=Path, help="keep the probed program here and reuse it on the next run")
    args = ap.parse_args()

    started = datetime.datetime.now(datetime.timezone.utc)
    env = find_env()
    cpus = [resolve_cpu(c) for c in (args.cpu or ["cortex-a76"])]
    keep = [k for k in args.keep_fp32.split(",") if k]
    t = time.monotonic()
    saved = args.work / f"{args.model}_{args.scheme}.probed.pkl" if args.work else None
    if saved is not None and saved.is_file():
        with open(saved, "rb") as f:
            pp = pickle.load(f)
        if args.images is not None:
            pp = pp.with_images(args.images)
    else:
        pp = probed_program(args.model, scheme=args.scheme, resolution=args.resolution, images=args.images,
                            keep_fp32=keep)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            with open(saved, "wb") as f:
                pickle.dump(pp, f)
    print(f"probed program: {len(pp.probes)} quantization points, {len(pp.data) / 1e6:.1f} MB, "
          f"{time.monotonic() - t:.0f} s", flush=True)
    host = run_on_host(pp.data, pp.inputs)
    lines = [f"command: {command()}", f"machine: {machine()}", f"date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
             f"images: {', '.join(pp.images)}; {len(pp.probes)} quantization points probed"]
    for line in lines:
        print(line)
    headers = ["CPU", "point", "module", "ops since the points it reads", "int8 values differing", "max steps"]
    rows, summary = [], []
    with tempfile.TemporaryDirectory(prefix="edgeml-bisect-") as tmp:
        path = Path(tmp) / "probed.pte"
        path.write_bytes(pp.data)
        for cpu in cpus:
            t = time.monotonic()
            outs, info = run_calls(env, path, "pte", pp.inputs, cpu)
            result = compare_probes(pp.probes, pp.n_outputs, host, outs)
            differing = [d for d in result.diffs if not d.identical]
            summary.append(f"{cpu} ({' '.join(kernel_features(info))}): {len(differing)} of {len(result.diffs)} "
                           f"points differ, {len(result.origins)} origins; model outputs "
                           f"{'identical' if result.outputs_identical else 'differ'}; "
                           f"{time.monotonic() - t:.0f} s")
            print(summary[-1], flush=True)
            for d in result.origins:
                module = d.probe.module or ("(input)" if not d.probe.upstream else "(top level)")
                rows.append([cpu, d.probe.node, module, summarize_ops(d.probe.ops),
                             f"{d.differing} / {d.total} ({100 * d.differing / d.total:.3f}%)", d.max_steps])
    print()
    print_table(headers, rows)
    if args.markdown:
        md = [f"- {line}" for line in lines + summary] + [""]
        md.append("| " + " | ".join(headers) + " |")
        md.append("|" + "|".join("---" for _ in headers) + "|")
        md += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        args.markdown.write_text("\n".join(md) + "\n")
        print(f"\nwrote {args.markdown}")
    return 0


if __name__ == "__main__":
    from edgeml.errors import EdgeMLError

    try:
        sys.exit(main())
    except EdgeMLError as e:  # a user error: one line, as the CLI prints it
        print(f"arm_bisect: {e}", file=sys.stderr)
        sys.exit(2)
