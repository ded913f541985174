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
    from edgeml.backends.xnnpack.quantizer import Pt2eSession
    from edgeml.quantize.schemes import resolve_observer

    info = get_scheme(scheme, "pte")
    session = Pt2eSession(model, example_inputs, info, resolve_observer(info, "pte", observer), calibration,
                          dynamic_shapes=dynamic_shapes, on_batch=on_batch)
    return session.quantized_module()


__all__ = ["SCHEMES", "calibration_images", "load_inputs", "quantize_pt2e"]
