"""Quantization per zoo model: fp32 / int8 / mixed precision (and, on request, int8-dynamic, 8da4w), as .pte.

For each model every variant is exported with ``edgeml.export.export`` (so size, SQNR and top-1
agreement are export's own parity figures: the program run in ExecuTorch against eager fp32
PyTorch on the six sample images) and then the .pte programs of one model run alternately on the
same input with the same thread count; latency is the median, and the ratio is against fp32 of
the same model in the same run. "mixed" is ``export(..., min_sqnr=--target, fp32_fallback=True)``:
the most sensitive layers kept in fp32 until the runtime's SQNR reaches the target; the table says
how many of the quantized layers that kept in fp32. Run:

    python benchmarks/quantization.py [--models a,b] [--variants none,int8,mixed] [--target 35]
                                      [--mixed-scheme int8|int8-dynamic] [--resolution N] [--threads 1]
                                      [--rounds 20] [--out DIR] [--reuse]

``--reuse`` takes a variant's program from ``--out DIR/<variant>/`` where an earlier run left it
(same model, size, scheme, mixed target and random-init seed; sha256 checked) instead of exporting
it again: a FastViTHD mixed-precision search takes half an hour here, the timing a minute. The
table then prints the export time the artifact's manifest recorded, and says which were reused.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, interleaved_medians, machine, print_table  # noqa: E402

VARIANTS = ("none", "int8", "mixed", "int8-dynamic", "8da4w")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mobilenetv2_ulsam,mobilenetv1_ulsam", help="comma-separated zoo names")
    ap.add_argument("--variants", default="none,int8,mixed", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--target", type=float, default=35.0, help="mixed precision's SQNR target in dB")
    ap.add_argument("--mixed-scheme", choices=("int8", "int8-dynamic"), default="int8",
                    help="the scheme mixed precision starts from (int8-dynamic for linear-heavy models)")
    ap.add_argument("--resolution", type=int, help="input size (default: each model's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="use matching programs an earlier run left in --out")
    args = ap.parse_args()
    if args.reuse and args.out is None:
        ap.error("--reuse needs --out DIR (where the earlier run kept its programs)")
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)

    import edgeml
    from edgeml.export import export
    from edgeml.runtime.runners import make_runner

    variants = args.variants.split(",")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-quant-"))
    print(f"command: {command()}\nmachine: {machine()}\nthreads: {args.threads}, rounds: {args.rounds} "
          f"(medians; a model's programs timed alternately), mixed target: {args.target:g} dB\n"
          f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    for name in args.models.split(","):
        arts, reused, notes = {}, [], []
        for variant in variants:
            kwargs = {"quantize": args.mixed_scheme, "min_sqnr": args.target, "fp32_fallback": True} \
                if variant == "mixed" else {"quantize": variant}
            plain = arts.get(args.mixed_scheme)
            if variant == "mixed" and plain is not None and plain.manifest.parity["worst_sqnr_db"] >= args.target:
                # The search would keep nothing in fp32 and build the same program (MobileMamba B4:
                # the same sha256); the row is the plain program's, with 0 layers kept.
                arts[variant] = plain
                notes.append(f"mixed: {args.mixed_scheme} already measured "
                             f"{plain.manifest.parity['worst_sqnr_db']:.1f} dB >= {args.target:g} dB, so mixed "
                             f"precision keeps no layer in fp32: the row is the {args.mixed_scheme} program")
                continue
            if args.reuse:
                found = reusable_artifact(out / variant, name, kwargs["quantize"], args.resolution,
                                          args.target if variant == "mixed" else None)
                if found is not None:
                    arts[variant] = found
                    reused.append(f"{variant} ({found.path}, exported {found.manifest.created})")
                    continue
            t = time.perf_counter()
            try:
                arts[variant] = export(name, format="pte", resolution=args.resolution,
                                       output_dir=out / variant, **kwargs)
            except edgeml.EdgeMLError as e:
                print(f"{name} {variant}: {e}", file=sys.stderr, flush=True)
                continue
            arts[variant].export_seconds = time.perf_counter() - t
        runners = {v: make_runner(a.path, threads=args.threads, spinning=False) for v, a in arts.items()}
        x = [torch.randn(*next(iter(arts.values())).manifest.inputs[0].shape)] if arts else []
        medians = dict(zip(runners, interleaved_medians([lambda r=r, x=x: r.run(x) for r in runners.values()],
                                                        args.rounds))) if runners else {}
        rows = []
        for variant, art in arts.items():
            m = art.manifest
            q, logits = m.quantization, next(iter(m.parity["outputs"].values()))
            layers = q.get("layers")
            kept = f"{len(q['fp32_layers'])}/{layers['total']}" if layers else "-"
            label = f"mixed {'' if args.mixed_scheme == 'int8' else args.mixed_scheme + ' '}({args.target:g} dB)"
            top1 = f"{logits['top1_agreement'] * 100:.0f}%" if "top1_agreement" in logits else "n/a"
            ratio = f"{medians[variant] / medians['none']:.2f}" if "none" in medians else "-"
            rows.append([variant if variant != "mixed" else label, art.path.name,
                         f"{art.size_bytes / 1e6:.2f}", f"{logits['sqnr_db']:.1f} ({m.parity['worst_sqnr_db']:.1f})",
                         top1, f"{medians[variant]:.2f}", ratio, kept,
                         "-" if math.isnan(art.export_seconds) else f"{art.export_seconds:.0f}"])
        res = next(iter(arts.values())).manifest.preprocessing["crop"] if arts else "-"
        print(f"{name} at {res} px")
        print_table(["variant", "artifact", "MB", "SQNR dB (worst img)", "top-1 vs fp32", "pte ms", "vs fp32",
                     "fp32 layers", "export s"], rows)
        for variant, art in arts.items():
            mixed = art.manifest.quantization.get("mixed_precision")
            if mixed and mixed["fp32_layers"]:
                names = ", ".join(f"{k['name']} ({k['sqnr_db_alone']:.1f})" for k in mixed["fp32_layers"][:8])
                more = f" and {len(mixed['fp32_layers']) - 8} more" if len(mixed["fp32_layers"]) > 8 else ""
                print(f"  {variant}: every layer int8 measured {mixed['all_layers_quantized_db']:.1f} dB; kept in fp32 "
                      f"(most sensitive first, dB with only that layer int8): {names}{more}; "
                      f"{len(mixed['attempts'])} program(s) built to confirm")
        for note in notes:
            print(f"  {note}")
        if reused:
            print(f"  reused from an earlier run (export s as its manifest recorded it): {'; '.join(reused)}")
        print(f"  load average after {name}: {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n", flush=True)


def reusable_artifact(folder: Path, name: str, quantize: str, resolution: int | None, target_db: float | None):
    """The program an earlier run left in ``folder`` for this model, size and scheme (mixed precision
    with ``target_db`` when that is given, none otherwise), seed 0, intact (sha256); else None."""
    from edgeml.errors import EdgeMLError
    from edgeml.export import Artifact, artifact_name
    from edgeml.models import get_model_config
    from edgeml.runtime.runners import open_artifact

    default = get_model_config(name).resolution
    try:  # missing, no manifest, or bytes that do not match it
        m = open_artifact(folder / artifact_name(name, "pte", quantize, resolution or default, default)).manifest
    except EdgeMLError:
        return None
    mixed = m.quantization.get("mixed_precision")
    same = (m.model_name == name and m.model.get("weights") == {"source": "random-init", "seed": 0}
            and m.quantization.get("scheme") == quantize
            and (mixed["target_db"] == target_db if mixed
                 else target_db is None and not m.quantization.get("fp32_layers")))
    if same and quantize != "none" and "norm_statistics" not in m.quantization and _has_layernorms(name):
        same = False  # quantized before LayerNorm statistics stayed fp32: not the same program
    path = folder / m.artifact["file"]
    return Artifact(path, m, m.artifact.get("export_seconds", math.nan)) if same else None


def _has_layernorms(name: str) -> bool:
    """Whether edgeml's LayerNorm pass rewrites any norm of ``name`` (random init, no export)."""
    from edgeml.backends.xnnpack.passes.layernorm import count_lowerable_layernorms
    from edgeml.models import create_model

    return count_lowerable_layernorms(create_model(name)) > 0


if __name__ == "__main__":
    main()
