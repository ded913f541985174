"""Parity of an artifact with its PyTorch reference on real images.

The reference is rebuilt from the manifest (model name, kwargs, and the weights it was exported
from: the same checkpoint file, checked by sha256, or the same random-init seed). Each image
runs through both; the report gives per-output SQNR / cosine / max abs error / top-1 agreement
over all images together, plus per-image SQNR so a single bad image is not averaged away.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgeml.errors import ArtifactError, CheckpointError, InputShapeError, UsageError
from edgeml.images import Preprocessing, load_image, sample_images
from edgeml.manifest import Manifest, sha256_file
from edgeml.models._registry import ModelConfig
from edgeml.runtime.metrics import compare, sqnr_db
from edgeml.runtime.runners import Runner, make_runner, open_artifact

DEFAULT_MIN_SQNR = {"none": 60.0, "int8": 25.0}


def _as_list(y) -> list[torch.Tensor]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


@torch.no_grad()
def measure_parity(
    reference: nn.Module | Callable,
    runner: Runner,
    images: Sequence[Path],
    pre: Preprocessing,
    config: ModelConfig,
    *,
    batch: int = 1,
    on_image: Callable[[], None] | None = None,
) -> dict:
    """Run every image through both; a batch-``batch`` program gets images ``batch`` at a time
    (the last batch is filled by cycling through the images, and the repeats are not scored)."""
    refs: list[list[torch.Tensor]] = []
    outs: list[list[torch.Tensor]] = []
    per_image = []
    paths = list(images)
    for start in range(0, len(paths), batch):
        chunk = [paths[(start + i) % len(paths)] for i in range(batch)]
        real = min(batch, len(paths) - start)
        x = torch.cat([pre(load_image(p)) for p in chunk])
        runner.check_inputs([x])
        r = [t.float()[:real] for t in _as_list(reference(x))]
        o = [t.float()[:real] for t in runner.run([x])]
        if len(r) != len(o):
            raise ArtifactError(f"artifact returns {len(o)} outputs, the reference {len(r)}")
        for i in range(real):
            refs.append([t[i:i + 1] for t in r])
            outs.append([t[i:i + 1] for t in o])
            per_image.append({"image": chunk[i].name,
                              "sqnr_db": [_round(sqnr_db(a[i], b[i])) for a, b in zip(r, o)]})
            if on_image:
                on_image()
    names = [config.output] if len(refs[0]) == 1 else [f"{config.output}_{i}" for i in range(len(refs[0]))]
    outputs = {}
    for k, name in enumerate(names):
        ref = torch.cat([r[k] for r in refs])
        out = torch.cat([o[k] for o in outs])
        m = compare(ref, out, logits=config.output == "logits")
        image_sqnr = [sqnr_db(r[k], o[k]) for r, o in zip(refs, outs)]
        m["image_sqnr_db"] = {"min": min(image_sqnr), "p5": _percentile(image_sqnr, 5),
                              "median": statistics.median(image_sqnr)}
        outputs[name] = {key: _round(v) if isinstance(v, float) else {a: _round(b) for a, b in v.items()}
                         for key, v in m.items()}
    worst = min(min(o["sqnr_db"], o["image_sqnr_db"]["min"]) for o in outputs.values())
    return {"reference": "eager (PyTorch, CPU)", "runtime": _runtime_name(runner),
            "images": [p.name for p in paths], "outputs": outputs, "per_image": per_image,
            "worst_sqnr_db": _round(worst)}


def _percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _round(v: float) -> float:
    return v if v in (float("inf"), float("-inf")) else round(float(v), 6)


def _runtime_name(runner: Runner) -> str:
    return "ExecuTorch (Python runtime, XNNPACK)" if runner.format == "pte" else "ONNX Runtime (CPU EP)"


def reference_from_manifest(manifest: Manifest) -> nn.Module:
    """Rebuild the exact eager model an artifact was exported from."""
    from edgeml.models import create_model

    model = manifest.model
    weights = model.get("weights", {})
    kwargs = model.get("kwargs", {})
    source = weights.get("source")
    if source == "random-init":
        return create_model(model["name"], seed=int(weights.get("seed", 0)), **kwargs)
    if source == "checkpoint":
        path = Path(weights["path"])
        if not path.is_file():
            raise CheckpointError(f"the checkpoint this artifact was exported from, {path}, is gone; "
                                  "pass --checkpoint to verify against another copy")
        if sha256_file(path) != weights.get("sha256"):
            raise CheckpointError(f"{path} changed since export (sha256 differs); pass --checkpoint explicitly")
        return create_model(model["name"], checkpoint=path, **kwargs)
    raise UsageError("this artifact was exported from an in-memory state_dict; pass --checkpoint to verify it")


@dataclass
class VerifyReport:
    artifact: Path
    parity: dict
    threshold_db: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = self.parity["worst_sqnr_db"] >= self.threshold_db


def verify_artifact(
    artifact: str | Path,
    *,
    images: str | Path | None = None,
    min_sqnr: float | None = None,
    checkpoint: str | Path | None = None,
    resolution: int | None = None,
    on_image: Callable[[], None] | None = None,
) -> VerifyReport:
    from edgeml.images import list_images
    from edgeml.models import create_model

    opened = open_artifact(artifact)
    manifest = opened.manifest
    config = ModelConfig(**{**manifest.model["config"], "mean": tuple(manifest.model["config"]["mean"]),
                            "std": tuple(manifest.model["config"]["std"]),
                            "formats": tuple(manifest.model["config"]["formats"])})
    if checkpoint is not None:
        reference = create_model(manifest.model["name"], checkpoint=checkpoint, **manifest.model.get("kwargs", {}))
    else:
        reference = reference_from_manifest(manifest)
    if manifest.preprocessing is None:
        raise ArtifactError("manifest has no preprocessing: cannot feed images to this artifact")
    pre = Preprocessing.from_dict(manifest.preprocessing)
    paths = list_images(images) if images is not None else sample_images()
    runner = make_runner(opened)
    batch = int(manifest.inputs[0].shape[0]) if manifest.inputs else 1
    if resolution is not None:
        dyn = manifest.inputs[0].dynamic if manifest.inputs else {}
        if resolution != pre.crop and not ("2" in dyn and dyn["2"][0] <= resolution <= dyn["2"][1]):
            raise InputShapeError(f"{opened.path.name} takes {pre.crop}x{pre.crop} inputs"
                                  + (f" or {dyn['2'][0]}..{dyn['2'][1]}" if "2" in dyn else "")
                                  + f", not {resolution}")
        pre = Preprocessing.from_dict({**manifest.preprocessing, "crop": resolution,
                                       "resize_shorter": resolution})
    parity = measure_parity(reference, runner, paths, pre, config, batch=batch, on_image=on_image)
    scheme = manifest.quantization.get("scheme", "none")
    threshold = DEFAULT_MIN_SQNR.get(scheme, 25.0) if min_sqnr is None else float(min_sqnr)
    return VerifyReport(opened.path, parity, threshold)


def format_report(report: VerifyReport) -> str:
    lines = [f"{report.artifact.name}: {report.parity['runtime']} vs {report.parity['reference']}, "
             f"{len(report.parity['images'])} images"]
    header = f"  {'output':<14}{'SQNR dB':>9}{'min/img':>9}{'cosine':>11}{'max abs':>11}{'top-1':>8}"
    lines.append(header)
    for name, m in report.parity["outputs"].items():
        top1 = f"{m['top1_agreement'] * 100:.0f}%" if "top1_agreement" in m else "n/a"
        lines.append(f"  {name:<14}{m['sqnr_db']:>9.1f}{m['image_sqnr_db']['min']:>9.1f}{m['cosine']:>11.6f}"
                     f"{m['max_abs_error']:>11.3g}{top1:>8}")
    verdict = "PASS" if report.passed else "FAIL"
    lines.append(f"  {verdict}: worst SQNR {report.parity['worst_sqnr_db']:.1f} dB "
                 f"({'>=' if report.passed else '<'} {report.threshold_db:g} dB threshold)")
    return "\n".join(lines)
