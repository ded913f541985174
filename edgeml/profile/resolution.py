"""Latency against input resolution for a dynamic-resolution artifact (``--resolutions 256,512,1024``).

A dynamic-resolution artifact's manifest gives the range of each dynamic axis of its image input
(``inputs[0].dynamic == {"2": [min, max], "3": [min, max]}``). Each resolution is profiled on its
own, one after the other (not interleaved: a program fed alternating sizes would re-plan its
buffers on every call, which is not what an app that stays at one size pays), with an optional
pause between them.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from edgeml.errors import InputShapeError, UsageError
from edgeml.profile.host import ProfileReport, describe_device, profile_artifact
from edgeml.runtime.runners import OpenedArtifact, open_artifact


def parse_resolutions(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UsageError(f"--resolutions {text!r}: expected integers separated by commas, e.g. 256,512,1024") from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"--resolutions {text!r}: expected positive integers, e.g. 256,512,1024")
    return values


def resolution_inputs(opened: OpenedArtifact, resolution: int, seed: int = 0) -> list[torch.Tensor]:
    """Inputs for ``opened`` with its image input at ``resolution`` x ``resolution`` (others as exported)."""
    specs = opened.manifest.inputs
    if not specs or len(specs[0].shape) != 4:
        raise InputShapeError(f"{opened.path.name}: its first input is not an NCHW image; --resolutions needs one")
    image = specs[0]
    dynamic = image.dynamic or {}
    h, w = image.shape[2], image.shape[3]

    def size_range(axis: str, size: int) -> str:
        return f"{dynamic[axis][0]}..{dynamic[axis][1]}" if axis in dynamic else str(size)

    for axis, size in (("2", h), ("3", w)):
        if axis in dynamic:
            lo, hi = dynamic[axis]
            if not lo <= resolution <= hi:
                raise InputShapeError(
                    f"{opened.path.name} takes images of {size_range('2', h)} x {size_range('3', w)} pixels; "
                    f"{resolution} is outside that range")
        elif size != resolution:
            raise InputShapeError(
                f"{opened.path.name} has a static {h}x{w} input, so it cannot run at {resolution}x{resolution}: "
                "export it with a dynamic resolution to profile several sizes")
    g = torch.Generator().manual_seed(seed)
    shape = [image.shape[0], image.shape[1], resolution, resolution]
    return [torch.randn(*shape, generator=g)] + [torch.randn(*s.shape, generator=g) for s in specs[1:]]


def sweep_resolutions(
    artifact: str | Path,
    resolutions: Sequence[int],
    *,
    runs: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    cooldown_s: float = 0.0,
    on_run: Callable[[], None] | None = None,
) -> list[ProfileReport]:
    """One host ProfileReport per resolution (latency only), in the order given."""
    opened = open_artifact(artifact)
    inputs = [resolution_inputs(opened, r) for r in resolutions]  # every size checked before any timing
    reports = []
    for i, x in enumerate(inputs):
        if i and cooldown_s:
            time.sleep(cooldown_s)
        reports.append(profile_artifact(opened.path, runs=runs, warmup=warmup, threads=threads, per_op=False,
                                        memory=False, inputs=x, on_run=on_run))
    return reports


def format_sweep(reports: Sequence[ProfileReport]) -> str:
    first = reports[0]
    lines = [f"{first.artifact} on {describe_device(first.device)}, threads={first.threads or 'default'}: "
             f"{first.runs} runs after {first.warmup} warm-up per resolution",
             f"  {'resolution':>10}{'min ms':>10}{'p50 ms':>10}{'p90 ms':>10}{'trimmed ms':>12}"
             f"{'ms/MP (p50)':>13}{'vs first':>10}"]
    base = first.stats["p50"]
    for r in reports:
        s = r.stats
        h, w = r.input_shapes[0][-2:]
        lines.append(f"  {f'{h}x{w}':>10}{s['min']:>10.3f}{s['p50']:>10.3f}{s['p90']:>10.3f}"
                     f"{s['trimmed_mean']:>12.3f}{s['p50'] / (h * w / 1e6):>13.2f}{s['p50'] / base:>10.2f}")
    return "\n".join(lines)
