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

LayerProgress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Score:
    """Output error of one configuration: aggregate SQNR, worst image, top-1 agreement."""

    sqnr_db: float  # all images together, worst output
    worst_db: float  # min(aggregate, every single image): what export's parity threshold checks
    top1_agreement: float | None

    def to_dict(self) -> dict:
        return {k: _round(v) for k, v in asdict(self).items()}


class ScoreSums:
    """A ``Score`` built one image at a time: the sums behind each output's SQNR over all images, the
    worst single image and the top-1 matches, so that no image's outputs need to be kept."""

    def __init__(self, *, logits: bool) -> None:
        self.logits = logits
        self.signal: list[float] = []
        self.noise: list[float] = []
        self.worst = math.inf
        self.matches = self.rows = 0

    def add(self, ref: Sequence[torch.Tensor], out: Sequence[torch.Tensor]) -> None:
        if not self.signal:
            self.signal, self.noise = [0.0] * len(ref), [0.0] * len(ref)
        for k, (r, o) in enumerate(zip(ref, out, strict=True)):
            r, o = r.double(), o.double()
            signal, noise = r.pow(2).sum().item(), (r - o).pow(2).sum().item()
            self.signal[k] += signal
            self.noise[k] += noise
            self.worst = min(self.worst, _db(signal, noise))
        if self.logits:
            r, o = ref[0].flatten(1), out[0].flatten(1)
            self.matches += int((r.argmax(1) == o.argmax(1)).sum())
            self.rows += r.shape[0]

    def score(self) -> Score:
        aggregate = min(_db(s, n) for s, n in zip(self.signal, self.noise))
        top1 = self.matches / self.rows if self.logits and self.rows else None
        return Score(aggregate, min(aggregate, self.worst), top1)


def _db(signal: float, noise: float) -> float:
    """``sqnr_db`` from its two sums."""
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def score(refs: Sequence[Sequence[torch.Tensor]], outs: Sequence[Sequence[torch.Tensor]], *, logits: bool) -> Score:
    sums = ScoreSums(logits=logits)
    for ref, out in zip(refs, outs, strict=True):
        sums.add(ref, out)
    return sums.score()


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
    """Every layer of ``session`` quantized alone; most damaging (lowest SQNR) first.

    The runs come from ``session.simulate_alone``, in whatever order it produces them (a session
    may go image by image, reusing the fp32 values upstream of each layer); ``on_layer`` counts
    layers done, in units of all images."""
    n = len(session.groups)
    sums = {g.name: ScoreSums(logits=logits) for g in session.groups}
    runs, reported = 0, 0
    for i, name, outs in session.simulate_alone(inputs):
        sums[name].add(refs[i], outs)
        runs += 1
        done = runs // len(inputs)
        if on_layer and done > reported:
            reported = done
            on_layer(done, n)
    scores = [(g, sums[g.name].score()) for g in session.groups]
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


__all__ = ["LayerProgress", "LayerSensitivity", "Score", "ScoreSums", "layer_sensitivity", "score",
           "simulate_with_fp32"]
