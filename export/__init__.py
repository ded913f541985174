"""edgeml.export: graph passes and the lowerings to ExecuTorch .pte and ONNX.

``export(name, ...)`` runs the pipeline as stages, each a plain function you can call alone:

    build      edgeml.create_model (official checkpoint or seeded random init)
    passes     reparameterize (where the family defines it) -> fold BatchNorm
    capture    torch.export
    quantize   edgeml.quantize schemes: PT2E int8 static/dynamic or torchao 8da4w (.pte) | ORT QDQ
               static / dynamic int8 (.onnx); with ``fp32_fallback``, the most sensitive layers are
               kept in fp32 until the edge runtime's SQNR reaches ``min_sqnr`` (edgeml.quantize.mixed)
    decompose  edgeml custom ops -> plain aten (edgeml.kernels.decomposition_table)
    lower      XNNPACK partitioner -> .pte  |  dynamo ONNX exporter -> .onnx
    parity     the serialized bytes run in the edge runtime vs eager PyTorch, on real images
    write      artifact + manifest, atomically (temp file, then rename)

Nothing is written unless every stage succeeded, and with ``min_sqnr`` set an artifact below
the threshold is not written either, so a failed export never replaces a good artifact.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.errors import InputShapeError, LoweringError, UsageError, VerificationError
from edgeml.images import Preprocessing, sample_images
from edgeml.manifest import (
    Manifest,
    TensorSpec,
    atomic_write_bytes,
    atomic_write_json,
    manifest_path,
    sha256_file,
    tool_versions,
    utc_now,
)
from edgeml.models import create_model, get_model_config
from edgeml.models._registry import ModelConfig
from edgeml.quantize.schemes import SCHEME_INFO

FORMATS = {"pte": ("xnnpack", ".pte"), "onnx": ("ort", ".onnx")}
QUANT_TAGS = {name: s.tag for name, s in SCHEME_INFO.items()}
DEFAULT_MIN_SQNR = {name: s.default_min_sqnr for name, s in SCHEME_INFO.items()}

Progress = Callable[[str], None]


@dataclass
class Artifact:
    """An exported program and its manifest, as written to disk."""

    path: Path
    manifest: Manifest
    export_seconds: float

    @property
    def manifest_path(self) -> Path:
        return manifest_path(self.path)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def artifact_name(model: str, fmt: str, quantize: str, resolution: int, default_resolution: int, *,
                  batch: int = 1, dynamic_batch: bool = False,
                  dynamic_resolution: tuple[int, int] | None = None) -> str:
    """ExecuTorch benchmark naming ``<model>_<backend>_<quant>``; the model part is tagged with a
    non-default resolution (``_r512``), a dynamic range (``_r256-1024``) or batch (``_b4``, ``_bdyn16``)."""
    backend, suffix = FORMATS[fmt]
    tag = model
    if dynamic_resolution is not None:
        tag += f"_r{dynamic_resolution[0]}-{dynamic_resolution[1]}"
    elif resolution != default_resolution:
        tag += f"_r{resolution}"
    if dynamic_batch:
        tag += f"_bdyn{batch}"
    elif batch != 1:
        tag += f"_b{batch}"
    return f"{tag}_{backend}_{QUANT_TAGS[quantize]}{suffix}"


def _dynamic_spec(config: ModelConfig, max_batch: int | None, resolution_range: tuple[int, int] | None
                  ) -> tuple[dict[str, list[int]], object | None]:
    """(manifest axes {axis: [min, max]}, torch.export dynamic_shapes) for the image input."""
    from torch.export import Dim

    axes: dict[str, list[int]] = {}
    shapes: dict[int, object] = {}
    if max_batch is not None:
        axes["0"] = [1, max_batch]
        shapes[0] = Dim("batch", min=1, max=max_batch)
    if resolution_range is not None:
        lo, hi = resolution_range
        s = config.stride
        # Derived dims encode "multiple of the stride", which the backbone's reshapes rely on.
        h, w = Dim("h_blocks", min=lo // s, max=hi // s), Dim("w_blocks", min=lo // s, max=hi // s)
        shapes[2], shapes[3] = s * h, s * w
        axes["2"] = axes["3"] = [lo, hi]
    return axes, ((shapes,) if shapes else None)


def _preprocessing_record(pre: Preprocessing, config: ModelConfig, batch: int, dynamic_batch: bool) -> dict:
    record = pre.to_dict()
    tiling = dict(config.extra.get("tiling", {}))
    if tiling:
        # Tile encoders: the host cuts the image into tiles (edgeml.dynres) and runs them
        # `batch` at a time; each tile is preprocessed with the mean/std above.
        tiling.update(tile=config.resolution, batch=batch, dynamic_batch=dynamic_batch)
        record["tiling"] = tiling
    return record


def check_resolution(config: ModelConfig, resolution: int) -> None:
    if resolution % config.stride or not config.min_resolution <= resolution <= config.max_resolution:
        raise InputShapeError(
            f"{config.name} takes square inputs that are multiples of {config.stride} between "
            f"{config.min_resolution} and {config.max_resolution}; {resolution} is not one"
        )


def prepare_for_export(model: nn.Module, example_inputs: tuple, *, format: str | None = None) -> nn.Module:
    """Function-preserving passes: structural reparameterization, then BatchNorm folding; for
    ``format="pte"`` also the rewrites that let XNNPACK take the whole graph (LayerNorm means as
    1x1 convs / linears, EfficientMod's context tile as a concat of distinct tensors)."""
    from edgeml.export.passes.batchnorm import fold_batchnorm

    try:
        from edgeml.export.passes.reparameterize import reparameterize_model
    except ImportError:  # no family in this build defines reparameterizable blocks
        reparameterize_model = None
    if reparameterize_model is not None:
        model = reparameterize_model(model)
    from edgeml.export.passes.export_form import to_export_form

    model = fold_batchnorm(to_export_form(model), example_inputs)
    if format == "pte":
        from edgeml.export.passes.layernorm import lower_layernorms
        from edgeml.export.passes.modulation import split_context_tiling

        model = split_context_tiling(lower_layernorms(model))
    return model


def decompose_custom_ops(exported: torch.export.ExportedProgram, *, backend: str | None = None
                         ) -> torch.export.ExportedProgram:
    """Replace edgeml custom ops by their plain-aten chunked forms (no custom kernels on device).

    ``backend="xnnpack"`` also applies, in the same retrace, the decompositions that lowering to
    XNNPACK would apply (``edgeml.export.pte.xnnpack_decomposition_table``): ``lower_to_pte`` then
    skips its own three whole-program retraces (``skip_empty_decompositions``). Chained and
    identity reshapes and zero pads are dropped afterwards (``passes.reshapes.simplify_reshapes``)."""
    if backend not in (None, "xnnpack"):
        raise ValueError(f"backend must be 'xnnpack' or None, not {backend!r}")
    from edgeml.export.passes.reshapes import simplify_reshapes
    from edgeml.export.pte import deferred_recompiles

    try:
        from edgeml.kernels import decomposition_table
        custom = decomposition_table(onnx=backend is None)  # without a backend: for ONNX
    except ImportError:
        custom = {}
    table = custom
    if backend == "xnnpack":
        from edgeml.export.pte import xnnpack_decomposition_table

        table = {**xnnpack_decomposition_table(exported), **custom}
    has_custom = bool({n.target for n in exported.graph.nodes if n.op == "call_function"} & set(custom))
    if not has_custom and not (backend == "xnnpack" and table):
        return exported
    with deferred_recompiles():
        # Without a custom op there is nothing to fold; the backend's decompositions still run here.
        decomposed = exported.run_decompositions(table)
        if has_custom:
            decomposed = fold_constants(decomposed)
    simplify_reshapes(decomposed.graph_module)
    return decomposed


def fold_constants(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Evaluate every node that depends on constants only, and keep its result as a constant.

    The decompositions build their 0/1 masks and ones-weights from ``arange`` / ``full`` of the
    static chunk and chunk-count sizes; folded, the masked products and ``linear`` layers take
    constant operands and lower to XNNPACK, where the compare / arange islands would run as
    portable kernels and split its partitions. Quantization primitives are never folded, so a
    quantized weight keeps its quantize/dequantize pair for XNNPACK's int8 kernels. Under
    dynamic shapes the masks depend on the symbolic length and stay in the graph.

    A folded constant gets the standard strides of its shape: a folded transpose can keep a
    stride on a size-1 dim that no contiguous tensor has (a (2, 8, 1) tensor with strides (8, 1, 8)),
    which ExecuTorch reads as another dim order, and XNNPACK then fails to run the program
    (``xnn_status_invalid_parameter`` when it propagates the input shapes)."""
    from executorch.exir.operator.util import _QUANT_PRIMITIVES
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    folded = constant_prop_pass(exported, custom_skip_targets=set(_QUANT_PRIMITIVES))
    for name, value in folded.constants.items():
        if isinstance(value, torch.Tensor) and value.stride() != _standard_strides(value.shape):
            folded.constants[name] = value.clone(memory_format=torch.contiguous_format)
    return folded


def _standard_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(int(size), 1)
    return tuple(reversed(strides))


def _capture(model: nn.Module, example_inputs: tuple, dynamic_shapes: object | None = None
             ) -> torch.export.ExportedProgram:
    try:
        return torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoweringError(f"torch.export failed: {first}") from e


def _output_names(config: ModelConfig, n: int) -> list[str]:
    return [config.output] if n == 1 else [f"{config.output}_{i}" for i in range(n)]


def _as_list(y: Any) -> list[torch.Tensor]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def export(
    model: str,
    *,
    format: str = "pte",
    quantize: str = "none",
    resolution: int | None = None,
    checkpoint: str | Path | Mapping[str, Any] | None = None,
    calibration: str | Path | None = None,
    calibration_images: int | None = None,
    output_dir: str | Path = ".",
    verify_images: str | Path | None = None,
    min_sqnr: float | None = None,
    seed: int = 0,
    batch: int = 1,
    dynamic_batch: bool = False,
    dynamic_resolution: tuple[int, int] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    bundle: int = 0,
    progress: Progress | None = None,
    observer: str | None = None,
    group_size: int = 32,
    fp32_fallback: bool = False,
    max_fp32_layers: int | None = None,
    keep_fp32: Sequence[str] = (),
    on_layer: Callable[[int, int], None] | None = None,
) -> Artifact:
    """Export zoo model ``model`` to ``format`` ("pte" | "onnx"), fp32 or int8; see module doc.

    ``batch`` fixes the program's batch (a tile encoder runs tiles ``batch`` at a time);
    ``dynamic_batch`` makes it any batch in 1..``batch``. ``dynamic_resolution=(lo, hi)`` makes
    one program accept any height and width in [lo, hi] that are multiples of the model's stride;
    the same dynamic shapes are used for the exports before and after quantization.
    ``bundle=N`` (.pte only) also writes ``<stem>.bpte``, an ExecuTorch bundled program with N
    sample inputs and the eager outputs for them (edgeml.runtime.bundled).

    Quantization: ``quantize`` is a scheme of ``edgeml.quantize.schemes`` (int8, int8-dynamic,
    8da4w); ``observer`` and ``calibration_images`` set the calibration of int8, ``group_size``
    the int4 weight groups of 8da4w. ``keep_fp32`` names layers to leave in fp32. With
    ``fp32_fallback``, ``min_sqnr`` is a target: the most sensitive layers are kept in fp32
    (at most ``max_fp32_layers``) until the SQNR measured in the edge runtime reaches it, or the
    export fails with the reason (``edgeml.quantize.mixed``); ``on_layer(done, total)`` follows
    the per-layer sensitivity loop.
    """
    from edgeml.quantize import calibration_images as _calibration_paths
    from edgeml.quantize import load_inputs
    from edgeml.quantize.schemes import get_scheme, resolve_observer

    t0 = time.perf_counter()
    say = progress or (lambda stage: None)
    if format not in FORMATS:
        raise UsageError(f"unknown format {format!r}; choose pte or onnx")
    scheme = get_scheme(quantize, format)
    observer = resolve_observer(scheme, format, observer)
    _check_quantize_options(scheme, calibration, calibration_images, min_sqnr, fp32_fallback, keep_fp32)
    config = get_model_config(model)
    resolution = int(resolution or config.resolution)
    check_resolution(config, resolution)
    config = config.with_resolution(resolution)
    if bundle < 0 or (bundle and format != "pte"):
        raise UsageError("--bundle N takes N >= 1 sample inputs and works with --format pte only")
    if batch < 1 or (dynamic_batch and batch < 2):
        raise UsageError("batch must be >= 1 (>= 2 with a dynamic batch: it is the maximum)")
    if dynamic_resolution is not None:
        lo, hi = (int(v) for v in dynamic_resolution)
        for r in (lo, hi):
            check_resolution(config, r)
        if not lo <= resolution <= hi or lo == hi:
            raise UsageError(f"dynamic resolution {lo}:{hi} must be a range that contains {resolution}")
        dynamic_resolution = (lo, hi)
    pre = Preprocessing.for_resolution(resolution, config.mean, config.std)
    calib_paths = _calibration_paths(calibration, calibration_images) if scheme.calibrated else []
    verify_paths = _calibration_paths(verify_images) if verify_images else sample_images()
    out_dir = Path(output_dir)
    name = artifact_name(model, format, quantize, resolution, get_model_config(model).resolution,
                         batch=batch, dynamic_batch=dynamic_batch, dynamic_resolution=dynamic_resolution)
    target = out_dir / name

    say("build")
    kwargs = dict(model_kwargs or {})
    if "resolution" in _builder_params(model):
        kwargs["resolution"] = resolution
    reference = create_model(model, checkpoint=checkpoint, seed=seed, **kwargs)
    example_batch = 2 if dynamic_batch else batch  # a dynamic dim must not be traced at size 1
    example = (torch.cat([load_inputs([verify_paths[i % len(verify_paths)]], pre)[0]
                          for i in range(example_batch)]),)
    dynamic_axes, dynamic_shapes = _dynamic_spec(config, batch if dynamic_batch else None, dynamic_resolution)

    say("passes")
    prepared = prepare_for_export(reference, example, format=format)

    say("capture")
    calib_inputs = load_inputs(calib_paths, pre) if calib_paths else []
    calib = [torch.cat([x] * example_batch) for x in calib_inputs]
    session, mixed = None, None
    if format == "pte":
        if quantize != "none":
            say("quantize")
            from edgeml.quantize.report import make_session

            session = make_session(prepared, example, format, scheme, observer, calib, group_size, model,
                                   dynamic_shapes=dynamic_shapes)

        def lower(fp32_layers: Sequence[str]) -> tuple[bytes, dict]:
            module = session.quantized_module(fp32_layers) if session is not None else prepared
            exported = decompose_custom_ops(_capture(module, example, dynamic_shapes), backend="xnnpack")
            from edgeml.export.pte import lower_to_pte, lowering_failure

            try:
                data, delegation = lower_to_pte(exported)
            except Exception as e:
                raise LoweringError(lowering_failure(e)) from e
            return data, delegation.to_dict()

        say("lower")
        keep_fp32 = session.check_names(keep_fp32) if session is not None else []
        data, delegation_dict = lower(keep_fp32)
        if fp32_fallback and session is not None:
            data, delegation_dict, keep_fp32, mixed = _keep_fp32_until(
                session, lower, data, delegation_dict, float(min_sqnr), max_fp32_layers, reference,
                verify_paths, pre, config, example_batch, format, on_layer)
    else:
        exported = decompose_custom_ops(_capture(prepared, example, dynamic_shapes))
        n_out = len(_as_list(exported.module()(*example)))
        say("lower")
        from edgeml.export.onnx import lower_to_onnx

        with tempfile.TemporaryDirectory(prefix="edgeml-onnx-") as tmp:
            fp32 = Path(tmp) / "model.onnx"
            lower_to_onnx(exported, example, fp32, input_names=["image"],
                          output_names=_output_names(config, n_out))
            if quantize != "none":
                say("quantize")
                from edgeml.quantize.session import OrtSession

                session = OrtSession(fp32, "image", scheme, observer, calib, Path(tmp), example=example[0])
                keep_fp32 = session.check_names(keep_fp32)
                data = session.quantized_onnx(keep_fp32)
                if fp32_fallback:
                    data, _, keep_fp32, mixed = _keep_fp32_until(
                        session, lambda f: (session.quantized_onnx(f), {}), data, {}, float(min_sqnr),
                        max_fp32_layers, reference, verify_paths, pre, config, example_batch, format, on_layer)
            else:
                data = fp32.read_bytes()
        delegation_dict = {"backend": "CPUExecutionProvider", "share": 1.0,
                           "note": "ONNX Runtime runs every node on its CPU execution provider"}

    say("parity")
    from edgeml.runtime.runners import runner_from_bytes
    from edgeml.runtime.verify import measure_parity

    runner = runner_from_bytes(data, format)
    runner.dynamic_axes = [dynamic_axes]
    parity = measure_parity(reference, runner, verify_paths, pre, config, batch=example_batch)
    if dynamic_resolution is not None:
        # One program, several shapes: check the ends of the range too (two images each).
        parity["resolutions"] = {}
        for r in sorted({dynamic_resolution[0], resolution, dynamic_resolution[1]}):
            p_r = Preprocessing.for_resolution(r, config.mean, config.std)
            sub = parity if r == resolution else measure_parity(reference, runner, verify_paths[:2], p_r, config)
            parity["resolutions"][str(r)] = sub["worst_sqnr_db"]
        parity["worst_sqnr_db"] = min(parity["resolutions"].values())
    threshold = DEFAULT_MIN_SQNR[quantize] if min_sqnr is None else float(min_sqnr)
    parity["threshold_db"] = threshold
    if min_sqnr is not None and parity["worst_sqnr_db"] < threshold:
        raise VerificationError(
            f"{name}: SQNR {parity['worst_sqnr_db']:.1f} dB is below the {threshold:g} dB threshold; "
            "nothing was written (lower --min-sqnr, or see `edgeml quantize-report`)"
        )

    say("write")
    outputs = [o[:1].expand(batch, *o.shape[1:]) for o in _as_list(reference(example[0][:1]))]
    manifest = Manifest(
        artifact={"file": name, "format": format, "backend": FORMATS[format][0], "sha256": "", "size_bytes": 0},
        model={"name": model, "config": config.to_dict(), "weights": _weights_record(checkpoint, seed),
               "kwargs": kwargs},
        inputs=[TensorSpec("image", [batch, *example[0].shape[1:]], "float32", "NCHW", dynamic=dynamic_axes)],
        outputs=[TensorSpec(n, list(o.shape), "float32", layout="", kind=config.output)
                 for n, o in zip(_output_names(config, len(outputs)), outputs)],
        preprocessing=_preprocessing_record(pre, config, batch, dynamic_batch),
        quantization=_quantization_record(scheme, observer, calib_paths, calibration, session, keep_fp32,
                                          mixed, group_size),
        delegation=delegation_dict,
        parity=parity,
        tools=tool_versions(),
        created=utc_now(),
    )
    if bundle:
        from edgeml.runtime.bundled import bundle_path, write_bundle

        cases = [torch.cat([load_inputs([verify_paths[(i * batch + j) % len(verify_paths)]], pre)[0]
                            for j in range(batch)]) for i in range(bundle)]
        manifest.artifact["bundle"] = write_bundle(bundle_path(target), data, reference, cases, quantize)
    manifest.artifact["export_seconds"] = round(time.perf_counter() - t0, 1)
    _write_atomically(target, data, manifest)
    return Artifact(target, manifest, time.perf_counter() - t0)


def _write_atomically(target: Path, data: bytes, manifest: Manifest) -> None:
    # The artifact is renamed into place first and the manifest second; a reader that finds a
    # stale manifest next to a new artifact rejects it by sha256, never runs mismatched files.
    atomic_write_bytes(target, data)
    manifest.artifact["sha256"] = sha256_file(target)
    manifest.artifact["size_bytes"] = target.stat().st_size
    atomic_write_json(manifest_path(target), manifest.to_dict())


def _builder_params(model: str) -> set[str]:
    import inspect

    from edgeml.models._registry import _entry

    return set(inspect.signature(_entry(model).builder).parameters)


def _weights_record(checkpoint: Any, seed: int) -> dict[str, Any]:
    if checkpoint is None:
        return {"source": "random-init", "seed": seed}
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint).resolve()
        return {"source": "checkpoint", "path": str(path), "sha256": sha256_file(path)}
    return {"source": "in-memory state_dict"}


def _check_quantize_options(scheme, calibration, calibration_images, min_sqnr, fp32_fallback, keep_fp32) -> None:
    if not scheme.calibrated and scheme.name != "none" and (calibration is not None or calibration_images is not None):
        raise UsageError(f"--quantize {scheme.name} quantizes activations at run time and takes no calibration "
                         "images (drop --calibration/--calibration-images, or use --quantize int8)")
    if fp32_fallback and min_sqnr is None:
        raise UsageError("keeping layers in fp32 needs a target: pass min_sqnr (--min-sqnr DB)")
    if (fp32_fallback or keep_fp32) and scheme.name == "none":
        raise UsageError("there is nothing to keep in fp32 without --quantize")
    if fp32_fallback and keep_fp32:
        raise UsageError("--keep-fp32 names the fp32 layers itself; it does not combine with the search for them "
                         "(--min-sqnr with a quantized scheme): pass --max-fp32-layers 0 to only verify")


def _keep_fp32_until(session, lower, data, delegation, target_db, max_fp32_layers, reference, verify_paths, pre,
                     config, batch, fmt, on_layer):
    """The mixed-precision search (edgeml.quantize.mixed) with export's own lowering and parity."""
    from edgeml.quantize import load_inputs
    from edgeml.quantize.mixed import keep_fp32_until
    from edgeml.runtime.runners import runner_from_bytes
    from edgeml.runtime.verify import measure_parity

    def measure(program: bytes) -> float:
        return measure_parity(reference, runner_from_bytes(program, fmt), verify_paths, pre, config,
                              batch=batch)["worst_sqnr_db"]

    built: dict[tuple[str, ...], tuple[bytes, dict]] = {(): (data, delegation)}

    def build(fp32_layers: list[str]) -> float:
        built[tuple(fp32_layers)] = lower(fp32_layers)
        return measure(built[tuple(fp32_layers)][0])

    inputs = load_inputs(verify_paths, pre)
    with torch.no_grad():
        refs = [[t.float() for t in _as_list(reference(x))] for x in inputs]
    result = keep_fp32_until(session, build, target_db, inputs, refs, logits=config.output == "logits",
                             quantized_db=measure(data), max_fp32_layers=max_fp32_layers, on_layer=on_layer)
    data, delegation = built[tuple(result.fp32_layers)]
    return data, delegation, result.fp32_layers, result


def _quantization_record(scheme, observer, calib_paths, calibration, session, fp32_layers, mixed,
                         group_size) -> dict[str, Any]:
    record: dict[str, Any] = {"scheme": scheme.name, "description": scheme.description}
    if scheme.calibrated:
        record["calibration"] = {"images": len(calib_paths), "observer": observer,
                                 "source": str(calibration) if calibration else "edgeml sample images"}
    else:
        record["calibration"] = {"images": 0, "source": "none" if scheme.name == "none" else
                                 "none: activations are quantized at run time"}
    if scheme.name == "8da4w":
        record["group_size"] = group_size
    record["fp32_layers"] = list(fp32_layers)
    if session is not None:
        record["layers"] = {"quantized": len(session.groups) - len(fp32_layers), "total": len(session.groups)}
        if session.pinned_fp32:
            # Not counted in "total": the scheme never quantizes them (``Pt2eSession``'s docstring).
            record["norm_statistics"] = {"precision": "fp32", "layers": len(session.pinned_fp32)}
    if mixed is not None:
        record["mixed_precision"] = mixed.to_dict()
    return record


__all__ = ["Artifact", "FORMATS", "artifact_name", "decompose_custom_ops", "export", "fold_constants",
           "prepare_for_export"]
