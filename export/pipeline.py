"""The export pipeline as stages: plain functions over one small state.

    build -> passes -> compile (capture, quantize, decompose, lower) -> parity -> write

``export`` runs them all; ``edgeml quantize-report`` and the mixed-precision search compose the
same stages (``build``, ``run_passes``, ``compile_program``), so all three measure the program
export writes. Each stage fills fields of ``ExportState``, so a caller can stop after any stage
and look at what it produced (``state.prepared``, ``state.program.session``, ``state.data``).

Options are grouped: ``ModelOptions`` (what edgeml needs to know about the model, in
``edgeml.models.source``), ``Target`` (format, backend, shapes), ``Quantization`` (scheme,
calibration, fp32 layers, the mixed-precision target) and ``Verification`` (images, threshold).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.errors import EdgeMLError, InputShapeError, UsageError, VerificationError
from edgeml.images import Preprocessing, sample_images
from edgeml.manifest import Manifest, TensorSpec, atomic_write_json, manifest_path, sha256_file, tool_versions, utc_now
from edgeml.models._registry import ModelConfig
from edgeml.models.source import LoadedModel, ModelOptions, load_model

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    """What program to write: format and backend, input shape, batch."""

    format: str = "pte"
    backend: str | None = None  # default: the format's (xnnpack for pte, ort for onnx)
    batch: int | None = None  # default: the model's (1, or --input-shape's N)
    dynamic_batch: bool = False  # batch 1..batch
    dynamic_resolution: tuple[int, int] | None = None  # square sizes lo..hi, multiples of the stride
    bundle: int = 0  # .pte: also a bundled program with this many sample inputs


@dataclass(frozen=True)
class Quantization:
    """How to quantize: a scheme of ``edgeml.quantize.schemes`` and its calibration; layers kept
    in fp32 by name, or found by the mixed-precision search when ``target_db`` is set."""

    scheme: str = "none"
    calibration: str | Path | None = None
    calibration_images: int | None = None
    observer: str | None = None
    group_size: int = 32
    keep_fp32: Sequence[str] = ()
    target_db: float | None = None
    max_fp32_layers: int | None = None
    on_layer: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class Verification:
    """Parity images and the threshold: below ``min_sqnr`` nothing is written. Without it, an
    artifact below its scheme's default threshold is written with a warning."""

    images: str | Path | None = None
    min_sqnr: float | None = None


@dataclass
class ExportState:
    """What the stages produce, in order."""

    reference: str | nn.Module
    model_options: ModelOptions
    target: Target
    quantization: Quantization
    verification: Verification
    progress: Progress
    started: float = field(default_factory=time.perf_counter)
    # build
    loaded: LoadedModel | None = None
    backend: Any = None
    scheme: Any = None
    observer: str | None = None
    pre: Preprocessing | None = None
    example: tuple = ()
    batch: int = 1
    dynamic_axes: dict[str, list[int]] = field(default_factory=dict)
    dynamic_shapes: object | None = None
    calibration_paths: list[Path] = field(default_factory=list)
    verify_paths: list[Path] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    # passes / compile
    prepared: nn.Module | None = None
    program: Any = None
    workdir: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    # lower
    data: bytes | None = None
    delegation: dict[str, Any] = field(default_factory=dict)
    fp32_layers: list[str] = field(default_factory=list)
    mixed: Any = None
    # parity / write
    parity: dict[str, Any] | None = None
    # the eager outputs per input, and each program's parity on the verify images: the search
    # measures several programs on the same photos, and the parity stage the one it chose
    reference_outputs: dict[tuple, Any] = field(default_factory=dict)
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    manifest: Manifest | None = None

    @property
    def config(self) -> ModelConfig:
        assert self.loaded is not None
        return self.loaded.config

    @property
    def module(self) -> nn.Module:
        assert self.loaded is not None
        return self.loaded.module


@contextlib.contextmanager
def stage(name: str, state: ExportState | None = None) -> Iterator[None]:
    """Name the stage in the progress display and in any user error it raises."""
    if state is not None:
        state.progress(name)
    try:
        yield
    except EdgeMLError as e:
        message = str(e)
        if message.startswith(f"{name}: "):
            raise
        try:
            error = type(e)(f"{name}: {message}")
        except TypeError:  # an error class with its own constructor: keep it as it is
            raise e from None
        raise error.with_traceback(e.__traceback__) from None


# -- build ---------------------------------------------------------------------------------------------


def build(reference: str | nn.Module, model_options: ModelOptions | None = None, target: Target | None = None,
          quantization: Quantization | None = None, verification: Verification | None = None, *,
          example_inputs: tuple | None = None, progress: Progress | None = None) -> ExportState:
    """Check the options, build the model and make its example inputs from real images."""
    from edgeml.backends import backend_for
    from edgeml.quantize import calibration_images
    from edgeml.quantize.schemes import get_scheme, resolve_observer

    state = ExportState(reference, model_options or ModelOptions(), target or Target(),
                        quantization or Quantization(), verification or Verification(),
                        progress or (lambda _: None))
    t, q = state.target, state.quantization
    state.backend = backend_for(t.format, t.backend)
    state.scheme = get_scheme(q.scheme, t.format)
    state.observer = resolve_observer(state.scheme, t.format, q.observer)
    _check_quantization(state.scheme, q)
    if t.bundle < 0 or (t.bundle and t.format != "pte"):
        raise UsageError("--bundle N takes N >= 1 sample inputs and works with --format pte only")
    if example_inputs is not None:
        shape = _example_shape(example_inputs)
        if state.model_options.input_shape is None:
            state.model_options = replace(state.model_options, input_shape=shape)
    with stage("build", state):
        state.loaded = load_model(reference, state.model_options)
    config = state.config
    _check_resolution(config, config.resolution)
    state.batch = int(t.batch if t.batch is not None else state.loaded.batch)
    if state.batch < 1 or (t.dynamic_batch and state.batch < 2):
        raise UsageError("batch must be >= 1 (>= 2 with a dynamic batch: it is the maximum)")
    dynamic_resolution = _check_dynamic_resolution(config, t.dynamic_resolution)
    state.pre = Preprocessing.for_resolution(config.resolution, config.mean, config.std, config.crop_fraction)
    state.calibration_paths = calibration_images(q.calibration, q.calibration_images) if state.scheme.calibrated \
        else []
    state.verify_paths = calibration_images(state.verification.images) if state.verification.images else \
        sample_images()
    from edgeml.quantize import load_inputs

    example_batch = 2 if t.dynamic_batch else state.batch  # a dynamic dim must not be traced at size 1
    paths = state.verify_paths
    state.example = (torch.cat([load_inputs([paths[i % len(paths)]], state.pre)[0] for i in range(example_batch)]),)
    state.dynamic_axes, state.dynamic_shapes = _dynamic_spec(config, state.batch if t.dynamic_batch else None,
                                                             dynamic_resolution)
    from edgeml.export.outputs import output_names

    with torch.no_grad():
        state.output_names = output_names(state.module(state.example[0]), config.output)
    return state


def _example_shape(example_inputs: tuple) -> tuple[int, ...]:
    if not isinstance(example_inputs, tuple) or len(example_inputs) != 1 or \
            not isinstance(example_inputs[0], torch.Tensor):
        raise UsageError("example_inputs must be a tuple of one image tensor (N, 3, H, W): edgeml compiles models "
                         "that take one image batch")
    return tuple(example_inputs[0].shape)


def _check_resolution(config: ModelConfig, resolution: int) -> None:
    if resolution < 1 or resolution % config.stride or not config.min_resolution <= resolution <= \
            config.max_resolution:
        raise InputShapeError(
            f"{config.name} takes square inputs that are multiples of {config.stride} between "
            f"{config.min_resolution} and {config.max_resolution}; {resolution} is not one"
        )


def _check_dynamic_resolution(config: ModelConfig, dynamic: tuple[int, int] | None) -> tuple[int, int] | None:
    if dynamic is None:
        return None
    lo, hi = (int(v) for v in dynamic)
    for r in (lo, hi):
        _check_resolution(config, r)
    if not lo <= config.resolution <= hi or lo == hi:
        raise UsageError(f"dynamic resolution {lo}:{hi} must be a range that contains {config.resolution}")
    return lo, hi


def _check_quantization(scheme: Any, q: Quantization) -> None:
    if not scheme.calibrated and scheme.name != "none" and (q.calibration is not None or
                                                            q.calibration_images is not None):
        raise UsageError(f"--quantize {scheme.name} {scheme.why_uncalibrated} and takes no calibration "
                         "images (drop --calibration/--calibration-images, or use --quantize int8)")
    if (q.target_db is not None or q.keep_fp32) and scheme.name == "none":
        raise UsageError("there is nothing to keep in fp32 without --quantize")
    if (q.target_db is not None or q.keep_fp32) and scheme.name == "fp16":
        raise UsageError("--quantize fp16 runs every layer in fp16: keeping layers in fp32 (--keep-fp32, or "
                         "the search for them) applies to the int8 schemes and 8da4w")
    if q.target_db is not None and q.keep_fp32:
        raise UsageError("--keep-fp32 names the fp32 layers itself; it does not combine with the search for them "
                         "(--min-sqnr with a quantized scheme): pass --max-fp32-layers 0 to only verify")
    if q.max_fp32_layers is not None and q.max_fp32_layers < 0:
        raise UsageError("--max-fp32-layers N takes N >= 0")


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


# -- passes --------------------------------------------------------------------------------------------


def prepare_for_export(model: nn.Module, example_inputs: tuple, *, format: str | None = None,
                       backend: str | None = None) -> nn.Module:
    """Function-preserving module passes: the generic ones (reparameterization of blocks that
    follow the common conventions, export forms, BatchNorm folding), then the backend's own
    (``format``/``backend``: XNNPACK's LayerNorm and context-tiling rewrites; none for ONNX)."""
    from edgeml.backends import backend_for, get_backend
    from edgeml.export.passes.batchnorm import fold_batchnorm
    from edgeml.export.passes.export_form import to_export_form
    from edgeml.export.passes.reparameterize import reparameterize_model

    chosen = None
    if format is not None:
        chosen = backend_for(format, backend)
    elif backend is not None:
        chosen = get_backend(backend)
    model = to_export_form(reparameterize_model(model), backend=chosen.name if chosen else None)
    model = fold_batchnorm(model, example_inputs)
    return chosen.prepare(model, example_inputs) if chosen is not None else model


def run_passes(state: ExportState) -> ExportState:
    with stage("passes", state):
        state.prepared = prepare_for_export(state.module, state.example, format=state.target.format,
                                            backend=state.target.backend)
    return state


# -- compile: capture, quantize, decompose, lower --------------------------------------------------------


def compile_program(state: ExportState, *, on_batch: Callable[[], None] | None = None) -> ExportState:
    """Quantize (calibrated on the calibration images) and make the backend's ``Program``."""
    from edgeml.backends import CompileSpec
    from edgeml.quantize import load_inputs

    assert state.prepared is not None, "run_passes first"
    example_batch = state.example[0].shape[0]
    calibration = [torch.cat([x] * example_batch) for x in load_inputs(state.calibration_paths, state.pre)]
    workdir = Path(state.workdir.enter_context(tempfile.TemporaryDirectory(prefix="edgeml-export-")))
    spec = CompileSpec(scheme=state.scheme, observer=state.observer, calibration=calibration,
                       group_size=state.quantization.group_size, dynamic_shapes=state.dynamic_shapes,
                       output_names=state.output_names, model_name=state.config.name, workdir=workdir,
                       on_batch=on_batch)
    with stage("quantize" if state.scheme.name != "none" else "capture", state):
        state.program = state.backend.compile(state.prepared, state.example, spec)
    return state


def lower(state: ExportState) -> ExportState:
    """Serialize the program with the fp32 layers asked for, or search for them (``target_db``)."""
    q = state.quantization
    session = state.program.session
    with stage("lower", state):
        state.fp32_layers = session.check_names(q.keep_fp32) if session is not None else []
        state.data, state.delegation = state.program.build(state.fp32_layers)
        if q.target_db is not None and session is not None and q.max_fp32_layers != 0:
            _search_fp32_layers(state)
    return state


def _search_fp32_layers(state: ExportState) -> None:
    """The mixed-precision search (edgeml.quantize.mixed), with export's own lowering and parity."""
    from edgeml.quantize import load_inputs
    from edgeml.quantize.mixed import keep_fp32_until

    # The search starts from the layers given in fp32 (--keep-fp32), already built.
    given = list(state.fp32_layers)
    built: dict[tuple[str, ...], tuple[bytes, dict]] = {tuple(given): (state.data, state.delegation)}

    def build_and_measure(fp32_layers: list[str]) -> float:
        built[tuple(fp32_layers)] = state.program.build(fp32_layers)
        return measure(state, built[tuple(fp32_layers)][0])["worst_sqnr_db"]

    inputs = load_inputs(state.verify_paths, state.pre)
    reference = _reference(state)
    with torch.no_grad():
        refs = [[t.float() for t in _tensors(reference(x))] for x in inputs]
    result = keep_fp32_until(state.program.session, build_and_measure, float(state.quantization.target_db),
                             inputs, refs, logits=state.config.output == "logits",
                             quantized_db=measure(state, state.data)["worst_sqnr_db"],
                             max_fp32_layers=state.quantization.max_fp32_layers,
                             on_layer=state.quantization.on_layer, keep=given)
    state.data, state.delegation = built[tuple(result.fp32_layers)]
    state.fp32_layers, state.mixed = list(result.fp32_layers), result


# -- parity --------------------------------------------------------------------------------------------


def measure(state: ExportState, data: bytes, paths: Sequence[Path] | None = None,
            pre: Preprocessing | None = None) -> dict[str, Any]:
    """Parity of serialized program bytes against the eager model on real images (on the verify
    images, measured once per program)."""
    from edgeml.runtime.runners import runner_from_bytes
    from edgeml.runtime.verify import measure_parity

    key = hashlib.sha256(data).hexdigest() if paths is None and pre is None else None
    if key in state.measured:
        return copy.deepcopy(state.measured[key])
    runner = runner_from_bytes(data, state.backend.name)
    runner.dynamic_axes = [state.dynamic_axes]
    parity = measure_parity(_reference(state), runner, paths or state.verify_paths, pre or state.pre, state.config,
                            batch=state.example[0].shape[0], output_names=state.output_names)
    if key is not None:
        state.measured[key] = copy.deepcopy(parity)
    return parity


def _reference(state: ExportState) -> Callable[[torch.Tensor], Any]:
    """``state.module``, run once per distinct input (by its bytes) in this export."""
    outputs = state.reference_outputs

    def run(x: torch.Tensor) -> Any:
        key = (tuple(x.shape), x.dtype, hashlib.sha256(x.detach().contiguous().numpy().tobytes()).hexdigest())
        if key not in outputs:
            outputs[key] = state.module(x)
        return outputs[key]

    return run


def check_parity(state: ExportState) -> ExportState:
    """Run the bytes in the edge runtime against eager PyTorch; below ``min_sqnr`` nothing is
    written, below the scheme's default threshold the manifest and the caller get a warning."""
    from edgeml.quantize.schemes import default_min_sqnr

    with stage("parity", state):
        parity = measure(state, state.data)
        dynamic = state.target.dynamic_resolution
        if dynamic is not None:
            # One program, several shapes: check the ends of the range too (two images each).
            config = state.config
            parity["resolutions"] = {}
            for r in sorted({int(dynamic[0]), config.resolution, int(dynamic[1])}):
                pre = Preprocessing.for_resolution(r, config.mean, config.std, config.crop_fraction)
                sub = parity if r == config.resolution else measure(state, state.data, state.verify_paths[:2], pre)
                parity["resolutions"][str(r)] = sub["worst_sqnr_db"]
            parity["worst_sqnr_db"] = min(parity["resolutions"].values())
    min_sqnr = state.verification.min_sqnr
    if min_sqnr is None and state.quantization.target_db is not None:
        min_sqnr = state.quantization.target_db
    default = default_min_sqnr(state.scheme.name)
    threshold = default if min_sqnr is None else float(min_sqnr)
    parity["threshold_db"] = threshold
    name = artifact_name(state)
    if min_sqnr is not None and parity["worst_sqnr_db"] < threshold:
        raise VerificationError(
            f"parity: {name}: SQNR {parity['worst_sqnr_db']:.1f} dB is below the {threshold:g} dB threshold; "
            "nothing was written (lower --min-sqnr, or see `edgeml quantize-report`)"
        )
    if min_sqnr is None and parity["worst_sqnr_db"] < default:
        hint = ("--min-sqnr DB keeps the most sensitive layers in fp32 until DB is reached"
                if state.scheme.name != "none" else "see `edgeml verify` for the worst images")
        state.warnings.append(f"{name}: worst-image SQNR {parity['worst_sqnr_db']:.1f} dB is below the "
                              f"{default:g} dB default for {state.scheme.name}; `edgeml verify` will fail it "
                              f"({hint})")
        parity["below_default_threshold"] = True
    if state.scheme.name == "fp16":
        from edgeml.quantize.fp16 import HOST_FP32_NOTE, host_fp16_arithmetic

        parity["host_fp16_arithmetic"] = host_fp16_arithmetic()
        if not parity["host_fp16_arithmetic"]:
            state.loaded.notes.append(HOST_FP32_NOTE)
    state.parity = parity
    return state


# -- write ---------------------------------------------------------------------------------------------


def artifact_name(state: ExportState) -> str:
    """ExecuTorch benchmark naming ``<model>_<backend>_<quant>``; the model part is tagged with a
    non-default resolution (``_r512``), a dynamic range (``_r256-1024``) or batch (``_b4``, ``_bdyn16``)."""
    config, t = state.config, state.target
    default_resolution = config.resolution
    if state.loaded is not None and state.loaded.source == "zoo":
        from edgeml.models import get_model_config

        default_resolution = get_model_config(str(state.loaded.reference)).resolution
    return format_artifact_name(config.name, state.backend, state.scheme.tag, config.resolution, default_resolution,
                                batch=state.batch, dynamic_batch=t.dynamic_batch,
                                dynamic_resolution=t.dynamic_resolution)


def format_artifact_name(model: str, backend: Any, tag: str, resolution: int, default_resolution: int, *,
                         batch: int = 1, dynamic_batch: bool = False,
                         dynamic_resolution: tuple[int, int] | None = None) -> str:
    name = model
    if dynamic_resolution is not None:
        name += f"_r{dynamic_resolution[0]}-{dynamic_resolution[1]}"
    elif resolution != default_resolution:
        name += f"_r{resolution}"
    if dynamic_batch:
        name += f"_bdyn{batch}"
    elif batch != 1:
        name += f"_b{batch}"
    return f"{name}_{backend.name}_{tag}{backend.suffix}"


def make_manifest(state: ExportState) -> Manifest:
    loaded, config = state.loaded, state.config
    assert loaded is not None and state.parity is not None
    with torch.no_grad():
        outputs = [o[:1].expand(state.batch, *o.shape[1:]) for o in _tensors(state.module(state.example[0][:1]))]
    names = state.output_names
    # Of several named outputs only the one called "logits" is class logits (a dict or ModelOutput).
    kinds = [config.output if len(names) == 1 or config.output != "logits" or "logits" not in names or n == "logits"
             else "features" for n in names]
    output_specs = [TensorSpec(n, list(o.shape), "float32", layout="", kind=kind)
                    for n, o, kind in zip(names, outputs, kinds)]
    if loaded.labels is not None and output_specs:
        output_specs[0].labels = list(loaded.labels)
    preprocessing = state.pre.to_dict()
    preprocessing["source"] = _preprocessing_source(state)
    tiling = dict(config.extra.get("tiling", {}))
    if tiling:
        # Tile encoders: the host cuts the image into tiles (edgeml.dynres) and runs them
        # `batch` at a time; each tile is preprocessed with the mean/std above.
        tiling.update(tile=config.resolution, batch=state.batch, dynamic_batch=state.target.dynamic_batch)
        preprocessing["tiling"] = tiling
    model = {"name": config.name, "reference": str(loaded.reference) if loaded.source != "instance" else
             loaded.reference, **loaded.record, "config": config.to_dict()}
    return Manifest(
        artifact={"file": artifact_name(state), "format": state.backend.format, "backend": state.backend.name,
                  "sha256": "", "size_bytes": 0},
        model=model,
        inputs=[TensorSpec("image", [state.batch, *state.example[0].shape[1:]], "float32", "NCHW",
                           dynamic=state.dynamic_axes)],
        outputs=output_specs,
        preprocessing=preprocessing,
        quantization=quantization_record(state.scheme, state.observer, state.calibration_paths,
                                         state.quantization.calibration, state.program.session, state.fp32_layers,
                                         state.mixed, state.quantization.group_size),
        delegation=state.delegation,
        parity=state.parity,
        tools=tool_versions(),
        created=utc_now(),
    )


def _preprocessing_source(state: ExportState) -> str:
    o, loaded = state.model_options, state.loaded
    if o.mean is not None or o.std is not None or o.resize is not None:
        return "options"
    if loaded.source == "zoo":
        return "the zoo config"
    if loaded.source == "huggingface":
        return "preprocessor_config.json" if (Path(loaded.reference) / "preprocessor_config.json").is_file() else \
            "default: ImageNet mean/std"
    return "default: ImageNet mean/std" if loaded.notes else "the model's edgeml_config"


def write(state: ExportState, output_dir: str | Path) -> Path:
    """Artifact, then manifest, each through a temp file and a rename."""
    from edgeml.manifest import atomic_write_bytes

    with stage("write", state):
        target = Path(output_dir) / artifact_name(state)
        manifest = make_manifest(state)
        if state.target.bundle:
            from edgeml.quantize import load_inputs
            from edgeml.runtime.bundled import bundle_path, write_bundle

            paths, b = state.verify_paths, state.batch
            cases = [torch.cat([load_inputs([paths[(i * b + j) % len(paths)]], state.pre)[0] for j in range(b)])
                     for i in range(state.target.bundle)]
            manifest.artifact["bundle"] = write_bundle(bundle_path(target), state.data, state.module, cases,
                                                       state.scheme.name)
        manifest.artifact["export_seconds"] = round(time.perf_counter() - state.started, 1)
        # The artifact is renamed into place first and the manifest second; a reader that finds a
        # stale manifest next to a new artifact rejects it by sha256, never runs mismatched files.
        atomic_write_bytes(target, state.data)
        manifest.artifact["sha256"] = sha256_file(target)
        manifest.artifact["size_bytes"] = target.stat().st_size
        atomic_write_json(manifest_path(target), manifest.to_dict())
        state.manifest = manifest
    return target


def quantization_record(scheme: Any, observer: str | None, calibration_paths: Sequence[Path],
                        calibration: str | Path | None, session: Any, fp32_layers: Sequence[str], mixed: Any,
                        group_size: int) -> dict[str, Any]:
    """The manifest's ``quantization``: scheme, calibration, the layers kept in fp32 and why."""
    record: dict[str, Any] = {"scheme": scheme.name, "description": scheme.description}
    if scheme.calibrated:
        record["calibration"] = {"images": len(calibration_paths), "observer": observer,
                                 "source": str(calibration) if calibration else "edgeml sample images"}
    else:
        source = {"none": "none", "fp16": "none: fp16 needs no ranges"}.get(
            scheme.name, "none: activations are quantized at run time")
        record["calibration"] = {"images": 0, "source": source}
    if scheme.name == "fp16":
        from edgeml.quantize.fp16 import precision_record

        record["precision"] = precision_record()
    if scheme.name == "8da4w":
        record["group_size"] = group_size
    record["fp32_layers"] = list(fp32_layers)
    if session is not None:
        record["layers"] = {"quantized": len(session.groups) - len(fp32_layers), "total": len(session.groups)}
        # Not counted in "total": the scheme never quantizes them (``Pt2eSession``'s docstring).
        if session.norm_fp32:
            record["norm_statistics"] = {"precision": "fp32", "layers": len(session.norm_fp32)}
        if session.constant_fp32:
            record["constant_layers"] = {"precision": "fp32 (folded at export)", "layers": list(session.constant_fp32)}
    if mixed is not None:
        record["mixed_precision"] = mixed.to_dict()
    return record


def _tensors(y: Any) -> list[torch.Tensor]:
    from edgeml.export.outputs import output_tensors

    return output_tensors(y)

