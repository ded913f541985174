"""The core subcommands: list, export, verify, profile."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from edgeml.errors import UsageError

EXPORT_STAGES = ("build", "passes", "capture", "quantize", "lower", "parity", "write")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the model zoo")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("export", help="export a zoo model to .pte or .onnx with a manifest")
    p.add_argument("model", help="zoo model name (see `edgeml list`)")
    p.add_argument("--format", choices=("pte", "onnx"), default="pte")
    p.add_argument("--quantize", choices=("none", "int8"), default="none")
    p.add_argument("--resolution", type=int, help="square input size (default: the model's)")
    p.add_argument("--checkpoint", type=Path, help="official checkpoint (state_dict) to load")
    p.add_argument("--calibration", type=Path, help="folder of images for int8 calibration")
    p.add_argument("--calibration-images", type=int, help="use at most this many calibration images")
    p.add_argument("--output-dir", type=Path, default=Path("artifacts"))
    p.add_argument("--seed", type=int, default=0, help="random-init seed when no checkpoint is given")
    p.add_argument("--verify", action="store_true",
                   help="fail (and write nothing) if parity is below --min-sqnr")
    p.add_argument("--min-sqnr", type=float, help="threshold in dB (default 60 fp32, 25 int8)")
    p.add_argument("--images", type=Path, help="images for the parity check (default: samples)")
    p.add_argument("--profile", action="store_true", help="profile the artifact on this machine after export")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="compare an artifact with its PyTorch reference on real images")
    p.add_argument("artifact", type=Path)
    p.add_argument("--images", type=Path, help="folder of images (default: samples)")
    p.add_argument("--min-sqnr", type=float, help="threshold in dB (default 60 fp32, 25 int8)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint for the reference (default: the manifest's)")
    p.add_argument("--json", type=Path, help="write the full report here")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("profile", help="latency, per-operator time and memory of an artifact")
    p.add_argument("artifact", type=Path)
    p.add_argument("--device", default="host", help="host (default)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")
    p.add_argument("--per-op", action="store_true", help="also print the per-operator table")
    p.add_argument("--json", type=Path, help="write the full report here")
    p.set_defaults(func=cmd_profile)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # Third-party deprecation chatter is not the user's business; real errors still raise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import logging

        levels = {name: logging.getLogger(name).level for name in ("torch", "torchao", "executorch", "root")}
        for name in levels:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def _bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=None,
                bar_format="{desc}: {bar} {n_fmt}/{total_fmt} [{elapsed}]")


def cmd_list(args: argparse.Namespace) -> int:
    from edgeml.models import get_model_config, list_models
    from edgeml.models._registry import count_model_params

    rows = []
    with _quiet():
        for name in list_models():
            cfg = get_model_config(name)
            params = count_model_params(name)
            rows.append({"name": name, "params": params, "resolution": cfg.resolution,
                         "output": cfg.output, "formats": list(cfg.formats)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<30}{'params':>10}{'resolution':>12}  {'output':<12}formats")
    for r in rows:
        formats = ", ".join(r["formats"]) or "not yet verified"
        print(f"{r['name']:<30}{r['params'] / 1e6:>9.2f}M{r['resolution']:>12}  {r['output']:<12}{formats}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgeml.export import export

    if args.min_sqnr is not None and not args.verify:
        raise UsageError("--min-sqnr takes effect with --verify")
    stages = [s for s in EXPORT_STAGES if s != "quantize" or args.quantize != "none"]
    with _quiet(), _bar(len(stages), f"export {args.model}") as bar:
        def progress(stage: str) -> None:
            bar.set_description(f"export {args.model}: {stage}")
            bar.update(1)

        threshold = None
        if args.verify:
            from edgeml.export import DEFAULT_MIN_SQNR

            threshold = args.min_sqnr if args.min_sqnr is not None else DEFAULT_MIN_SQNR[args.quantize]
        artifact = export(
            args.model, format=args.format, quantize=args.quantize, resolution=args.resolution,
            checkpoint=args.checkpoint, calibration=args.calibration,
            calibration_images=args.calibration_images, output_dir=args.output_dir,
            verify_images=args.images, min_sqnr=threshold, seed=args.seed, progress=progress,
        )
    m = artifact.manifest
    print(f"wrote {artifact.path} ({artifact.size_bytes / 1e6:.2f} MB) and {artifact.manifest_path.name} "
          f"in {artifact.export_seconds:.1f} s")
    d = m.delegation
    if "compute_share" in d:
        print(f"  XNNPACK: {d['delegated_nodes']}/{d['total_nodes']} nodes delegated, compute ops "
              f"{d['compute_delegated']}/{d['compute_total']}")
    for name, o in m.parity["outputs"].items():
        top1 = f", top-1 agreement {o['top1_agreement'] * 100:.0f}%" if "top1_agreement" in o else ""
        print(f"  parity ({name}, {len(m.parity['images'])} images): SQNR {o['sqnr_db']:.1f} dB "
              f"(worst image {o['image_sqnr_db']['min']:.1f}), cosine {o['cosine']:.6f}{top1}")
    if args.verify:
        print(f"  verify: PASS (>= {m.parity['threshold_db']:g} dB)")
    if args.profile:
        return _profile(artifact.path, runs=50, warmup=5, threads=None, per_op=True, json_path=None)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from edgeml.runtime.verify import format_report, verify_artifact

    with _quiet():
        from edgeml.images import list_images, sample_images

        n = len(list_images(args.images)) if args.images else len(sample_images())
        with _bar(n, f"verify {args.artifact.name}") as bar:
            report = verify_artifact(args.artifact, images=args.images, min_sqnr=args.min_sqnr,
                                     checkpoint=args.checkpoint, on_image=lambda: bar.update(1))
    print(format_report(report))
    if args.json:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(args.json, {"artifact": str(report.artifact), "threshold_db": report.threshold_db,
                                      "passed": report.passed, **report.parity})
    return 0 if report.passed else 3


def cmd_profile(args: argparse.Namespace) -> int:
    if args.device != "host":
        raise UsageError(f"--device {args.device}: only 'host' is supported in this build")
    return _profile(args.artifact, runs=args.runs, warmup=args.warmup, threads=args.threads,
                    per_op=True, json_path=args.json, show_ops=args.per_op)


def _profile(path: Path, *, runs: int, warmup: int, threads: int | None, per_op: bool,
             json_path: Path | None, show_ops: bool = True) -> int:
    from edgeml.profile.host import format_report, profile_artifact

    with _quiet(), _bar(runs + warmup, f"profile {Path(path).name}") as bar:
        report = profile_artifact(path, runs=runs, warmup=warmup, threads=threads, per_op=per_op,
                                  on_run=lambda: bar.update(1))
    print(format_report(report, top=15 if show_ops else 0))
    if json_path:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(json_path, report.to_dict())
    return 0
