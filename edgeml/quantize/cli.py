"""``edgeml quantize-report``: per-layer quantization sensitivity and end-to-end error of a zoo model."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from edgeml.commands import MODEL_HELP, add_calibration_options, add_model_options
    from edgeml.quantize.schemes import SCHEME_INFO

    p = sub.add_parser(
        "quantize-report",
        help="quantize a model and rank its layers by the error each one alone introduces",
        description="Quantize NAME as `edgeml export` would, run the quantized program in the edge runtime "
        "against PyTorch (end-to-end SQNR and top-1 agreement), then measure every quantized layer alone: "
        "the model output's SQNR with only that layer quantized (simulated with the same calibration). "
        "Layers are printed most damaging first; `edgeml export --min-sqnr` keeps the top of this list in fp32.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--format", choices=("pte", "onnx"), default="pte")
    p.add_argument("--quantize", dest="scheme", default="int8",
                   choices=[s for s, info in SCHEME_INFO.items() if info.layerwise], help="scheme (default int8)")
    add_calibration_options(p)
    p.add_argument("--images", type=Path, help="images the error is measured on (default: samples)")
    add_model_options(p)
    p.add_argument("--target", type=float, metavar="DB",
                   help="also list the layers to keep in fp32 to reach DB (simulated)")
    p.add_argument("--top", type=int, default=0, metavar="N", help="print only the N most damaging layers")
    p.add_argument("--json", type=Path, help="write the full report here")
    p.set_defaults(func=cmd_quantize_report)


def cmd_quantize_report(args: argparse.Namespace) -> int:
    from edgeml.commands import _quiet, layer_progress, model_options_from_args
    from edgeml.progress import StageProgress
    from edgeml.quantize.report import format_report, quantize_report

    stages = ("build", "passes", "quantize", "lower", "parity", "layers")
    with _quiet(), StageProgress(f"quantize-report {args.model}", total=len(stages)) as progress:
        on_layer = layer_progress("layers, one at a time")
        report = quantize_report(
            args.model, format=args.format, scheme=args.scheme, model_options=model_options_from_args(args),
            calibration=args.calibration, calibration_images=args.calibration_images,
            observer=args.observer, group_size=args.group_size, images=args.images,
            target_db=args.target, progress=progress, on_layer=on_layer,
        )
    print(format_report(report, top=args.top or None))
    if args.json:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(args.json, json.loads(json.dumps(report.to_dict())))
    return 0
