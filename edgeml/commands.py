"""The core subcommands: list, export, verify, profile."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeml.errors import UsageError

# The profile command's phone apps (edgeml.profile.adb.APPS; listed here so --help imports no torch).
APPS_CHOICES = ("minibench", "edgeml-demo")
EXPORT_STAGES = ("build", "passes", "capture", "quantize", "lower", "parity", "write")
MODEL_HELP = ("a zoo name (`edgeml list`), FILE.py:CALLABLE, package.module:CALLABLE or a Hugging Face model "
              "directory")


def register(sub: argparse._SubParsersAction) -> None:
    from edgeml.quantize.schemes import default_min_sqnr_text

    p = sub.add_parser("list", help="list the model zoo")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("export", help="compile a model to .pte or .onnx with a manifest",
                       description="Compile a model into an on-device program and its manifest. MODEL is a zoo "
                       "name (`edgeml list`), FILE.py:CALLABLE or package.module:CALLABLE (CALLABLE returns an "
                       "nn.Module; --model-arg passes it keyword arguments), or a Hugging Face model directory "
                       "(config.json and weights, as save_pretrained writes them; needs the hf extra).")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--format", choices=("pte", "onnx"), default="pte")
    _add_quantize_options(p)
    add_model_options(p)
    p.add_argument("--output-dir", type=Path, default=Path("artifacts"))
    p.add_argument("--verify", action="store_true",
                   help="fail (and write nothing) if parity is below the threshold: --min-sqnr, or the "
                   f"scheme's default ({default_min_sqnr_text()}); without it an artifact below the default is "
                   "written with a warning")
    p.add_argument("--min-sqnr", type=float, metavar="DB",
                   help="implies --verify with DB as the threshold. With a quantized scheme it is a target: "
                   "the most sensitive layers (see `edgeml quantize-report`) are kept in fp32, fewest first, "
                   "until the SQNR measured in the edge runtime reaches DB; if that cannot be done the export "
                   "fails, says why and writes nothing")
    p.add_argument("--max-fp32-layers", type=int, metavar="N",
                   help="with --min-sqnr: keep at most N layers in fp32 (0: plain int8, only verify)")
    p.add_argument("--keep-fp32", type=_layer_names, metavar="LAYER[,LAYER]",
                   help="leave these quantized layers in fp32 (names as `edgeml quantize-report` prints them; "
                   "* and ? match within a dotted part, e.g. 'layers.*.blocks.*:add*'); @FILE reads them "
                   "from a file, or from an earlier export's manifest (.json): the layers it kept in fp32")
    p.add_argument("--images", type=Path, help="images for the parity check (default: samples)")
    p.add_argument("--profile", action="store_true", help="profile the artifact on this machine after export")
    p.add_argument("--tiles-per-batch", "--batch", dest="tiles_per_batch", type=int, metavar="N",
                   help="batch of the exported program (default: 1, or --input-shape's N; a tile encoder runs N "
                   "tiles at a time, BlueLM uses 4)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="make the batch dimension dynamic, 1..--tiles-per-batch")
    p.add_argument("--dynamic-resolution", metavar="MIN:MAX", type=_resolution_range,
                   help="one program for every height/width in MIN..MAX that is a multiple of the stride")
    p.add_argument("--bundle", type=int, default=0, metavar="N",
                   help="also write <stem>.bpte: an ExecuTorch bundled program with N sample inputs and the "
                   "reference outputs (check it with `edgeml verify X.bpte`)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="compare an artifact with its PyTorch reference on real images",
                       description="Compare an artifact (.pte/.onnx run here, or the outputs a phone wrote "
                       "with --device-outputs) with its PyTorch reference on real images; `verify X.bpte` runs "
                       "the checks bundled in an ExecuTorch bundled program.")
    p.add_argument("artifact", type=Path, help=".pte, .onnx, or .bpte (from export --bundle)")
    p.add_argument("--images", type=Path, help="folder of images (default: samples)")
    p.add_argument("--reference", choices=("eager", "triton"), default="eager",
                   help="eager: edgeml ops in their chunked plain-aten form on the CPU; triton: edgeml ops on "
                   "their Triton kernels (CUDA if present, else the Triton interpreter on the CPU)")
    p.add_argument("--batch", type=int, metavar="N",
                   help="images per reference batch (default: the program's batch)")
    p.add_argument("--device-outputs", type=Path, metavar="FILE",
                   help="compare the outputs a phone wrote (edgeml device-outputs file) instead of running "
                   "the artifact here; its images are looked up by name in --images")
    p.add_argument("--min-sqnr", type=float, metavar="DB",
                   help=f"threshold in dB (default: by the artifact's scheme, {default_min_sqnr_text()})")
    p.add_argument("--checkpoint", type=Path, help="checkpoint for the reference (default: the manifest's)")
    p.add_argument("--resolution", type=int, action="append",
                   help="input size to verify at (repeatable; for dynamic-resolution artifacts)")
    p.add_argument("--json", type=Path, help="write the full report here")
    from edgeml.aarch64.cli import CPU_HELP

    p.add_argument("--on", choices=("host", "aarch64"), default="host",
                   help="where the program runs: here, or also on emulated ARM CPUs under qemu-user, compared "
                   "with the reference and with the run here (build that once with `edgeml setup-aarch64`)")
    p.add_argument("--cpu", action="append", metavar="PROFILE", help=CPU_HELP)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("predict", help="run an artifact on images and print the top classes by name",
                       description="Run a classifier artifact here on images and print its most probable classes, "
                       "named by the manifest's labels (--labels at export, a Hugging Face id2label, or the zoo's "
                       "ImageNet classes).")
    p.add_argument("artifact", type=Path, help=".pte or .onnx exported by edgeml")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--json", type=Path, help="write the predictions here")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("encode", help="run the dynamic-resolution tile front end on an image (host)")
    p.add_argument("image", type=Path)
    p.add_argument("--artifact", type=Path, required=True, help="an exported tile encoder (.pte or .onnx)")
    p.add_argument("--policy", choices=("relaxed", "llava_next", "internvl"), help="default: the manifest's")
    p.add_argument("--max-grid", type=int, help="largest grid side (default: the manifest's)")
    p.add_argument("--threads", type=int)
    p.add_argument("--tokens", type=Path, help="save the tokens as .npy")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("profile", help="latency, per-operator time and memory of artifacts, here or on a phone",
                       description="Profile an artifact on this machine or on an Android phone over adb; "
                       "compare several side by side (--compare); sweep input resolutions (--resolutions).")
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    p.add_argument("--device", default="host",
                   help="host (default), adb (the one attached phone) or adb:SERIAL")
    p.add_argument("--runs", type=int, default=50, help="timed runs (on a phone: per launch)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs before timing (on a phone: per launch)")
    p.add_argument("--threads", type=int, help="runtime threads (default: the runtime's)")
    p.add_argument("--per-op", action="store_true", help="also print the per-operator table")
    p.add_argument("--json", type=Path, help="write the full report here")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="per-operator bars and latency histogram (with --compare: histograms and ratios; "
                   "with --resolutions: latency vs resolution)")
    p.add_argument("--compare", action="store_true",
                   help="run several artifacts in interleaved rounds and print latency ratios against the first")
    p.add_argument("--resolutions", metavar="R1,R2,...",
                   help="profile a dynamic-resolution artifact at each square input size (host only)")
    phone = p.add_argument_group("phone (--device adb)")
    phone.add_argument("--app", choices=sorted(APPS_CHOICES), default="minibench",
                       help="benchmark app on the phone: ExecuTorch's org.pytorch.minibench (default) or "
                       "edgeml's org.edgeml.demo")
    phone.add_argument("--runner", type=Path, metavar="PATH",
                       help="an executor_runner binary built for the phone, used instead of an app")
    phone.add_argument("--repeat", type=int, help="launches per artifact (default 1; 3 with --compare)")
    phone.add_argument("--cooldown", type=float, default=0.0, metavar="S",
                       help="seconds of pause before each launch but the first (also between --resolutions)")
    phone.add_argument("--timeout", type=float, default=600.0, metavar="S",
                       help="seconds to wait for one launch's results (default 600)")
    phone.add_argument("--device-dir", default="/data/local/tmp/edgeml",
                       help="folder on the phone the artifacts are pushed to")
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
    from edgeml.zoo_status import load_status, model_status, verified_summary

    status = load_status()  # what real exports measured (edgeml/data/zoo_status.json)
    rows = []
    with _quiet():
        for name in list_models():
            cfg = get_model_config(name)
            params = count_model_params(name)
            results = model_status(name, status)
            rows.append({"name": name, "params": params, "resolution": cfg.resolution, "output": cfg.output,
                         "formats": sorted({kind.split()[0] for kind, r in results.items() if r["verified"]}),
                         "measured": {kind: {k: r.get(k) for k in ("sqnr_db", "threshold_db", "verified", "fp32_layers",
                                                                    "weights", "measured", "error")}
                                      for kind, r in results.items()}})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<30}{'params':>10}{'resolution':>12}  {'output':<12}exported and verified (worst-image SQNR)")
    for r in rows:
        summary = verified_summary(model_status(r["name"], status))
        print(f"{r['name']:<30}{r['params'] / 1e6:>9.2f}M{r['resolution']:>12}  {r['output']:<12}{summary}")
    print("\nSQNR: the artifact in its runtime against eager PyTorch with the same weights, worst of the sample "
          "images; '< T': below the scheme's default threshold T dB; 'not measured': no export recorded "
          "(benchmarks/zoo_status.py records them).")
    return 0


def add_model_options(p: argparse.ArgumentParser) -> None:
    """What edgeml needs to know about a model it did not define (export and quantize-report)."""
    g = p.add_argument_group("model", "what edgeml cannot read from a model it did not define; a zoo entry or a "
                             "Hugging Face directory answers most of it")
    g.add_argument("--model-arg", action="append", default=[], type=_model_arg, metavar="KEY=VALUE",
                   help="keyword argument for the model's callable (repeatable; VALUE is read as a Python literal, "
                   "else as a string)")
    g.add_argument("--input-shape", type=_input_shape, metavar="NxCxHxW",
                   help="the input the model takes, e.g. 1x3x224x224 (required for a callable)")
    g.add_argument("--resolution", type=int, help="square input size (default: the model's)")
    g.add_argument("--checkpoint", type=Path, help="weights to load (a state_dict; official keys for zoo models)")
    g.add_argument("--seed", type=int, default=0,
                   help="random-init seed when no checkpoint is given (a callable is called under it)")
    g.add_argument("--mean", type=_three_floats, metavar="R,G,B", help="input normalization mean (0..1 scale)")
    g.add_argument("--std", type=_three_floats, metavar="R,G,B", help="input normalization std (0..1 scale)")
    g.add_argument("--resize", type=int, metavar="N",
                   help="resize the shorter side to N, then center-crop to the input size (default: crop the "
                   "largest center square)")
    g.add_argument("--labels", type=Path, metavar="FILE", help="class names, one per line (recorded in the manifest)")
    g.add_argument("--num-classes", type=int, metavar="N",
                   help="a zoo model with an N-class head (a fine-tuned checkpoint); its manifest then names no "
                   "ImageNet labels")
    g.add_argument("--name", help="the artifact's model name (default: from MODEL)")


def model_options_from_args(args: argparse.Namespace):
    from edgeml.models.source import ModelOptions

    return ModelOptions(kwargs=dict(args.model_arg), checkpoint=args.checkpoint, seed=args.seed,
                        input_shape=args.input_shape, resolution=args.resolution, mean=args.mean, std=args.std,
                        resize=args.resize, labels=args.labels, num_classes=args.num_classes, name=args.name)


def _model_arg(text: str) -> tuple[str, Any]:
    import ast

    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python name, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return key.strip(), parsed


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxCxHxW, e.g. 1x3x224x224, got {text!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected four sizes >= 1 (NxCxHxW), got {text!r}")
    return shape


def _three_floats(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {text!r}")
    return values  # type: ignore[return-value]


def _add_quantize_options(p: argparse.ArgumentParser) -> None:
    from edgeml.quantize.schemes import SCHEME_INFO

    p.add_argument("--quantize", choices=tuple(SCHEME_INFO), default="none",
                   help="int8: static, calibrated (.pte: XNNPACKQuantizer; .onnx: QDQ); int8-dynamic: "
                   "activations quantized at run time; 8da4w: Linear layers with int4 weight groups and int8 "
                   "dynamic activations (.pte only); fp16: weights and activations in half precision, fp32 "
                   "input and outputs")
    add_calibration_options(p)


def add_calibration_options(p: argparse.ArgumentParser) -> None:
    """--calibration, --calibration-images, --observer, --group-size (export and quantize-report)."""
    from edgeml.quantize.schemes import GROUP_SIZES, OBSERVERS

    p.add_argument("--calibration", type=Path, help="folder of images for int8 calibration (default: samples)")
    p.add_argument("--calibration-images", type=int, metavar="N", help="use at most N calibration images")
    p.add_argument("--observer", help="int8 calibration observer: " + "; ".join(
        f".{fmt}: {', '.join(obs)} (default {obs[0]})" for fmt, obs in OBSERVERS.items()))
    p.add_argument("--group-size", type=int, default=32, choices=GROUP_SIZES,
                   help="8da4w: in-features per int4 weight group; each Linear's in-features must be a multiple")


def layer_progress(description: str) -> Callable[[int, int], None]:
    """An ``on_layer(done, total)`` callback that draws a progress bar, opened on the first call."""
    state: dict[str, Any] = {}

    def on_layer(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = _bar(total, description)
        state["bar"].update(1)
        if done == total:
            state["bar"].close()

    return on_layer


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _layer_names(text: str) -> list[str]:
    """``--keep-fp32``: names, comma-separated; an item ``@FILE`` reads names from FILE (comma- or
    line-separated, ``#`` comment lines), or takes the fp32 layers an earlier export's manifest (``.json``) recorded:
    search once at a low resolution, reuse the list at a high one."""
    names: list[str] = []
    for item in _names(text):
        if not item.startswith("@"):
            names.append(item)
            continue
        path = Path(item[1:])
        try:
            content = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise argparse.ArgumentTypeError(f"cannot read layer names from {path}: {e}") from None
        if path.suffix.lower() == ".json":
            from edgeml.errors import ArtifactError
            from edgeml.manifest import Manifest

            try:
                listed = Manifest.from_dict(json.loads(content)).quantization["fp32_layers"]
            except ArtifactError as e:  # a manifest of another format version
                raise argparse.ArgumentTypeError(f"{path}: {e}") from None
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                raise argparse.ArgumentTypeError(f"{path} is not an edgeml manifest with quantization.fp32_layers"
                                                 ) from None
            names.extend(str(n) for n in listed)
        else:
            names.extend(n for line in content.splitlines() if not line.lstrip().startswith("#")
                         for n in _names(line))
    return list(dict.fromkeys(names))


def cmd_export(args: argparse.Namespace) -> int:
    from edgeml.export import export
    from edgeml.progress import StageProgress

    verify = args.verify or args.min_sqnr is not None
    from edgeml.quantize.schemes import get_scheme

    fallback = args.min_sqnr is not None and get_scheme(args.quantize).layerwise and args.max_fp32_layers != 0
    if args.max_fp32_layers is not None and (args.min_sqnr is None or args.max_fp32_layers < 0):
        raise UsageError("--max-fp32-layers N takes N >= 0 and goes with --min-sqnr")
    if args.resolution is not None and args.resolution < 1:
        raise UsageError(f"--resolution must be a positive input size, not {args.resolution}")
    stages = [s for s in EXPORT_STAGES if s != "quantize" or args.quantize != "none"]
    options = model_options_from_args(args)
    with _quiet(), StageProgress(f"export {args.model}", total=len(stages)) as progress:
        on_layer = layer_progress("sensitivity, one layer at a time")
        threshold = None
        if verify:
            from edgeml.quantize.schemes import default_min_sqnr

            threshold = args.min_sqnr if args.min_sqnr is not None else default_min_sqnr(args.quantize)
        artifact = export(
            args.model, format=args.format, quantize=args.quantize, model_options=options,
            calibration=args.calibration, calibration_images=args.calibration_images, output_dir=args.output_dir,
            verify_images=args.images, min_sqnr=threshold, progress=progress,
            batch=args.tiles_per_batch, dynamic_batch=args.dynamic_batch,
            dynamic_resolution=args.dynamic_resolution, bundle=args.bundle,
            observer=args.observer, group_size=args.group_size, fp32_fallback=fallback,
            max_fp32_layers=args.max_fp32_layers, keep_fp32=args.keep_fp32 or (), on_layer=on_layer,
        )
    m = artifact.manifest
    print(f"wrote {artifact.path} ({artifact.size_bytes / 1e6:.2f} MB) and {artifact.manifest_path.name} "
          f"in {artifact.export_seconds:.1f} s")
    if "bundle" in m.artifact:
        print(f"  bundled program: {m.artifact['bundle']['file']} ({m.artifact['bundle']['cases']} sample inputs "
              "with reference outputs)")
    d = m.delegation
    if "compute_share" in d:
        print(f"  XNNPACK: {d['delegated_nodes']}/{d['total_nodes']} nodes delegated, compute ops "
              f"{d['compute_delegated']}/{d['compute_total']}")
    for name, o in m.parity["outputs"].items():
        top1 = f", top-1 agreement {o['top1_agreement'] * 100:.0f}%" if "top1_agreement" in o else ""
        print(f"  parity ({name}, {len(m.parity['images'])} images): SQNR {o['sqnr_db']:.1f} dB "
              f"(worst image {o['image_sqnr_db']['min']:.1f}), cosine {o['cosine']:.6f}{top1}")
    _print_quantization(m.quantization)
    if verify:
        print(f"  verify: PASS (>= {m.parity['threshold_db']:g} dB)")
    for note in artifact.notes:
        print(f"  note: {note}")
    for warning in artifact.warnings:
        print(f"edgeml export: warning: {warning}", file=sys.stderr)
    if args.profile:
        return _profile(artifact.path, runs=50, warmup=5, threads=None, per_op=True, json_path=None)
    return 0


def _print_quantization(q: dict) -> None:
    layers = q.get("layers")
    if not layers:
        return
    mixed = q.get("mixed_precision")
    fp32 = q.get("fp32_layers") or []
    line = f"  quantization: {q['scheme']}, {layers['quantized']}/{layers['total']} layers quantized"
    if fp32:
        shown = ", ".join(fp32[:5]) + (f" and {len(fp32) - 5} more" if len(fp32) > 5 else "")
        line += f"; in fp32: {shown}"
    print(line)
    if mixed and fp32:
        if "given_fp32_layers" in mixed:
            start = f"the {mixed['given_fp32_layers']} given layers in fp32: {mixed['given_layers_fp32_db']:.1f} dB"
        else:
            start = f"every layer quantized: {mixed['all_layers_quantized_db']:.1f} dB"
        print(f"  mixed precision: {mixed['measured_db']:.1f} dB measured >= {mixed['target_db']:g} dB target "
              f"({start})")


def cmd_verify(args: argparse.Namespace) -> int:
    if args.on == "aarch64":
        from edgeml.aarch64.cli import cmd_verify_aarch64

        return cmd_verify_aarch64(args)
    if args.cpu:
        raise UsageError("--cpu picks an emulated ARM CPU: use it with --on aarch64")
    if args.artifact.suffix.lower() == ".bpte":
        return _verify_bundle(args)
    from edgeml.runtime.verify import format_report, verify_artifact

    with _quiet():
        if args.reference == "triton":
            _triton_reference_mode()
        from edgeml.images import list_images, sample_images

        if args.device_outputs is not None:
            from edgeml.runtime.device_outputs import read_device_outputs

            n = len(read_device_outputs(args.device_outputs).images)
        else:
            n = len(list_images(args.images)) if args.images else len(sample_images())
        reports = []
        for resolution in args.resolution or [None]:
            with _bar(n, f"verify {args.artifact.name}" + (f" at {resolution}" if resolution else "")) as bar:
                reports.append(verify_artifact(args.artifact, images=args.images, min_sqnr=args.min_sqnr,
                                               checkpoint=args.checkpoint, resolution=resolution,
                                               reference=args.reference, batch=args.batch,
                                               device_outputs=args.device_outputs,
                                               on_image=lambda: bar.update(1)))
    for resolution, report in zip(args.resolution or [None], reports):
        if resolution:
            print(f"at {resolution}x{resolution}:")
        print(format_report(report))
    report = min(reports, key=lambda r: r.parity["worst_sqnr_db"] - r.threshold_db)
    if args.json:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(args.json, {"artifact": str(report.artifact), "threshold_db": report.threshold_db,
                                      "passed": report.passed, **report.parity})
    return 0 if report.passed else 3


def cmd_predict(args: argparse.Namespace) -> int:
    from edgeml.runtime.predict import format_predictions, predict

    with _quiet():
        predictions = predict(args.artifact, args.images, top=args.top)
    print(format_predictions(predictions))
    if args.json:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(args.json, [p.to_dict() for p in predictions])
    return 0


def _triton_reference_mode() -> None:
    """Without a GPU the Triton kernels run in Triton's interpreter, which is chosen when triton is
    first imported: set TRITON_INTERPRET=1 before that happens."""
    import os

    import torch

    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return
    if "triton" in sys.modules:
        raise UsageError("no GPU here and Triton is already loaded in compile mode: "
                         "run with TRITON_INTERPRET=1 set in the environment")
    os.environ["TRITON_INTERPRET"] = "1"


def _verify_bundle(args: argparse.Namespace) -> int:
    from edgeml.runtime.bundled import check_bundle, format_bundle_report

    if args.device_outputs is not None or args.reference != "eager" or args.images or args.resolution:
        raise UsageError("a .bpte carries its own inputs and reference outputs: verify X.bpte takes no "
                         "--images, --reference, --device-outputs or --resolution")
    with _quiet():
        report = check_bundle(args.artifact)
    print(format_bundle_report(report))
    if args.json:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(args.json, report.to_dict())
    return 0 if report.passed else 3


def _resolution_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX, e.g. 256:1024, got {text!r}") from None
    return lo, hi


def cmd_encode(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import torch

    from edgeml.dynres import encode_image
    from edgeml.errors import ArtifactError
    from edgeml.runtime.runners import make_runner, open_artifact

    with _quiet():
        opened = open_artifact(args.artifact)
        pre = opened.manifest.preprocessing or {}
        tiling = pre.get("tiling")
        if not tiling:
            raise ArtifactError(f"{args.artifact.name} is not a tile encoder (its manifest has no tiling)")
        runner = make_runner(opened, threads=args.threads)
        batch = int(opened.manifest.inputs[0].shape[0])
        dynamic = bool(tiling.get("dynamic_batch"))

        def run(chunk):
            # A fixed-batch program gets the remainder padded with copies of its last tile;
            # only the real tiles' tokens are kept (BlueLM pads 9 tiles as 4 + 4 + 1 -> 4).
            n = chunk.shape[0]
            if not dynamic and n < batch:
                chunk = torch.cat([chunk, chunk[-1:].expand(batch - n, *chunk.shape[1:])])
            return runner.run([chunk])[0][:n]

        t0 = time.perf_counter()
        result = encode_image(args.image, run, tile=int(tiling["tile"]), policy=args.policy or tiling["policy"],
                              alpha=float(tiling.get("alpha", 0.1)),
                              grids=_grids(args.max_grid or int(tiling.get("max_grid", 3))),
                              batch=batch, mean=pre["mean"], std=pre["std"],
                              thumbnail=bool(tiling.get("thumbnail", True)))
        total = time.perf_counter() - t0
    m, n = result.grid
    print(f"{args.image.name}: grid {m}x{n} -> {result.num_tiles} tiles ({m * n} + thumbnail), "
          f"batches {result.batches}, tokens {tuple(result.tokens.shape)}")
    for i, (size, sec) in enumerate(zip(result.batches, result.latencies_s)):
        print(f"  batch {i}: {size} tiles in {sec * 1e3:.1f} ms")
    print(f"  front end total {total * 1e3:.1f} ms ({args.artifact.name})")
    if args.tokens:
        np.save(args.tokens, result.tokens.numpy())
    return 0


def _grids(max_grid: int) -> list[tuple[int, int]]:
    return [(m, n) for m in range(1, max_grid + 1) for n in range(1, max_grid + 1)]


def cmd_profile(args: argparse.Namespace) -> int:
    paths = list(args.artifacts)
    on_phone = args.device != "host"
    if len(paths) > 1 and not args.compare:
        raise UsageError("several artifacts: add --compare to time them side by side")
    if args.compare and len(paths) < 2:
        raise UsageError("--compare needs at least two artifacts")
    if args.resolutions and (args.compare or on_phone):
        raise UsageError("--resolutions runs on the host, for one artifact (not with --compare or --device adb)")
    if not on_phone:
        given = [flag for flag, v in (("--runner", args.runner), ("--repeat", args.repeat),
                                      ("--app", args.app != "minibench"), ("--timeout", args.timeout != 600.0),
                                      ("--device-dir", args.device_dir != "/data/local/tmp/edgeml")) if v]
        if args.cooldown and not args.resolutions:
            given.append("--cooldown")
        if given:
            raise UsageError(f"{', '.join(given)}: phone options; add --device adb")
    elif args.runner is not None and args.app != "minibench":
        raise UsageError("--app and --runner: choose one way to run the program on the phone")
    if args.runs < 1 or args.warmup < 0 or args.cooldown < 0 or (args.repeat is not None and args.repeat < 1):
        raise UsageError("--runs and --repeat must be >= 1, --warmup and --cooldown >= 0")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {args.plot}: the chart is a PNG; name it FILE.png")
    if on_phone:
        return _profile_phone(args, paths)
    if args.resolutions:
        return _profile_resolutions(args, paths[0])
    if args.compare:
        return _profile_compare_host(args, paths)
    return _profile(paths[0], runs=args.runs, warmup=args.warmup, threads=args.threads, per_op=True,
                    json_path=args.json, show_ops=args.per_op, plot_path=args.plot)


def _profile(path: Path, *, runs: int, warmup: int, threads: int | None, per_op: bool,
             json_path: Path | None, show_ops: bool = True, plot_path: Path | None = None) -> int:
    from edgeml.profile.host import format_report, profile_artifact

    with _quiet(), _bar(runs + warmup, f"profile {Path(path).name}") as bar:
        report = profile_artifact(path, runs=runs, warmup=warmup, threads=threads, per_op=per_op,
                                  on_run=lambda: bar.update(1))
    print(format_report(report, top=15 if show_ops else 0))
    _write_outputs(report.to_dict(), json_path, plot_path, lambda p: _plot("report", report, p))
    return 0


def _profile_compare_host(args: argparse.Namespace, paths: list[Path]) -> int:
    from edgeml.profile.compare import compare_on_host, format_comparison

    total = (args.runs + args.warmup) * len(paths)
    with _quiet(), _bar(total, f"compare {len(paths)} artifacts") as bar:
        comparison = compare_on_host(paths, runs=args.runs, warmup=args.warmup, threads=args.threads,
                                     on_run=lambda: bar.update(1))
    print(format_comparison(comparison))
    _write_outputs(comparison.to_dict(), args.json, args.plot,
                   lambda p: _plot("comparison", comparison, p))
    return 0


def _profile_resolutions(args: argparse.Namespace, path: Path) -> int:
    from edgeml.profile.resolution import format_sweep, parse_resolutions, sweep_resolutions

    resolutions = parse_resolutions(args.resolutions)
    total = (args.runs + args.warmup) * len(resolutions)
    with _quiet(), _bar(total, f"profile {path.name} at {len(resolutions)} resolutions") as bar:
        reports = sweep_resolutions(path, resolutions, runs=args.runs, warmup=args.warmup, threads=args.threads,
                                    cooldown_s=args.cooldown, on_run=lambda: bar.update(1))
    print(format_sweep(reports))
    _write_outputs({"artifact": path.name, "resolutions": resolutions, "reports": [r.to_dict() for r in reports]},
                   args.json, args.plot, lambda p: _plot("resolutions", reports, p))
    return 0


def _profile_phone(args: argparse.Namespace, paths: list[Path]) -> int:
    from edgeml.profile.adb import compare_on_device, parse_device, profile_on_device
    from edgeml.profile.compare import format_comparison
    from edgeml.profile.host import format_report

    serial = parse_device(args.device)
    repeat = args.repeat or (3 if args.compare else 1)
    kwargs = dict(serial=serial, runs=args.runs, warmup=args.warmup, threads=args.threads, app=args.app,
                  runner=args.runner, repeat=repeat, cooldown_s=args.cooldown, device_dir=args.device_dir,
                  timeout_s=args.timeout)
    with _quiet(), _bar(repeat * len(paths), f"profile on {args.device}") as bar:
        if args.compare:
            comparison = compare_on_device(paths, on_launch=lambda: bar.update(1), **kwargs)
        else:
            report = profile_on_device(paths, on_launch=lambda: bar.update(1), **kwargs)[0]
    if args.compare:
        print(format_comparison(comparison))
        _write_outputs(comparison.to_dict(), args.json, args.plot, lambda p: _plot("comparison", comparison, p))
    else:
        print(format_report(report))
        _write_outputs(report.to_dict(), args.json, args.plot, lambda p: _plot("report", report, p))
    return 0


def _plot(kind: str, result, path: Path) -> None:
    from edgeml.profile import plot

    if kind == "report":
        plot.plot_report(result, path)
    elif kind == "comparison":
        plot.plot_comparison(result.reports, result.ratios(), path)
    else:
        plot.plot_resolutions(result, path)


def _write_outputs(data: dict, json_path: Path | None, plot_path: Path | None, draw) -> None:
    if json_path:
        from edgeml.manifest import atomic_write_json

        atomic_write_json(json_path, data)
        print(f"wrote {json_path}")
    if plot_path:
        draw(plot_path)
        print(f"wrote {plot_path}")
