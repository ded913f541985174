"""One model quantized one way, calibrated once, that can be re-quantized with any set of layers in fp32.

A *layer* is the unit the quantizer annotates together: for PT2E, a conv or linear with the
activation fused into it and the pass-through ops that share its output's quantization
parameters (hardtanh, max-pool, reshape, flatten), or an add / mul / pooling op; for torchao's
8da4w, one ``nn.Linear``; for ONNX Runtime, one Conv / Gemm / MatMul / Add / Mul / ... node with
the pass-through nodes (Reshape, MaxPool, ...) that follow it. Layers are named after the module
they come from (``features.3.conv.1.0``; ``features.3:add`` for an op without weights), so the
names in a report, in ``--keep-fp32`` and in a manifest's ``fp32_layers`` are the same.

Each session offers

* ``simulate(quantized, inputs)``: model outputs with exactly the layers in ``quantized`` quantized.
  PT2E: the prepared graph with each observer replaced by a fake-quantize op using the
  calibrated scale and zero point (dynamic activations: range of the tensor at hand), switched on
  where a quantized layer reads or writes that tensor; ONNX Runtime: the QDQ model itself, run by
  ONNX Runtime; 8da4w: torchao's eager tensor subclass on the chosen Linear layers.
* ``quantized_module(fp32_layers)`` (.pte) / ``quantized_onnx(fp32_layers)`` (.onnx): the
  program to lower, from the *same* calibration (observers of fp32-only tensors are removed
  before ``convert_pt2e``; ORT reuses its calibration cache with ``nodes_to_exclude``).
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from edgeml.errors import UsageError
from edgeml.quantize.schemes import Scheme


@dataclass(frozen=True)
class LayerGroup:
    """One quantized layer: its name, its main op, and the graph nodes it covers."""

    name: str
    op: str
    nodes: tuple[str, ...]


def as_list(y) -> list[torch.Tensor]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _layer_pattern(pattern: str) -> re.Pattern:
    """A layer-name wildcard as a regex: ``*`` and ``?`` stay within one dotted part."""
    wild = {"*": r"[^.]*", "?": r"[^.]"}
    return re.compile("".join(wild.get(c, re.escape(c)) for c in pattern))


class QuantSession:
    format: str
    scheme: Scheme
    observer: str | None
    groups: list[LayerGroup]
    # Layers the scheme leaves in fp32 whatever the caller asks (not in ``groups``): see
    # ``Pt2eSession``'s LayerNorm statistics. ``pinned_fp32`` is the two kinds together.
    pinned_fp32: tuple[str, ...] = ()
    norm_fp32: tuple[str, ...] = ()  # a LayerNorm's statistics and normalization
    constant_fp32: tuple[str, ...] = ()  # computed from constants only: folded at export

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def check_names(self, names: Iterable[str]) -> list[str]:
        """``names`` in order, without repeats and without the pinned fp32 layers (fp32 already: a list
        written before they were pinned still applies); a UsageError for a name that is no layer.

        A name with a wildcard stands for every layer it matches, in the model's order: ``*`` any
        run of characters and ``?`` any one character, within one dotted part of the name
        (``layers.*.blocks.*:add*`` is every block's own adds, not those of its ``attn``); one that
        matches no layer is an error too. A module's name that is no layer itself stands for the
        layers inside it (``<name>.*`` and ``<name>:*``, at any depth): a convolution a backend pass
        split into parts (``SplitDepthwiseConv2d``) is kept in fp32 whole by its own name."""
        known = set(self.names)
        pinned = set(self.pinned_fp32)
        expanded: list[str] = []
        for name in names:
            if any(c in name for c in "*?"):
                pattern = _layer_pattern(name)
                matched = [n for n in self.names if pattern.fullmatch(n)]
                expanded.extend(matched if matched else [name])
            elif name not in known:
                inside = [n for n in self.names if n.startswith((name + ".", name + ":"))]
                expanded.extend(inside if inside else [name])
            else:
                expanded.append(name)
        names = [n for n in dict.fromkeys(expanded) if n not in pinned]
        unknown = [n for n in names if n not in known]
        if unknown:
            shown = ", ".join(self.names[:6]) + (" ..." if len(self.names) > 6 else "")
            raise UsageError(f"no quantized layer named {', '.join(unknown)}; the layers are named like {shown} "
                             "(see `edgeml quantize-report`)")
        return names

    def simulate(self, quantized: Collection[str], inputs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        raise NotImplementedError

    def simulate_alone(self, inputs: Sequence[torch.Tensor]) -> Iterator[tuple[int, str, list[torch.Tensor]]]:
        """``(image index, layer, outputs)`` with only that layer quantized, for every layer and
        every image, in any order: what per-layer sensitivity needs. One ``simulate`` per layer here;
        a session may do it with less work."""
        for group in self.groups:
            for i, outputs in enumerate(self.simulate([group.name], inputs)):
                yield i, group.name, outputs


# --------------------------------------------------------------------------------------------
# PT2E (XNNPACKQuantizer): int8 static and int8 dynamic
# --------------------------------------------------------------------------------------------


def to_batch(x: torch.Tensor, example: torch.Tensor) -> torch.Tensor:
    """One image as the program's batch (a fixed-batch graph takes only that); outputs keep row 0."""
    if x.shape[0] == example.shape[0]:
        return x
    return x[:1].expand(example.shape[0], *x.shape[1:]).contiguous()


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def unique_layer_names(groups: list[tuple[str, str, tuple[str, ...]]]) -> list[LayerGroup]:
    seen: dict[str, int] = {}
    out = []
    for name, op, nodes in groups:
        seen[name] = seen.get(name, 0) + 1
        out.append(LayerGroup(name if seen[name] == 1 else f"{name}#{seen[name]}", op, nodes))
    return out


__all__ = ["LayerGroup", "QuantSession", "UnionFind", "as_list", "to_batch", "unique_layer_names"]
