"""Parity of an artifact with its PyTorch reference on real images.

The reference is rebuilt from the manifest (model name, kwargs, and the weights it was exported
from: the same checkpoint file, checked by sha256, or the same random-init seed). It runs in one
of two forms (``Reference``): ``eager``, with every edgeml custom op in its chunked plain-aten
form on the CPU, or ``triton``, with every edgeml custom op dispatched to its Triton kernel (on
CUDA when there is a GPU; on the CPU in the Triton interpreter, TRITON_INTERPRET=1).

Images stream through in batches: only running sums and per-image figures are kept, so a folder
of thousands of images needs no more memory than one batch. The report gives per-output SQNR /
cosine / max abs error / top-1 agreement over all images together, the distribution of per-image
SQNR and cosine (min / p5 / median), and the worst images by name, so a single bad image is not
averaged away. The edge side is either an artifact run here (``measure_parity``) or the outputs a
phone wrote for the same images (``compare_device_outputs``, edgeml.runtime.device_outputs).
"""
from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from edgeml.errors import ArtifactError, InputShapeError, UsageError
from edgeml.images import Preprocessing, load_image, sample_images
from edgeml.kernels import use_backend
from edgeml.manifest import Manifest
from edgeml.models._registry import ModelConfig
from edgeml.quantize.schemes import default_min_sqnr
from edgeml.runtime.device_outputs import DeviceOutputs
from edgeml.runtime.metrics import cosine, sqnr_db
from edgeml.runtime.runners import Runner, make_runner, open_artifact


def _as_list(y) -> list[torch.Tensor]:
    """A model's outputs as the flat list of tensors its program returns (``export.outputs``)."""
    from edgeml.export.outputs import output_tensors

    return output_tensors(y)


REFERENCE_KINDS = ("eager", "triton")
WORST_IMAGES = 5


class _EdgemlOpCounter(TorchDispatchMode):
    """Counts calls of ``torch.ops.edgeml.*`` (to report how much of a forward ran in the kernels)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if getattr(func, "namespace", "") == "edgeml":
            self.calls += 1
        return func(*args, **(kwargs or {}))


class Reference:
    """The PyTorch model in one of its forms; ``reference(x)`` returns CPU float32 outputs."""

    def __init__(self, module: nn.Module, kind: str = "eager", *, device: str | torch.device | None = None) -> None:
        if kind not in REFERENCE_KINDS:
            raise UsageError(f"unknown reference {kind!r}; choose {' or '.join(REFERENCE_KINDS)}")
        if device is None:
            device = "cuda" if kind == "triton" and torch.cuda.is_available() else "cpu"
        self.kind = kind
        self.device = torch.device(device)
        if kind == "triton" and self.device.type == "cpu":
            if os.environ.get("TRITON_INTERPRET") != "1":
                raise UsageError("the triton reference on a machine without a GPU runs in Triton's interpreter: "
                                 "set TRITON_INTERPRET=1 before starting (the edgeml CLI does it for you)")
            try:
                import triton  # noqa: F401
            except ImportError:
                raise UsageError("the triton reference needs Triton (pip install triton)") from None
        self.module = module.to(self.device).eval()
        self.edgeml_op_calls: int | None = None

    @property
    def description(self) -> str:
        if self.kind == "eager":
            text = "eager (PyTorch, CPU; edgeml ops in their chunked plain-aten form)"
        elif self.device.type == "cuda":
            text = f"triton (edgeml ops -> Triton kernels on CUDA, {torch.cuda.get_device_name(self.device)})"
        else:
            text = "triton (edgeml ops -> Triton kernels in the interpreter, TRITON_INTERPRET=1, CPU)"
        if self.edgeml_op_calls is not None:
            text += (f"; {self.edgeml_op_calls} edgeml op calls per forward pass" if self.edgeml_op_calls else
                     "; the model calls no edgeml op, so this equals eager")
        return text

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x.to(self.device)
        with use_backend("triton" if self.kind == "triton" else "chunked"):
            if self.edgeml_op_calls is None:
                with _EdgemlOpCounter() as counter:
                    y = self.module(x)
                self.edgeml_op_calls = counter.calls
            else:
                y = self.module(x)
        return [t.detach().float().cpu() for t in _as_list(y)]


def make_reference(module: nn.Module, kind: str = "eager") -> Reference:
    """``module`` as the ``kind`` ("eager" | "triton") reference (see module doc)."""
    return module if isinstance(module, Reference) else Reference(module, kind)


class ParityAccumulator:
    """Running parity sums over images, per output; keeps per-image figures but no tensors."""

    def __init__(self, names: Sequence[str], *, logits: bool) -> None:
        """``logits``: the outputs are class logits, whose top-1 agreement is counted; of several
        named outputs, only the one named ``logits`` (a Hugging Face or dict-returning model)."""
        self.names = list(names)
        self.logits = logits
        self._top1 = [logits and (len(self.names) == 1 or name == "logits" or "logits" not in self.names)
                      for name in self.names]
        self._sums = [dict(signal=0.0, noise=0.0, dot=0.0, ref_sq=0.0, out_sq=0.0, max_abs=0.0, agree=0, n=0)
                      for _ in names]
        self.per_image: list[dict] = []

    def add(self, images: Sequence[str], refs: Sequence[torch.Tensor], outs: Sequence[torch.Tensor]) -> None:
        """One batch: ``refs[k]`` and ``outs[k]`` are output k for ``images`` (first axis)."""
        if len(refs) != len(outs):
            raise ArtifactError(f"the edge side returns {len(outs)} outputs, the reference {len(refs)}")
        if len(refs) != len(self.names):
            raise ArtifactError(f"expected {len(self.names)} outputs, got {len(refs)}")
        per = [{"image": name, "sqnr_db": [], "cosine": []} for name in images]
        for k, (r, o) in enumerate(zip(refs, outs)):
            r, o = r.double(), o.double()
            if r.shape != o.shape:
                raise ArtifactError(f"output {self.names[k]}: reference shape {tuple(r.shape)} != edge shape "
                                    f"{tuple(o.shape)}")
            s = self._sums[k]
            err = r - o
            s["signal"] += float(r.pow(2).sum())
            s["noise"] += float(err.pow(2).sum())
            s["dot"] += float((r * o).sum())
            s["ref_sq"] += float(r.pow(2).sum())
            s["out_sq"] += float(o.pow(2).sum())
            if err.numel():
                s["max_abs"] = max(s["max_abs"], float(err.abs().max()))
            if self._top1[k]:
                s["agree"] += int((r.flatten(1).argmax(1) == o.flatten(1).argmax(1)).sum())
            s["n"] += len(images)
            for i in range(len(images)):
                per[i]["sqnr_db"].append(_round(sqnr_db(r[i], o[i])))
                per[i]["cosine"].append(_round(cosine(r[i], o[i])))
        self.per_image.extend(per)

    def result(self) -> dict:
        if not self.per_image:
            raise UsageError("no images were compared")
        outputs = {}
        for k, name in enumerate(self.names):
            s = self._sums[k]
            if s["noise"] == 0.0:
                total = math.inf
            elif s["signal"] == 0.0:
                total = -math.inf
            else:
                total = 10.0 * math.log10(s["signal"] / s["noise"])
            denom = math.sqrt(s["ref_sq"] * s["out_sq"])
            cos = s["dot"] / denom if denom > 0 else float(s["noise"] == 0.0)
            m: dict = {"sqnr_db": _round(total), "cosine": _round(cos), "max_abs_error": _round(s["max_abs"])}
            if self._top1[k]:
                m["top1_agreement"] = _round(s["agree"] / s["n"])
            for key, label in (("sqnr_db", "image_sqnr_db"), ("cosine", "image_cosine")):
                values = [p[key][k] for p in self.per_image]
                m[label] = {"min": _round(min(values)), "p5": _round(_percentile(values, 5)),
                            "median": _round(statistics.median(values))}
            outputs[name] = m
        worst = min(min(o["sqnr_db"], o["image_sqnr_db"]["min"]) for o in outputs.values())
        ranked = sorted(self.per_image, key=lambda p: (min(p["sqnr_db"]), min(p["cosine"])))
        return {"images": [p["image"] for p in self.per_image], "outputs": outputs, "per_image": self.per_image,
                "worst_images": ranked[:WORST_IMAGES], "worst_sqnr_db": _round(worst)}


def _output_names(config: ModelConfig, n: int) -> list[str]:
    return [config.output] if n == 1 else [f"{config.output}_{i}" for i in range(n)]


def _run_program(runner: Runner, x: torch.Tensor, program_batch: int) -> list[torch.Tensor]:
    """Run ``x`` (n rows) through a program that takes ``program_batch`` rows at a time; the last
    call is filled by cycling through ``x`` and the filler rows are dropped."""
    n = x.shape[0]
    parts: list[list[torch.Tensor]] = []
    for start in range(0, n, program_batch):
        real = min(program_batch, n - start)
        sub = x[[(start + i) % n for i in range(program_batch)]]
        runner.check_inputs([sub])
        parts.append([t.float()[:real] for t in runner.run([sub])])
    return [torch.cat(ts) for ts in zip(*parts)]


@torch.no_grad()
def measure_parity(
    reference: nn.Module | Callable,
    runner: Runner,
    images: Sequence[Path],
    pre: Preprocessing,
    config: ModelConfig,
    *,
    batch: int = 1,
    program_batch: int | None = None,
    on_image: Callable[[], None] | None = None,
    output_names: Sequence[str] | None = None,
) -> dict:
    """Stream ``images`` through the reference and the artifact, ``batch`` images at a time.

    The program gets ``program_batch`` rows per call (default ``batch``); a short last call is
    filled by cycling through the batch's images, and the repeats are not scored."""
    paths = list(images)
    program_batch = program_batch or batch
    acc: ParityAccumulator | None = None
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        x = torch.cat([pre(load_image(p)) for p in chunk])
        if len(chunk) < program_batch:  # the reference sees what the program sees
            x = x[[i % len(chunk) for i in range(program_batch)]]
        r = [t.float()[:len(chunk)] for t in _as_list(reference(x))]
        o = _run_program(runner, x[:len(chunk)] if len(chunk) >= program_batch else x, program_batch)
        o = [t[:len(chunk)] for t in o]
        if acc is None:
            acc = ParityAccumulator(list(output_names) if output_names else _output_names(config, len(r)),
                                    logits=config.output == "logits")
        acc.add([p.name for p in chunk], r, o)
        if on_image:
            for _ in chunk:
                on_image()
    if acc is None:
        raise UsageError("no images to verify on")
    description = reference.description if isinstance(reference, Reference) else "eager (PyTorch, CPU)"
    return {"reference": description, "runtime": _runtime_name(runner), **acc.result()}


@torch.no_grad()
def compare_device_outputs(
    reference: nn.Module | Callable,
    device_outputs: DeviceOutputs,
    image_dir: Path | None,
    pre: Preprocessing,
    config: ModelConfig,
    output_names: Sequence[str],
    *,
    batch: int = 1,
    on_image: Callable[[], None] | None = None,
) -> dict:
    """Compare the tensors a device wrote with the reference on the same images (by file name)."""
    from edgeml.images import list_images

    available = {p.name: p for p in (list_images(image_dir) if image_dir is not None else sample_images())}
    missing = [n for n in device_outputs.images if n not in available]
    if missing:
        where = image_dir if image_dir is not None else "the edgeml sample images"
        raise UsageError(f"{len(missing)} of the device's images are not in {where} (first: {missing[0]}); "
                         "pass --images with the folder the phone ran")
    names = list(output_names)
    if sorted(device_outputs.outputs) != sorted(names):
        raise ArtifactError(f"device outputs are named {sorted(device_outputs.outputs)}, the artifact's "
                            f"{sorted(names)}")
    acc = ParityAccumulator(names, logits=config.output == "logits")
    for start in range(0, len(device_outputs.images), batch):
        chunk = device_outputs.images[start:start + batch]
        x = torch.cat([pre(load_image(available[n])) for n in chunk])
        r = [t.float() for t in _as_list(reference(x))]
        o = [torch.from_numpy(device_outputs.outputs[n][start:start + len(chunk)].copy()) for n in names]
        acc.add(chunk, r, o)
        if on_image:
            for _ in chunk:
                on_image()
    description = reference.description if isinstance(reference, Reference) else "eager (PyTorch, CPU)"
    device = device_outputs.device or "a device"
    return {"reference": description, "runtime": f"outputs from {device} ({device_outputs.artifact_file})",
            **acc.result()}


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
    from edgeml.backends import backend_for

    # The backend's own words where the runner was opened through it (make_runner, runner_from_bytes).
    return getattr(runner, "runtime", None) or backend_for(runner.format).runtime


def reference_from_manifest(manifest: Manifest, *, checkpoint: str | Path | None = None,
                            model: nn.Module | None = None) -> nn.Module:
    """Rebuild the exact eager model an artifact was exported from: the same zoo name, callable or
    Hugging Face directory, arguments, seed and weights, every file checked against the sha256 the
    manifest recorded (``edgeml.models.source.load_from_manifest``)."""
    from edgeml.models.source import load_from_manifest

    return load_from_manifest(manifest.model, checkpoint=checkpoint, module=model)


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
    reference: str = "eager",
    batch: int | None = None,
    device_outputs: str | Path | None = None,
    on_image: Callable[[], None] | None = None,
    model: nn.Module | None = None,
) -> VerifyReport:
    """Verify ``artifact`` against the ``reference`` ("eager" | "triton") form of its model.

    The edge side is the artifact run here, or with ``device_outputs`` the file a phone wrote
    (edgeml.runtime.device_outputs) for images found by name in ``images``. ``batch`` is how many
    images go through the reference at once (default: the program's batch). ``model`` is the
    reference for an artifact exported from an ``nn.Module`` in Python."""
    from edgeml.images import list_images
    from edgeml.runtime.device_outputs import read_device_outputs

    opened = open_artifact(artifact)
    manifest = opened.manifest
    threshold = verify_threshold(manifest, min_sqnr)  # before the images: an unknown scheme fails at once
    config = ModelConfig(**{**manifest.model["config"], "mean": tuple(manifest.model["config"]["mean"]),
                            "std": tuple(manifest.model["config"]["std"]),
                            "formats": tuple(manifest.model["config"]["formats"])})
    if manifest.preprocessing is None:
        raise ArtifactError("manifest has no preprocessing: cannot feed images to this artifact")
    if batch is not None and batch < 1:
        raise UsageError("--batch must be >= 1")
    module = reference_from_manifest(manifest, checkpoint=checkpoint, model=model)
    ref = Reference(module, reference)
    pre = Preprocessing.from_dict(manifest.preprocessing)
    program_batch = int(manifest.inputs[0].shape[0]) if manifest.inputs else 1
    if resolution is not None:
        dyn = manifest.inputs[0].dynamic if manifest.inputs else {}
        if resolution != pre.crop and not ("2" in dyn and dyn["2"][0] <= resolution <= dyn["2"][1]):
            raise InputShapeError(f"{opened.path.name} takes {pre.crop}x{pre.crop} inputs"
                                  + (f" or {dyn['2'][0]}..{dyn['2'][1]}" if "2" in dyn else "")
                                  + f", not {resolution}")
        pre = Preprocessing.from_dict({**manifest.preprocessing, "crop": resolution,
                                       "resize_shorter": resolution})
    if device_outputs is not None:
        outs = read_device_outputs(device_outputs)
        if outs.artifact_sha256 != manifest.artifact.get("sha256"):
            raise ArtifactError(f"{Path(device_outputs).name} came from another build of the program "
                                f"({outs.artifact_file}, sha256 {outs.artifact_sha256[:12]}...), not "
                                f"{opened.path.name}: run the phone on this artifact again")
        parity = compare_device_outputs(ref, outs, Path(images) if images is not None else None, pre, config,
                                        [o.name for o in manifest.outputs], batch=batch or program_batch,
                                        on_image=on_image)
    else:
        paths = list_images(images) if images is not None else sample_images()
        runner = make_runner(opened)
        parity = measure_parity(ref, runner, paths, pre, config, batch=batch or program_batch,
                                program_batch=program_batch, on_image=on_image,
                                output_names=[o.name for o in manifest.outputs])
        if manifest.quantization.get("scheme") == "fp16":
            from edgeml.quantize.fp16 import host_fp16_arithmetic

            parity["host_fp16_arithmetic"] = host_fp16_arithmetic()
    return VerifyReport(opened.path, parity, threshold)


def verify_threshold(manifest: Manifest, min_sqnr: float | None = None) -> float:
    """``min_sqnr`` if given, else the default of the manifest's quantization scheme (the table in
    edgeml.quantize.schemes that export uses too)."""
    if min_sqnr is not None:
        return float(min_sqnr)
    scheme = manifest.quantization.get("scheme", "none")
    try:
        return default_min_sqnr(scheme)
    except UsageError:
        raise ArtifactError(f"the manifest names quantization {scheme!r}, which this edgeml does not know; "
                            "pass --min-sqnr DB to verify it against a threshold of your choice") from None


def format_report(report: VerifyReport) -> str:
    p = report.parity
    lines = [f"{report.artifact.name}: {p['runtime']}", f"  vs reference {p['reference']}",
             f"  {len(p['images'])} images"]
    header = f"  {'output':<14}{'SQNR dB':>9}{'cosine':>11}{'max abs':>11}{'top-1':>8}"
    lines.append(header)
    for name, m in p["outputs"].items():
        top1 = f"{m['top1_agreement'] * 100:.0f}%" if "top1_agreement" in m else "n/a"
        lines.append(f"  {name:<14}{m['sqnr_db']:>9.1f}{m['cosine']:>11.6f}{m['max_abs_error']:>11.3g}{top1:>8}")
    lines.append(f"  per image        {'min':>9}{'p5':>9}{'median':>11}")
    for name, m in p["outputs"].items():
        s, c = m["image_sqnr_db"], m.get("image_cosine")
        lines.append(f"  {name + ' SQNR dB':<17}{s['min']:>9.1f}{s['p5']:>9.1f}{s['median']:>11.1f}")
        if c:
            lines.append(f"  {name + ' cosine':<17}{c['min']:>9.5f}{c['p5']:>9.5f}{c['median']:>11.6f}")
    if p.get("worst_images"):
        worst = ", ".join(f"{w['image']} ({min(w['sqnr_db']):.1f} dB)" for w in p["worst_images"])
        lines.append(f"  worst images: {worst}")
    if p.get("host_fp16_arithmetic") is False:
        from edgeml.quantize.fp16 import HOST_FP32_NOTE

        lines.append(f"  note: {HOST_FP32_NOTE}")
    verdict = "PASS" if report.passed else "FAIL"
    lines.append(f"  {verdict}: worst SQNR {p['worst_sqnr_db']:.1f} dB "
                 f"({'>=' if report.passed else '<'} {report.threshold_db:g} dB threshold)")
    return "\n".join(lines)
