"""Automatic mixed precision: keep the fewest, most sensitive layers in fp32 until a target SQNR.

1. The fully quantized program is built and measured in the edge runtime (export's parity). If
   it reaches the target, nothing is kept in fp32.
2. Otherwise every layer's sensitivity is measured alone (``edgeml.quantize.sensitivity``) and
   the layers are ranked, most damaging first.
3. The first k layers of the ranking go to fp32 for k = 1, 2, ... in simulation, until the
   simulated SQNR plus the offset between runtime and simulation seen so far reaches the target.
4. That program is built and measured in the edge runtime. If the runtime misses the target, the
   offset is updated from this measurement and step 3 continues from k + 1 (at most
   ``max_builds`` programs are built in all).

Greedy by single-layer sensitivity is not guaranteed to be the smallest set (errors of layers
interact), but it is the set of the most sensitive layers, in order, which is what the user asked
to keep. It refuses, with the reason, when the target needs every layer in fp32 (then the answer
is an fp32 export), when it needs more layers than ``max_fp32_layers``, or when the runtime
keeps missing the target.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from edgeml.errors import VerificationError
from edgeml.quantize.sensitivity import (
    LayerProgress,
    LayerSensitivity,
    layer_sensitivity,
    simulate_with_fp32,
)
from edgeml.quantize.session import QuantSession

MAX_BUILDS = 4


class MixedPrecisionError(VerificationError):
    """The target SQNR cannot be reached by keeping layers in fp32 (the message says why)."""


@dataclass
class MixedPrecisionResult:
    target_db: float
    quantized_db: float  # measured, every layer quantized
    fp32_layers: list[str] = field(default_factory=list)
    measured_db: float | None = None  # measured with fp32_layers kept
    layers: int = 0
    attempts: list[dict] = field(default_factory=list)
    ranking: list[LayerSensitivity] = field(default_factory=list)

    def to_dict(self) -> dict:
        by_name = {r.name: r for r in self.ranking}
        return {
            "target_db": self.target_db,
            "all_layers_quantized_db": _r(self.quantized_db),
            "measured_db": _r(self.measured_db if self.measured_db is not None else self.quantized_db),
            "quantized_layers": self.layers - len(self.fp32_layers),
            "fp32_layers": [{"name": n, "op": by_name[n].op, "sqnr_db_alone": _r(by_name[n].sqnr_db)}
                            for n in self.fp32_layers],
            "attempts": self.attempts,
            "method": "layers ranked by output SQNR with only that layer quantized (simulated); the most "
                      "sensitive kept in fp32 until the SQNR measured in the edge runtime reaches the target",
        }


def keep_fp32_until(
    session: QuantSession,
    build: Callable[[list[str]], float],
    target_db: float,
    inputs: Sequence[torch.Tensor],
    refs: Sequence[Sequence[torch.Tensor]],
    *,
    logits: bool,
    quantized_db: float,
    max_fp32_layers: int | None = None,
    max_builds: int = MAX_BUILDS,
    on_layer: LayerProgress | None = None,
) -> MixedPrecisionResult:
    """See the module doc. ``build(fp32_layers)`` builds that program and returns its measured worst SQNR;
    ``quantized_db`` is what it returned for no fp32 layers."""
    result = MixedPrecisionResult(target_db, quantized_db, layers=len(session.groups))
    if quantized_db >= target_db:
        return result
    n = len(session.groups)
    result.ranking = ranking = layer_sensitivity(session, inputs, refs, logits=logits, on_layer=on_layer)
    names = [r.name for r in ranking]
    offset = quantized_db - simulate_with_fp32(session, [], inputs, refs, logits=logits).worst_db
    limit = n - 1 if max_fp32_layers is None else min(max_fp32_layers, n - 1)
    k, builds, best = 0, 0, None
    while True:
        k, simulated = _smallest_k(session, names, k + 1, n, target_db - offset, inputs, refs, logits)
        if k is None:
            raise MixedPrecisionError(
                f"{target_db:g} dB cannot be reached by keeping layers in fp32: with every quantized layer in "
                f"fp32 but one, the simulation stays below it ({simulated:.1f} dB; fully quantized "
                f"{quantized_db:.1f} dB measured); export without --quantize, or lower --min-sqnr")
        if k > limit:
            top = ", ".join(f"{r.name} ({r.sqnr_db:.1f} dB alone)" for r in ranking[:3])
            raise MixedPrecisionError(
                f"reaching {target_db:g} dB needs about {k} of {n} layers in fp32 (simulated "
                f"{simulated:.1f} dB) but --max-fp32-layers is {max_fp32_layers}; most sensitive: {top}")
        measured = build(names[:k])
        builds += 1
        result.attempts.append({"fp32_layers": k, "simulated_db": _r(simulated), "measured_db": _r(measured)})
        best = max(best or -math.inf, measured)
        if measured >= target_db:
            result.fp32_layers, result.measured_db = names[:k], measured
            return result
        if builds >= max_builds:
            raise MixedPrecisionError(
                f"the edge runtime stays below {target_db:g} dB: best {best:.1f} dB after {builds} programs "
                f"(last with {k} of {n} layers in fp32, simulated {simulated:.1f} dB); lower --min-sqnr")
        offset = measured - simulated


def _smallest_k(session, names, start, n, needed, inputs, refs, logits) -> tuple[int | None, float]:
    simulated = -math.inf
    for k in range(start, n):
        simulated = simulate_with_fp32(session, names[:k], inputs, refs, logits=logits).worst_db
        if simulated >= needed:
            return k, simulated
    return None, simulated


def _r(v: float | None) -> float | None:
    return None if v is None else (round(v, 4) if math.isfinite(v) else v)


__all__ = ["MAX_BUILDS", "MixedPrecisionError", "MixedPrecisionResult", "keep_fp32_until"]
