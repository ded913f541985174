"""edgeml.export: from any PyTorch model to an on-device program and its manifest.

``export(model, ...)`` runs the pipeline's stages (``edgeml.export.pipeline``), each a plain
function over one ``ExportState`` that you can call alone:

    build      the model from a zoo name, FILE.py:CALLABLE, package.module:CALLABLE, a Hugging Face
               directory or an nn.Module (edgeml.models.source); example inputs from real images
    passes     generic: reparameterize blocks that follow the common conventions, export forms,
               fold BatchNorm; then the backend's own (edgeml.backends.<name>.prepare)
    capture    torch.export
    quantize   a scheme of edgeml.quantize.schemes, through the backend's quantizer session; with a
               target SQNR the most sensitive layers are kept in fp32 until the edge runtime reaches it
    decompose  edgeml custom ops -> plain aten (edgeml.kernels.decomposition_table), constants folded
    lower      the backend: XNNPACK partitioner -> .pte | dynamo ONNX exporter -> .onnx
    parity     the serialized bytes run in the edge runtime vs eager PyTorch, on real images
    write      artifact + manifest, atomically (temp file, then rename)

Nothing is written unless every stage succeeded, and with ``min_sqnr`` set an artifact below
the threshold is not written either, so a failed export never replaces a good artifact.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.errors import LoweringError
from edgeml.manifest import Manifest, manifest_path
from edgeml.quantize.schemes import SCHEME_INFO

QUANT_TAGS = {name: s.tag for name, s in SCHEME_INFO.items()}
DEFAULT_MIN_SQNR = {name: s.default_min_sqnr for name, s in SCHEME_INFO.items()}

Progress = Callable[[str], None]


@dataclass
class Artifact:
    """An exported program and its manifest, as written to disk."""

    path: Path
    manifest: Manifest
    export_seconds: float
    warnings: tuple[str, ...] = ()  # e.g. parity below the scheme's default threshold
    # defaults edgeml chose for a model that did not say (ImageNet mean/std); what the parity
    # figures measure where that is not the phone's arithmetic (fp16 on a CPU without fp16)
    notes: tuple[str, ...] = ()

    @property
    def manifest_path(self) -> Path:
        return manifest_path(self.path)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def export(
    model: str | nn.Module,
    *,
    format: str = "pte",
    quantize: str = "none",
    resolution: int | None = None,
    output_dir: str | Path = ".",
    example_inputs: tuple | None = None,
    input_shape: Sequence[int] | None = None,
    checkpoint: str | Path | Mapping[str, Any] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    min_sqnr: float | None = None,
    fp32_fallback: bool = False,
    max_fp32_layers: int | None = None,
    keep_fp32: Sequence[str] = (),
    calibration: str | Path | None = None,
    calibration_images: int | None = None,
    observer: str | None = None,
    group_size: int = 32,
    verify_images: str | Path | None = None,
    batch: int | None = None,
    dynamic_batch: bool = False,
    dynamic_resolution: tuple[int, int] | None = None,
    bundle: int = 0,
    model_options: Any = None,
    target: Any = None,
    quantization: Any = None,
    verification: Any = None,
    progress: Progress | None = None,
    on_layer: Callable[[int, int], None] | None = None,
) -> Artifact:
    """Compile ``model`` into a ``format`` ("pte" | "onnx") program with its manifest (module doc).

    ``model`` is a zoo name, ``"path/net.py:build"``, ``"pkg.mod:build"``, a Hugging Face model
    directory or an ``nn.Module``; for the last two kinds of callables and modules, give
    ``example_inputs=(x,)`` or ``input_shape=(1, 3, H, W)`` (``edgeml.models.source``).

    The keywords are shortcuts for the grouped options, which may also be passed whole:
    ``model_options`` (``edgeml.models.source.ModelOptions``: checkpoint, seed, model arguments,
    preprocessing, labels, classes), ``target`` (``pipeline.Target``: format, backend, batch,
    dynamic shapes, bundle), ``quantization`` (``pipeline.Quantization``: scheme, calibration,
    fp32 layers, the search target) and ``verification`` (``pipeline.Verification``: images,
    threshold). A keyword given explicitly overrides the same field of a group.

    ``min_sqnr``: nothing is written below it. With ``fp32_fallback`` it is also the target of the
    mixed-precision search: the most sensitive layers are kept in fp32 (at most
    ``max_fp32_layers``) until the SQNR measured in the edge runtime reaches it.
    """
    from dataclasses import replace

    from edgeml.export import pipeline as p
    from edgeml.models.source import ModelOptions

    mo = model_options or ModelOptions()
    mo = replace(mo, **_given(checkpoint=checkpoint, seed=seed if seed != 0 else None,
                              kwargs=dict(model_kwargs) if model_kwargs else None, resolution=resolution,
                              input_shape=tuple(input_shape) if input_shape is not None else None))
    t = target or p.Target()
    t = replace(t, **_given(format=format if format != "pte" else None, batch=batch,
                            dynamic_batch=dynamic_batch or None, dynamic_resolution=dynamic_resolution,
                            bundle=bundle or None))
    q = quantization or p.Quantization()
    q = replace(q, **_given(scheme=quantize if quantize != "none" else None, calibration=calibration,
                            calibration_images=calibration_images, observer=observer,
                            group_size=group_size if group_size != 32 else None,
                            keep_fp32=tuple(keep_fp32) or None,
                            target_db=min_sqnr if fp32_fallback else None, max_fp32_layers=max_fp32_layers,
                            on_layer=on_layer))
    if fp32_fallback and min_sqnr is None and q.target_db is None:
        from edgeml.errors import UsageError

        raise UsageError("keeping layers in fp32 needs a target: pass min_sqnr (--min-sqnr DB)")
    v = verification or p.Verification()
    v = replace(v, **_given(images=verify_images, min_sqnr=min_sqnr))

    state = p.build(model, mo, t, q, v, example_inputs=example_inputs, progress=progress)
    with state.workdir:
        p.run_passes(state)
        p.compile_program(state)
        p.lower(state)
        p.check_parity(state)
        path = p.write(state, output_dir)
    return Artifact(path, state.manifest, time.perf_counter() - state.started, tuple(state.warnings),
                    tuple(state.loaded.notes))


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def prepare_for_export(model: nn.Module, example_inputs: tuple, *, format: str | None = None,
                       backend: str | None = None) -> nn.Module:
    """Function-preserving module passes (see ``pipeline.prepare_for_export``)."""
    from edgeml.export.pipeline import prepare_for_export as prepare

    return prepare(model, example_inputs, format=format, backend=backend)


def artifact_name(model: str, fmt: str, quantize: str, resolution: int, default_resolution: int, *,
                  batch: int = 1, dynamic_batch: bool = False,
                  dynamic_resolution: tuple[int, int] | None = None) -> str:
    """The file name ``export`` gives a program (``pipeline.format_artifact_name``)."""
    from edgeml.backends import backend_for
    from edgeml.export.pipeline import format_artifact_name

    return format_artifact_name(model, backend_for(fmt), QUANT_TAGS[quantize], resolution, default_resolution,
                                batch=batch, dynamic_batch=dynamic_batch, dynamic_resolution=dynamic_resolution)


def decompose_custom_ops(exported: torch.export.ExportedProgram, *, backend: str | None = None,
                         extra: dict | None = None) -> torch.export.ExportedProgram:
    """Replace edgeml custom ops by their plain-aten chunked forms (no custom kernels on device).

    ``backend`` (a backend name) also applies, in the same retrace, the decompositions that the
    backend's lowering would apply (XNNPACK: ``xnnpack_decomposition_table``; ``lower_to_pte`` then
    skips its own three whole-program retraces, ``skip_empty_decompositions``). Without a backend the
    custom ops take their ONNX-friendly forms. ``extra`` adds decompositions of the caller's (fp16
    programs: ``edgeml.quantize.fp16.fp16_decompositions``). Chained and
    identity reshapes and zero pads are dropped afterwards (``passes.reshapes.simplify_reshapes``)."""
    from edgeml.backends import get_backend
    from edgeml.backends.xnnpack.lowering import cached_signature_maps, deferred_recompiles
    from edgeml.export.passes.reshapes import simplify_reshapes

    try:
        from edgeml.kernels import decomposition_table
        custom = decomposition_table(onnx=backend is None)  # without a backend: for ONNX
    except ImportError:
        custom = {}
    table = {**get_backend(backend).decomposition_table(exported), **custom} if backend else dict(custom)
    table.update(extra or {})
    has_custom = bool({n.target for n in exported.graph.nodes if n.op == "call_function"} & set(custom))
    if not has_custom and not ((backend or extra) and table):
        return exported
    # The signature's name maps cached: constant propagation asks them per placeholder (6% of
    # RAVLT-B's int8 export in py-spy, rebuilt on every read).
    with deferred_recompiles(), cached_signature_maps():
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
    (``xnn_status_invalid_parameter`` when it propagates the input shapes).

    ExecuTorch 1.5.1's pass counts an argument as constant only if it is a node or one of its
    primitive types, which leave out ``torch.memory_format``: every ``clone(x,
    memory_format=torch.contiguous_format)`` (what ``.contiguous()`` and ``reshape`` of a permuted
    tensor capture as) stopped the fold, and the computation after it stayed in the graph. The
    memory format is counted as the constant it is while the pass runs."""
    from executorch.exir.operator.util import _QUANT_PRIMITIVES
    from executorch.exir.passes import constant_prop_pass as prop

    from edgeml.backends.xnnpack.lowering import _replaced

    with _replaced(prop, "_PRIMITIVE_TYPES", (*prop._PRIMITIVE_TYPES, torch.memory_format)):
        # A tensor's ``.item()`` (``_local_scalar_dense``) gives a Python number, which the pass
        # cannot hold as a constant tensor (SigLIP2's patch-count checks): it stays.
        skip = {*_QUANT_PRIMITIVES, torch.ops.aten._local_scalar_dense.default}
        folded = prop.constant_prop_pass(exported, custom_skip_targets=skip)
    for name, value in folded.constants.items():
        if isinstance(value, torch.Tensor) and value.stride() != _standard_strides(value.shape):
            folded.constants[name] = value.clone(memory_format=torch.contiguous_format)
    # The placeholders' fake values too: ExecuTorch serializes a constant's dim order from them, and
    # a folded permute's strides there made XNNPACK read (1, 2, 16, 16) as another layout.
    lifted = folded.graph_signature.inputs_to_lifted_tensor_constants
    for node in folded.graph.find_nodes(op="placeholder"):
        fake = node.meta.get("val")
        if (node.name in lifted and isinstance(fake, torch.Tensor)
                and fake.stride() != _standard_strides(fake.shape)):
            mode = getattr(fake, "fake_mode", None)
            with mode if mode is not None else contextlib.nullcontext():
                node.meta["val"] = torch.empty(fake.shape, dtype=fake.dtype, device=fake.device)
    return folded


def _standard_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(int(size), 1)
    return tuple(reversed(strides))


def capture(model: nn.Module, example_inputs: tuple, dynamic_shapes: object | None = None
            ) -> torch.export.ExportedProgram:
    """``torch.export.export``; a model it cannot capture is a LoweringError with torch's first line
    (the graph torch dumps on stderr when it fails is not shown; EDGEML_DEBUG=1 shows it)."""
    import contextlib
    import io
    import os

    from edgeml.runtime.runners import quiet_native_stderr

    quiet = contextlib.nullcontext() if os.environ.get("EDGEML_DEBUG") else contextlib.redirect_stderr(io.StringIO())
    try:
        with quiet_native_stderr(), quiet:
            return torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoweringError(f"torch.export failed: {first}") from e


__all__ = ["Artifact", "DEFAULT_MIN_SQNR", "artifact_name", "capture", "decompose_custom_ops", "export",
           "fold_constants", "prepare_for_export"]
