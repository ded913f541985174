"""Quantization: schemes, calibration, per-layer sensitivity and automatic mixed precision.

* ``schemes``: int8 (static, calibrated), int8-dynamic, 8da4w (torchao, Linear only) and how each
  maps onto PT2E's ``XNNPACKQuantizer``, torchao's ``quantize_`` and ONNX Runtime's quantizers.
* ``session``: a model quantized once (one calibration) that can be simulated or converted with
  any set of layers left in fp32.
* ``sensitivity``: the output error each layer alone introduces, ranked.
* ``mixed``: keep the most sensitive layers in fp32 until a target SQNR is measured in the runtime.
* ``report``: ``quantize_report`` (the ``edgeml quantize-report`` command).

Calibration uses real images preprocessed exactly as the manifest says: the shipped samples by
default, ``--calibration DIR`` for your own, at most ``--calibration-images N`` of them.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from edgeml.errors import ImageError
from edgeml.images import Preprocessing, list_images, load_image, sample_images
from edgeml.quantize.schemes import SCHEME_INFO, get_scheme

SCHEMES = {name: s.description for name, s in SCHEME_INFO.items()}


def check_scheme(scheme: str) -> str:
    return get_scheme(scheme).name


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
    scheme: str = "int8",
    observer: str | None = None,
    dynamic_shapes: object | None = None,
    on_batch: Callable[[], None] | None = None,
) -> nn.Module:
    """PT2E int8 (static, or ``scheme="int8-dynamic"``) for XNNPACK; the converted (Q/DQ) graph module.

    ``dynamic_shapes`` must be the ones the final export uses too: a program captured static
    here and dynamic later fails at run time with "Attempted to resize a static tensor".
    """
    from edgeml.quantize.schemes import resolve_observer
    from edgeml.quantize.session import Pt2eSession

    info = get_scheme(scheme, "pte")
    session = Pt2eSession(model, example_inputs, info, resolve_observer(info, "pte", observer), calibration,
                          dynamic_shapes=dynamic_shapes, on_batch=on_batch)
    return session.quantized_module()


def quantize_onnx_static(
    src: Path,
    dst: Path,
    input_name: str,
    calibration: Sequence[torch.Tensor],
    *,
    nodes_to_exclude: Sequence[str] = (),
    observer: str = "minmax",
) -> None:
    """ONNX Runtime static QDQ int8 (per-channel int8 weights, uint8 activations)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeml.quantize.schemes import ort_calibration_method

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
            calibrate_method=ort_calibration_method(observer),
            nodes_to_exclude=list(nodes_to_exclude),
        )
    finally:
        prepped.unlink(missing_ok=True)


def quantize_onnx_dynamic(src: Path, dst: Path, *, nodes_to_exclude: Sequence[str] = ()) -> None:
    """ONNX Runtime dynamic int8 (per-channel int8 weights, uint8 activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_exclude=list(nodes_to_exclude))


__all__ = ["SCHEMES", "calibration_images", "check_scheme", "load_inputs", "quantize_onnx_dynamic",
           "quantize_onnx_static", "quantize_pt2e"]
