"""Automatic mixed precision: keep the fewest, most sensitive layers in fp32 until a target SQNR.

1. The fully quantized program is built and measured in the edge runtime (export's parity). If
   it reaches the target, nothing is kept in fp32.
2. Otherwise every layer's sensitivity is measured alone (``edgeml.quantize.sensitivity``) and
   the layers are ranked, most damaging first.
3. The smallest k such that, with the first k layers of the ranking in fp32, the simulated SQNR
   plus the offset between runtime and simulation seen so far reaches the target (galloping then
   bisection over k, which assumes the SQNR grows as layers go to fp32: O(log n) simulations).
4. That program is built and measured in the edge runtime. If the runtime misses the target, the
   offset is updated from this measurement and step 3 continues from k + 1 (at most
   ``max_builds`` programs are built in all).

Greedy by single-layer sensitivity is not guaranteed to be the smallest set (errors of layers
interact), but it is the set of the most sensitive layers, in order, which is what the user asked
to keep. It refuses, with the reason, when the target needs every layer in fp32 (then the answer
is an fp32 export; layers whose quantization alone does not change the output do not count), when
it needs more layers than ``max_fp32_layers``, or when the runtime keeps missing the target.
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
NO_EFFECT_DB = 20.0  # a layer alone within this of the unquantized program's SQNR changes nothing


class MixedPrecisionError(VerificationError):
    """The target SQNR cannot be reached by keeping layers in fp32 (the message says why)."""


@dataclass
class MixedPrecisionResult:
    target_db: float
    quantized_db: float  # measured with every layer quantized but the given ones (kept)
    fp32_layers: list[str] = field(default_factory=list)
    measured_db: float | None = None  # measured with fp32_layers kept
    layers: int = 0
    attempts: list[dict] = field(default_factory=list)
    ranking: list[LayerSensitivity] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # given in fp32 (--keep-fp32): the search's start

    def to_dict(self) -> dict:
        by_name = {r.name: r for r in self.ranking}
        start = {"given_fp32_layers": len(self.kept), "given_layers_fp32_db": _r(self.quantized_db)} if self.kept \
            else {"all_layers_quantized_db": _r(self.quantized_db)}
        return {
            "target_db": self.target_db,
            **start,
            "measured_db": _r(self.measured_db if self.measured_db is not None else self.quantized_db),
            "quantized_layers": self.layers - len(self.fp32_layers),
            "fp32_layers": [{"name": n, "op": by_name[n].op, "sqnr_db_alone": _r(by_name[n].sqnr_db)}
                            if n in by_name else {"name": n, "given": True} for n in self.fp32_layers],
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
    keep: Sequence[str] = (),
) -> MixedPrecisionResult:
    """See the module doc. ``build(fp32_layers)`` builds that program and returns its measured worst SQNR;
    ``quantized_db`` is what it returned for ``keep`` in fp32 (no layer, by default).

    ``keep``: layers in fp32 whatever the search finds (``--keep-fp32``): the search adds the most
    sensitive of the others to them; ``max_fp32_layers`` counts both."""
    keep = list(keep)
    if max_fp32_layers is not None and len(keep) > max_fp32_layers:
        raise MixedPrecisionError(f"{len(keep)} layers are given in fp32 (--keep-fp32), more than "
                                  f"--max-fp32-layers {max_fp32_layers}")
    result = MixedPrecisionResult(target_db, quantized_db, fp32_layers=keep, layers=len(session.groups), kept=keep)
    if quantized_db >= target_db:
        return result
    n = len(session.groups)
    result.ranking = ranking = layer_sensitivity(session, inputs, refs, logits=logits, on_layer=on_layer)
    kept = set(keep)
    names = [r.name for r in ranking if r.name not in kept]
    offset = quantized_db - simulate_with_fp32(session, keep, inputs, refs, logits=logits).worst_db
    # Layers whose quantization alone leaves the output at the fp32 floor change nothing (an op the
    # quantizer only wraps); keeping every *other* layer in fp32 would be an fp32 program named int8.
    floor = simulate_with_fp32(session, keep + names, inputs, refs, logits=logits).worst_db
    effective = sum(1 for r in ranking if r.sqnr_db < floor - NO_EFFECT_DB and r.name not in kept)
    limit = effective - 1
    if max_fp32_layers is not None:
        limit = min(max_fp32_layers - len(keep), limit)

    def simulated(k: int) -> float:
        return simulate_with_fp32(session, keep + names[:k], inputs, refs, logits=logits).worst_db

    most = simulated(effective - 1) if effective > 1 else -math.inf
    if most + offset < target_db:
        raise MixedPrecisionError(
            f"{target_db:g} dB cannot be reached by keeping layers in fp32: with all but one of the "
            f"{effective} layers whose quantization changes the output in fp32, the simulation gives "
            f"{most:.1f} dB (fully quantized: {quantized_db:.1f} dB measured); "
            "export without --quantize, or lower --min-sqnr")
    k, builds, best = 0, 0, -math.inf
    while True:
        k, sim_k = _smallest_k(simulated, k + 1, limit, target_db - offset)
        if k is None and limit == effective - 1:
            raise MixedPrecisionError(
                f"the edge runtime stays below {target_db:g} dB: best {best:.1f} dB measured after {builds} "
                f"program(s), and the simulation, corrected by it, misses the target even with all but one "
                f"of the {effective} layers that matter in fp32; export without --quantize, or lower --min-sqnr")
        if k is None:
            top = ", ".join(f"{r.name} ({r.sqnr_db:.1f} dB alone)" for r in ranking[:3])
            raise MixedPrecisionError(
                f"reaching {target_db:g} dB needs more than {limit} of {n} layers in fp32 (with {limit}: "
                f"simulated {sim_k:.1f} dB) but --max-fp32-layers is {max_fp32_layers}; most sensitive: {top}")
        measured = build(keep + names[:k])
        builds += 1
        if math.isnan(measured):
            raise MixedPrecisionError(
                f"the program with {len(keep) + k} of {n} layers in fp32 gives non-finite outputs in the edge "
                f"runtime (simulated {sim_k:.1f} dB): a bug in this program, not a precision the search can "
                "trade; export without --quantize, or keep other layers in fp32 (--keep-fp32)")
        result.attempts.append({"fp32_layers": len(keep) + k, "simulated_db": _r(sim_k), "measured_db": _r(measured)})
        best = max(best, measured)
        if measured >= target_db:
            result.fp32_layers, result.measured_db = keep + names[:k], measured
            return result
        if builds >= max_builds or k >= limit:
            raise MixedPrecisionError(
                f"the edge runtime stays below {target_db:g} dB: best {best:.1f} dB after {builds} programs "
                f"(last with {k} of {n} layers in fp32, simulated {sim_k:.1f} dB); lower --min-sqnr")
        offset = measured - sim_k


def _smallest_k(simulated: Callable[[int], float], start: int, stop: int, needed: float
                ) -> tuple[int | None, float]:
    """Smallest k in [start, stop] with simulated(k) >= needed, assuming SQNR grows with k: gallop
    (start, start+1, start+3, ...) to a k that passes, then bisect back; O(log n) simulations."""
    if start > stop:
        return None, simulated(stop)
    lo, step, k = start - 1, 1, start  # lo: largest k known to fail
    while True:
        value = simulated(k)
        if value >= needed:
            break
        if k == stop:
            return None, value
        lo, k, step = k, min(stop, k + step), step * 2
    hi, best = k, value
    while hi - lo > 1:
        mid = (lo + hi) // 2
        value = simulated(mid)
        if value >= needed:
            hi, best = mid, value
        else:
            lo = mid
    return hi, best


def _r(v: float | None) -> float | None:
    return None if v is None else (round(v, 6) if math.isfinite(v) else v)


__all__ = ["MAX_BUILDS", "MixedPrecisionError", "MixedPrecisionResult", "keep_fp32_until"]
