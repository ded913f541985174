"""Per-layer quantization sensitivity: the error each layer alone introduces into the model output.

For every quantized layer, the model runs with *only that layer* quantized (every other layer in
fp32, same calibration) and its output is compared with the fp32 reference on the same images:
SQNR in dB over all images together, and top-1 agreement for classifiers. Measuring at the
output rather than at the layer's own output ranks layers by the damage that reaches the user,
which is what deciding which layers to keep in fp32 needs (a noisy layer whose error the
network attenuates ranks low). The layer's share of the noise is its noise power
(10^(-SQNR/10)) over the sum across layers: when layers' errors add independently, the shares
say how much of the int8 model's error each one causes.

This follows the "quantize one layer at a time" analysis of ExecuTorch's and ONNX Runtime's
debugging guides; the quantized runs come from ``edgeml.quantize.session`` (see there for how
each format is simulated).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from edgeml.quantize.session import QuantSession
from edgeml.runtime.metrics import sqnr_db

LayerProgress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Score:
    """Output error of one configuration: aggregate SQNR, worst image, top-1 agreement."""

    sqnr_db: float  # all images together, worst output
    worst_db: float  # min(aggregate, every single image): what export's parity threshold checks
    top1_agreement: float | None

    def to_dict(self) -> dict:
        return {k: _round(v) for k, v in asdict(self).items()}


def score(refs: Sequence[Sequence[torch.Tensor]], outs: Sequence[Sequence[torch.Tensor]], *, logits: bool) -> Score:
    aggregate, worst = math.inf, math.inf
    for k in range(len(refs[0])):
        ref = torch.cat([r[k].float() for r in refs])
        out = torch.cat([o[k].float() for o in outs])
        s = sqnr_db(ref, out)
        aggregate = min(aggregate, s)
        worst = min(worst, s, *(sqnr_db(r[k], o[k]) for r, o in zip(refs, outs)))
    top1 = None
    if logits:
        ref = torch.cat([r[0].flatten(1) for r in refs])
        out = torch.cat([o[0].flatten(1) for o in outs])
        top1 = float((ref.argmax(1) == out.argmax(1)).double().mean())
    return Score(aggregate, worst, top1)


@dataclass(frozen=True)
class LayerSensitivity:
    name: str
    op: str
    sqnr_db: float  # model output SQNR with only this layer quantized
    worst_db: float
    top1_agreement: float | None
    noise_share: float  # fraction of the summed per-layer noise power

    def to_dict(self) -> dict:
        return {k: _round(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def layer_sensitivity(session: QuantSession, inputs: Sequence[torch.Tensor],
                      refs: Sequence[Sequence[torch.Tensor]], *, logits: bool,
                      on_layer: LayerProgress | None = None) -> list[LayerSensitivity]:
    """Every layer of ``session`` quantized alone; most damaging (lowest SQNR) first."""
    scores = []
    for i, group in enumerate(session.groups):
        scores.append((group, score(refs, session.simulate([group.name], inputs), logits=logits)))
        if on_layer:
            on_layer(i + 1, len(session.groups))
    noise = [_noise(s.sqnr_db) for _, s in scores]
    total = sum(noise) or 1.0
    ranked = [LayerSensitivity(g.name, g.op, s.sqnr_db, s.worst_db, s.top1_agreement, n / total)
              for (g, s), n in zip(scores, noise)]
    return sorted(ranked, key=lambda r: (r.sqnr_db, r.name))


def simulate_with_fp32(session: QuantSession, fp32_layers: Sequence[str], inputs: Sequence[torch.Tensor],
                       refs: Sequence[Sequence[torch.Tensor]], *, logits: bool) -> Score:
    keep = set(fp32_layers)
    return score(refs, session.simulate([n for n in session.names if n not in keep], inputs), logits=logits)


def _noise(db: float) -> float:
    return 0.0 if db == math.inf else 10.0 ** (-db / 10.0)


def _round(v):
    if isinstance(v, float) and math.isfinite(v):
        return round(v, 4)
    return v


__all__ = ["LayerProgress", "LayerSensitivity", "Score", "layer_sensitivity", "score", "simulate_with_fp32"]
