"""``quantize_report``: where quantization loses accuracy, layer by layer, before anything is shipped.

The model goes through export's own build and passes, is quantized with the chosen scheme and
calibration, and then:

* end to end: the fully quantized program is lowered exactly as ``edgeml export`` lowers it and
  run in the edge runtime (ExecuTorch + XNNPACK for .pte, ONNX Runtime for .onnx) against eager
  PyTorch on the images (export's parity: SQNR, worst image, top-1 agreement);
* per layer: the model output with only that layer quantized, against the same reference
  (``edgeml.quantize.sensitivity``), ranked most damaging first;
* optionally (``target_db``) the layers ``edgeml export --min-sqnr`` would start from: the
  smallest prefix of the ranking that reaches the target in simulation, corrected by the
  measured runtime-vs-simulation offset (export then confirms it in the runtime).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgeml.errors import UsageError
from edgeml.quantize.sensitivity import LayerProgress, LayerSensitivity, Score, layer_sensitivity, simulate_with_fp32
from edgeml.quantize.session import QuantSession

Progress = Callable[[str], None]


@dataclass
class QuantReport:
    model: str
    format: str
    scheme: str
    observer: str | None
    resolution: int
    calibration: dict[str, Any]
    images: list[str]
    layers: list[LayerSensitivity]
    simulated: Score
    parity: dict[str, Any]  # the edge runtime, fully quantized (export's parity dict)
    runtime: str
    plan: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sqnr_db(self) -> float:
        return min(o["sqnr_db"] for o in self.parity["outputs"].values())

    @property
    def top1_agreement(self) -> float | None:
        return next((o["top1_agreement"] for o in self.parity["outputs"].values() if "top1_agreement" in o), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "format": self.format, "scheme": self.scheme, "observer": self.observer,
            "resolution": self.resolution, "calibration": self.calibration, "images": self.images,
            "end_to_end": {"runtime": self.runtime, "sqnr_db": self.sqnr_db,
                           "worst_sqnr_db": self.parity["worst_sqnr_db"], "top1_agreement": self.top1_agreement,
                           "outputs": self.parity["outputs"]},
            "end_to_end_simulated": self.simulated.to_dict(),
            "layers": [dict(rank=i + 1, **r.to_dict()) for i, r in enumerate(self.layers)],
            "plan": self.plan,
            **self.extra,
        }


def quantize_report(
    model: str | torch.nn.Module,
    *,
    format: str = "pte",
    scheme: str = "int8",
    resolution: int | None = None,
    checkpoint: str | Path | Mapping[str, Any] | None = None,
    calibration: str | Path | None = None,
    calibration_images: int | None = None,
    observer: str | None = None,
    group_size: int = 32,
    images: str | Path | None = None,
    seed: int = 0,
    target_db: float | None = None,
    model_options: Any = None,
    progress: Progress | None = None,
    on_layer: LayerProgress | None = None,
) -> QuantReport:
    """Quantize ``model`` (any model reference, as ``export`` takes) and measure the error, end to
    end and per layer (see module doc). It runs export's own stages: build, passes, compile, lower."""
    from dataclasses import replace

    from edgeml.export import pipeline as p
    from edgeml.models.source import ModelOptions
    from edgeml.quantize import load_inputs
    from edgeml.quantize.schemes import get_scheme

    if not get_scheme(scheme).layerwise:
        raise UsageError("quantize-report ranks the layers of a quantization scheme (int8, int8-dynamic, 8da4w); "
                         f"{scheme} has no layers to leave in fp32")
    options = model_options or ModelOptions()
    options = replace(options, checkpoint=checkpoint if checkpoint is not None else options.checkpoint,
                      seed=seed or options.seed, resolution=resolution or options.resolution)
    state = p.build(model, options, p.Target(format=format),
                    p.Quantization(scheme=scheme, calibration=calibration, calibration_images=calibration_images,
                                   observer=observer, group_size=group_size),
                    p.Verification(images=images), progress=progress)
    config = state.config
    inputs = load_inputs(state.verify_paths, state.pre)
    with torch.no_grad():
        refs = [[t.float() for t in _as_list(state.module(x))] for x in inputs]
    with state.workdir:
        p.run_passes(state)
        p.compile_program(state)
        p.lower(state)
        with p.stage("parity", state):
            parity = p.measure(state, state.data)
        session = state.program.session
        logits = config.output == "logits"
        with p.stage("layers", state):
            ranking = layer_sensitivity(session, inputs, refs, logits=logits, on_layer=on_layer)
            simulated = simulate_with_fp32(session, [], inputs, refs, logits=logits)
            plan = None
            if target_db is not None:
                plan = _plan(session, ranking, inputs, refs, logits, float(target_db),
                             parity["worst_sqnr_db"] - simulated.worst_db, parity["worst_sqnr_db"])
    calibrated = state.calibration_paths
    return QuantReport(
        model=config.name, format=format, scheme=state.scheme.name, observer=state.observer,
        resolution=config.resolution,
        calibration={"images": len(calibrated),
                     "source": (str(calibration) if calibration else "edgeml sample images") if calibrated
                     else "none: activations are quantized at run time"},
        images=[path.name for path in state.verify_paths], layers=ranking, simulated=simulated, parity=parity,
        runtime=state.backend.runtime, plan=plan,
        extra={**({"group_size": group_size} if state.scheme.name == "8da4w" else {}),
               **({"norm_statistics_fp32": len(session.norm_fp32)} if session.norm_fp32 else {})},
    )


def make_session(prepared: torch.nn.Module, example: tuple, format: str, scheme, observer: str | None,
                 calib_inputs: list[torch.Tensor], group_size: int, model_name: str, *, workdir: Path | None = None,
                 output_count: int = 1, output_kind: str = "logits", dynamic_shapes: object | None = None,
                 on_batch: Callable[[], None] | None = None) -> QuantSession:
    """The quantization session the ``format``'s backend makes for ``scheme`` (for ONNX it lowers
    the fp32 graph into ``workdir`` first)."""
    from edgeml.backends import CompileSpec, backend_for

    names = [output_kind] if output_count == 1 else [f"{output_kind}_{i}" for i in range(output_count)]
    spec = CompileSpec(scheme=scheme, observer=observer, calibration=calib_inputs, group_size=group_size,
                       dynamic_shapes=dynamic_shapes, output_names=names, model_name=model_name, workdir=workdir,
                       on_batch=on_batch)
    return backend_for(format).compile(prepared, example, spec).session


def lower_pte(module: torch.nn.Module, example: tuple) -> bytes:
    """Capture, decompose and lower to XNNPACK exactly as export does; the program bytes."""
    from edgeml.backends import CompileSpec, backend_for
    from edgeml.quantize.schemes import get_scheme

    data, _ = backend_for("pte").compile(module, example, CompileSpec(scheme=get_scheme("none"))).build()
    return data


def _plan(session, ranking, inputs, refs, logits, target_db, offset, measured_db) -> dict[str, Any]:
    names = [r.name for r in ranking]
    plan: dict[str, Any] = {"target_db": target_db, "runtime_minus_simulation_db": round(offset, 4)}
    if measured_db >= target_db:
        return {**plan, "fp32_layers": [], "note": "the fully quantized program already reaches the target"}
    for k in range(1, len(names)):
        s = simulate_with_fp32(session, names[:k], inputs, refs, logits=logits)
        if s.worst_db + offset >= target_db:
            return {**plan, "fp32_layers": names[:k], "simulated_db": round(s.worst_db, 4),
                    "note": "simulated; `edgeml export --min-sqnr` confirms it in the edge runtime"}
    return {**plan, "fp32_layers": None,
            "note": "not reachable without keeping every layer in fp32: export without quantization"}


def format_report(report: QuantReport, top: int | None = None) -> str:
    calib = report.calibration
    how = (f"observer {report.observer}, {calib['images']} calibration images" if calib["images"]
           else "no calibration (dynamic activations)")
    if report.scheme == "8da4w":
        how += f", group size {report.extra.get('group_size')}"
    lines = [f"{report.model} {report.scheme} .{report.format} at {report.resolution} px ({how}); "
             f"{len(report.images)} images"]
    top1 = report.top1_agreement
    lines.append(f"end to end, {report.runtime}: SQNR {report.sqnr_db:.1f} dB (worst image "
                 f"{report.parity['worst_sqnr_db']:.1f})" + (f", top-1 agreement {top1 * 100:.0f}%" if top1 is not None
                                                             else ""))
    lines.append(f"end to end, simulated: SQNR {report.simulated.sqnr_db:.1f} dB")
    if report.extra.get("norm_statistics_fp32"):
        lines.append(f"{report.extra['norm_statistics_fp32']} LayerNorm statistics and normalization ops (the "
                     "averaging linears / 1x1 convs; under static int8 also the square, var + eps and the product "
                     "with 1 / std) stay fp32 under this scheme and are not listed")
    shown = report.layers if top is None else report.layers[:top]
    lines.append(f"{len(report.layers)} quantized layers; output SQNR with only that layer quantized (simulated), "
                 "most damaging first:")
    width = max([len(r.name) for r in shown] + [5])
    lines.append(f"  {'rank':>4}  {'layer':<{width}}  {'op':<12}{'SQNR dB':>8}{'top-1':>7}{'noise':>8}")
    for i, r in enumerate(shown):
        t = f"{r.top1_agreement * 100:.0f}%" if r.top1_agreement is not None else "n/a"
        lines.append(f"  {i + 1:>4}  {r.name:<{width}}  {r.op:<12}{r.sqnr_db:>8.1f}{t:>7}{r.noise_share * 100:>7.1f}%")
    if top is not None and len(report.layers) > top:
        lines.append(f"  ... {len(report.layers) - top} more (--top 0 shows all)")
    if report.plan is not None:
        p = report.plan
        if p.get("fp32_layers") is None:
            lines.append(f"target {p['target_db']:g} dB: {p['note']}")
        elif not p["fp32_layers"]:
            lines.append(f"target {p['target_db']:g} dB: {p['note']}")
        else:
            lines.append(f"target {p['target_db']:g} dB: keep {len(p['fp32_layers'])} layer(s) in fp32 "
                         f"({', '.join(p['fp32_layers'])}); {p['note']}")
    return "\n".join(lines)


def _as_list(y) -> list[torch.Tensor]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


__all__ = ["QuantReport", "format_report", "lower_pte", "make_session", "quantize_report"]
