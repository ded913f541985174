"""Quantization schemes, per format, and the library configurations behind them.

=============  ===========================================================  =====================================
scheme         .pte (ExecuTorch, XNNPACK)                                   .onnx (ONNX Runtime)
=============  ===========================================================  =====================================
int8           PT2E ``XNNPACKQuantizer`` static: per-channel symmetric int8  ``quantize_static`` QDQ: per-channel
               weights, per-tensor int8 activations calibrated on images    int8 weights (7-bit range), uint8
                                                                            activations
int8-dynamic   PT2E ``XNNPACKQuantizer`` dynamic: per-channel int8 weights,  ``quantize_dynamic``: per-channel int8
               activations quantized per tensor at run time (no images)     weights (7-bit range), uint8
                                                                            activations at run time
8da4w          torchao ``Int8DynamicActivationIntxWeightConfig``: Linear     not available (no ORT equivalent that
               layers only, int4 weights in groups along in-features,       runs Gemm; use int8 or int8-dynamic)
               int8 activations at run time
fp16           the whole model in fp16 on XNNPACK's fp16 kernels (GELU in   the graph in float16; ORT's CPU
               its tanh form, ``edgeml.quantize.fp16``); fp32 input/output   provider casts to fp32 around ops it
                                                                            has no fp16 kernel for
=============  ===========================================================  =====================================

The observers (how a calibrated scheme turns the images into ranges) are the libraries' own:
``histogram`` (XNNPACKQuantizer's default, ``HistogramObserver``) or ``minmax`` for PT2E;
``minmax`` (ORT's default), ``entropy`` or ``percentile`` for ONNX Runtime's calibrators.
ONNX Runtime's int8 weights use 7 bits of range (``reduce_range``): its x86 integer kernels
saturate otherwise on CPUs without VNNI (see ``edgeml.backends.ort.quantizer.ORT_REDUCE_RANGE``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgeml.errors import UsageError

# fp16 rounds every weight and activation to 11 significant bits: one op's relative error is at
# most 2**-11 (~66 dB), and a deep network adds those errors over 50 - 700 ops and amplifies them
# through its normalizations. 30 dB (3% RMS error) is what the zoo's .pte programs clear with 1.5 -
# 16.6 dB to spare (benchmarks/RESULTS.md, "fp16"); the exceptions are the random-init
# MobileNetV1s (22 - 24 dB), whose plain chain of layers amplifies any perturbation (their fp32
# programs read 95 dB, int8 11 dB). Far below 30 dB is an overflow past fp16's 65504 (a variance,
# an attention logit), not rounding.
FP16_MIN_SQNR = 30.0


@dataclass(frozen=True)
class Scheme:
    name: str
    tag: str  # artifact file name: <model>_<backend>_<tag>.pte
    description: str
    formats: tuple[str, ...]
    calibrated: bool
    default_min_sqnr: float

    @property
    def why_uncalibrated(self) -> str:
        """What an uncalibrated scheme does instead of calibrating, for error messages."""
        return "computes in fp16" if self.name == "fp16" else "quantizes activations at run time"

    @property
    def layerwise(self) -> bool:
        """Whether single layers can be left in fp32 (``--keep-fp32``, the mixed-precision search)."""
        return self.name not in ("none", "fp16")


_SCHEMES = (
    Scheme("none", "fp32", "fp32 (no quantization)", ("pte", "onnx"), False, 60.0),
    Scheme("int8", "int8",
           "static int8: per-channel symmetric weights, per-tensor activations, calibrated on images",
           ("pte", "onnx"), True, 25.0),
    Scheme("int8-dynamic", "int8dyn",
           "dynamic int8: per-channel symmetric int8 weights, activations quantized per tensor at run time",
           ("pte", "onnx"), False, 25.0),
    Scheme("8da4w", "8da4w",
           "8da4w: Linear layers with int4 weights (symmetric, per group of in-features) and int8 dynamic "
           "activations; other layers fp32", ("pte",), False, 12.0),
    Scheme("fp16", "fp16",
           "fp16: weights and activations in half precision (fp32 image input and outputs)",
           ("pte", "onnx"), False, FP16_MIN_SQNR),
)
SCHEME_INFO: dict[str, Scheme] = {s.name: s for s in _SCHEMES}


def default_min_sqnr(scheme: str) -> float:
    """The parity threshold (dB) for ``scheme`` when none is given: the one table that ``export --verify``,
    ``verify`` and the help texts use. An unknown scheme is a UsageError."""
    return get_scheme(scheme).default_min_sqnr


def default_min_sqnr_text() -> str:
    """The default thresholds in words, for help texts: "60 dB fp32, 25 dB int8 and int8-dynamic, ..."."""
    by_db: dict[float, list[str]] = {}
    for s in _SCHEMES:
        by_db.setdefault(s.default_min_sqnr, []).append("fp32" if s.name == "none" else s.name)
    return ", ".join(f"{db:g} dB {' and '.join(names)}" for db, names in by_db.items())

OBSERVERS: dict[str, tuple[str, ...]] = {
    "pte": ("histogram", "minmax"),
    "onnx": ("minmax", "entropy", "percentile"),
}
GROUP_SIZES = (32, 64, 128, 256)


def get_scheme(name: str, fmt: str | None = None) -> Scheme:
    scheme = SCHEME_INFO.get(name)
    if scheme is None:
        raise UsageError(f"unknown quantization {name!r}; choose one of {', '.join(SCHEME_INFO)}")
    if fmt is not None and fmt not in scheme.formats:
        other = [s.name for s in _SCHEMES if fmt in s.formats and s.name != "none"]
        raise UsageError(f"--quantize {name} is not available for .{fmt} (ONNX Runtime has no 8-bit-activation "
                         f"4-bit-weight kernel for Gemm); for .{fmt} choose {' or '.join(other)}")
    return scheme


def resolve_observer(scheme: Scheme, fmt: str, observer: str | None) -> str | None:
    """The observer a calibrated scheme uses (the library default when None); None for uncalibrated schemes."""
    if not scheme.calibrated:
        if observer is not None:
            raise UsageError(f"--observer applies to calibrated schemes (int8); {scheme.name} "
                             f"{scheme.why_uncalibrated} and takes no calibration")
        return None
    if observer is None:
        return OBSERVERS[fmt][0]
    if observer not in OBSERVERS[fmt]:
        raise UsageError(f"observer {observer!r} is not available for .{fmt}; choose {', '.join(OBSERVERS[fmt])}")
    return observer


def ort_calibration_method(observer: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[observer]


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def check_8da4w(model: nn.Module, group_size: int, model_name: str = "this model") -> list[str]:
    """The Linear layers 8da4w will quantize; a UsageError saying what to do where it cannot."""
    if group_size not in GROUP_SIZES:
        raise UsageError(f"--group-size {group_size}: choose one of {', '.join(map(str, GROUP_SIZES))}")
    linears = linear_layers(model)
    if not linears:
        raise UsageError(f"8da4w quantizes Linear layers only and {model_name} has none; "
                         "use --quantize int8 for convolutional backbones")
    bad = {name: m.in_features for name, m in linears.items() if m.in_features % group_size}
    if bad:
        shown = ", ".join(f"{n} ({k})" for n, k in list(bad.items())[:4]) + (" ..." if len(bad) > 4 else "")
        fits = [g for g in GROUP_SIZES if all(m.in_features % g == 0 for m in linears.values())]
        hint = (f"--group-size {fits[0]} fits every layer" if fits else
                "no supported group size fits every layer; use --quantize int8-dynamic")
        raise UsageError(f"8da4w quantizes weights in groups of {group_size} in-features, but {len(bad)} Linear "
                         f"layer(s) of {model_name} have in-features that are not a multiple of {group_size}: "
                         f"{shown}; {hint}")
    return list(linears)


def apply_8da4w(model: nn.Module, group_size: int, exclude: Iterable[str] = ()) -> nn.Module:
    """torchao ``quantize_`` (in place) on every Linear whose name is not in ``exclude``."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, PerGroup, quantize_

    skip = set(exclude)
    config = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group_size))
    quantize_(model, config, filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn not in skip)
    return model


def scheme_names(fmt: str | None = None) -> Sequence[str]:
    return [s.name for s in _SCHEMES if fmt is None or fmt in s.formats]
