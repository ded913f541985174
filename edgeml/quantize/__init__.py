"""Quantization recipes: PT2E static int8 for .pte (XNNPACKQuantizer), ORT QDQ static int8 for .onnx.

Both are calibrated on the same real images, preprocessed exactly as the manifest says.
Scheme "int8": per-channel symmetric int8 weights, per-tensor int8 activations.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from edgeml.errors import ImageError, UsageError
from edgeml.images import Preprocessing, list_images, load_image, sample_images

SCHEMES = {
    "none": "fp32 (no quantization)",
    "int8": "static int8: per-channel symmetric weights, per-tensor activations, calibrated on images",
}


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise UsageError(f"unknown quantization {scheme!r}; choose one of {', '.join(SCHEMES)}")
    return scheme


def calibration_images(folder: str | Path | None, max_images: int | None = None) -> list[Path]:
    """The user's images (``--calibration DIR``) or the shipped samples."""
    paths = list_images(folder) if folder is not None else sample_images()
    if max_images is not None:
        if max_images < 1:
            raise ImageError("the calibration set is empty: pass at least one image")
        paths = paths[:max_images]
    return paths


def load_inputs(paths: Sequence[Path], pre: Preprocessing) -> list[torch.Tensor]:
    return [pre(load_image(p)) for p in paths]


def quantize_pt2e(
    model: nn.Module,
    example_inputs: tuple,
    calibration: Sequence[torch.Tensor],
    *,
    dynamic_shapes: object | None = None,
    on_batch: Callable[[], None] | None = None,
) -> nn.Module:
    """Static int8 PT2E for XNNPACK; returns the converted (Q/DQ) graph module.

    ``dynamic_shapes`` must be the ones the final export uses too: a program captured static
    here and dynamic later fails at run time with "Attempted to resize a static tensor".
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    graph = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(x)
            if on_batch:
                on_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_pt2e(prepared)


def quantize_onnx_static(
    src: Path,
    dst: Path,
    input_name: str,
    calibration: Sequence[torch.Tensor],
    *,
    nodes_to_exclude: Sequence[str] = (),
) -> None:
    """ONNX Runtime static QDQ int8 (per-channel weights, uint8 activations)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x.numpy()}

    prepped = dst.with_name(dst.stem + ".prep.onnx")
    try:
        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
        quantize_static(
            str(prepped), str(dst), _Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(nodes_to_exclude),
        )
    finally:
        prepped.unlink(missing_ok=True)
