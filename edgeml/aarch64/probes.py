"""Where an int8 program computes differently on ARM: every quantization point as a probe output.

An XNNPACK delegate is opaque: the program's outputs are all one can compare between the x86 run
and an emulated ARM run. To find the op where the two part, the quantized graph (after
``convert_pt2e``) gets one extra output per activation quantization point: a dequantize of that
point's int8 tensor. The probed program is lowered like the real one and run on the same inputs
on the host and on each ARM profile; each probe is then compared in quantization steps.

A probe that differs while every probe it reads from (its *upstream*: the nearest quantization
points above it) agrees is an **origin**: the difference arises in the ops between those points
and this one, which is a short list (an int8 conv with its fused activation, or the fp32 ops of
a LayerNorm, a softmax, a GELU that sit between two quantization points). Everything below an
origin inherits its difference and is not reported as one.

The probes change the program a little (each probed tensor leaves the delegate as an output),
so the probed program is compared with itself on both machines, never with the shipped one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx

from edgeml.backends.xnnpack.quantizer import _module_path  # the module a node came from

_DQ_FAMILY = ("dequantize_per_tensor", "dequantize_per_channel")
_Q_FAMILY = ("quantize_per_tensor", "quantize_per_channel")


@dataclass
class Probe:
    """One activation quantization point of the converted graph."""

    index: int  # position among the probes (the program's extra outputs, in graph order)
    node: str  # the quantize node's name in the converted graph
    scale: float
    zero_point: int
    module: str  # the module that computed the quantized value ('' for the program input)
    ops: list[str]  # the ops between the upstream points and this one, in graph order
    upstream: list[int]  # indices of the probes this one reads from


@dataclass
class ProbeDiff:
    """One probe's values on one machine against the host's."""

    probe: Probe
    differing: int  # elements whose int8 value differs
    total: int
    max_steps: int  # the largest difference, in quantization steps

    @property
    def identical(self) -> bool:
        return self.differing == 0


@dataclass
class BisectResult:
    diffs: list[ProbeDiff]
    origins: list[ProbeDiff] = field(default_factory=list)
    outputs_identical: bool = True


def _op_name(node: fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", None) or str(target)
    return name.removesuffix(".default")


def _is_q(node: fx.Node) -> bool:
    return node.op == "call_function" and any(f in _op_name(node) for f in _Q_FAMILY) \
        and not _op_name(node).startswith("de")


def _is_dq(node: fx.Node) -> bool:
    return node.op == "call_function" and any(f in _op_name(node) for f in _DQ_FAMILY)


def _upstream(q: fx.Node, probe_of: dict[fx.Node, int]) -> tuple[list[int], list[fx.Node]]:
    """The probes above ``q`` (nearest quantization points) and the compute nodes in between."""
    seen: set[fx.Node] = set()
    ups: set[int] = set()
    ops: list[fx.Node] = []
    stack = list(q.all_input_nodes)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in probe_of:
            ups.add(probe_of[n])
            continue
        if n.op != "call_function":
            continue
        if _is_dq(n):
            stack.extend(n.all_input_nodes)  # the dequantize of a point (or of a constant weight)
            continue
        ops.append(n)
        stack.extend(n.all_input_nodes)
    return sorted(ups), ops


def add_probes(gm: fx.GraphModule) -> tuple[fx.GraphModule, list[Probe], int]:
    """Give ``gm`` (a converted PT2E graph) one extra output per activation quantize node: its
    value dequantized. Returns the graph (changed in place), the probes, and how many outputs the
    graph had before (the probes follow them)."""
    graph = gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    # Activation points only: convert_pt2e folds weight quantization into int8 constants.
    qs = [n for n in graph.nodes if _is_q(n) and "per_tensor" in _op_name(n)
          and n.all_input_nodes and n.all_input_nodes[0].op != "get_attr"]
    probe_of = {q: i for i, q in enumerate(qs)}
    probes: list[Probe] = []
    for i, q in enumerate(qs):
        ups, ops = _upstream(q, probe_of)
        ops.sort(key=order.__getitem__)
        producer = q.args[0]
        module = _module_path(producer) if isinstance(producer, fx.Node) and producer.op == "call_function" else ""
        scale, zero_point = q.args[1], q.args[2]
        if isinstance(scale, fx.Node) or isinstance(zero_point, fx.Node):
            raise ValueError(f"{q.name}: a quantization point with tensor-valued parameters cannot be probed")
        probes.append(Probe(i, q.name, float(scale), int(zero_point), module, [_op_name(o) for o in ops], ups))
    output = next(n for n in graph.nodes if n.op == "output")
    outs = output.args[0]
    flat = list(outs) if isinstance(outs, (tuple, list)) else [outs]
    extra = []
    with graph.inserting_before(output):
        for q in qs:
            dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default  # registered: the graph uses it
            extra.append(graph.call_function(dq, (q, *q.args[1:])))
    output.args = (tuple(flat + extra),)
    # An exported graph's code unflattens its outputs to the captured pytree: return a flat tuple.
    graph._codegen = fx.graph.CodeGen()
    graph.lint()
    gm.recompile()
    return gm, probes, len(flat)


def compare_probes(probes: Sequence[Probe], n_outputs: int, host: Sequence[Sequence[np.ndarray]],
                   other: Sequence[Sequence[np.ndarray]]) -> BisectResult:
    """Compare the probe outputs of ``other`` with ``host`` (per call, per output) in int8 steps."""
    diffs = []
    for p in probes:
        differing = total = max_steps = 0
        for h, o in zip(host, other):
            a = np.rint(np.asarray(h[n_outputs + p.index], np.float64) / p.scale)
            b = np.rint(np.asarray(o[n_outputs + p.index], np.float64) / p.scale)
            d = np.abs(a - b)
            differing += int((d > 0).sum())
            total += d.size
            max_steps = max(max_steps, int(d.max()) if d.size else 0)
        diffs.append(ProbeDiff(p, differing, total, max_steps))
    origins = [d for d in diffs if not d.identical and all(diffs[u].identical for u in d.probe.upstream)]
    same = all(np.array_equal(np.asarray(h[k]), np.asarray(o[k])) for hs, os_ in zip(host, other)
               for k, (h, o) in enumerate(zip(hs[:n_outputs], os_[:n_outputs])))
    return BisectResult(diffs, origins, same)


def summarize_ops(ops: Sequence[str], limit: int = 8) -> str:
    """``aten.mean.dim, aten.sub.Tensor x2, ...``: the ops in order, repeats counted."""
    counts: dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    items = [f"{k} x{v}" if v > 1 else k for k, v in counts.items()]
    return ", ".join(items[:limit]) + (f", +{len(items) - limit} more" if len(items) > limit else "")


@dataclass
class ProbedProgram:
    data: bytes  # the probed .pte
    probes: list[Probe]
    n_outputs: int  # the model's own outputs, before the probes
    inputs: list[list[np.ndarray]]  # one program call per image
    images: list[str]
    pre: object = None  # the model's Preprocessing (edgeml.images), to feed it other images
    batch: int = 1

    def with_images(self, images) -> ProbedProgram:
        """The same program with the inputs of ``images`` (a folder)."""
        from dataclasses import replace

        from edgeml.images import list_images

        paths = list_images(images)
        return replace(self, inputs=_calls(paths, self.pre, self.batch), images=[q.name for q in paths])


def probed_program(model, *, scheme: str = "int8", resolution: int | None = None, images=None,
                   input_shape: Sequence[int] | None = None, keep_fp32: Sequence[str] = (),
                   progress=None) -> ProbedProgram:
    """Export ``model`` (anything ``edgeml.export.export`` takes) as ``export`` would for an XNNPACK
    ``.pte`` with ``scheme``, but lower the converted graph with every activation quantization
    point as an extra output. Inputs: the preprocessed ``images`` (default: the samples)."""
    from dataclasses import replace

    from edgeml.backends.xnnpack.lowering import lower_to_pte
    from edgeml.errors import UsageError
    from edgeml.export import pipeline as p
    from edgeml.images import list_images, sample_images
    from edgeml.models.source import ModelOptions

    options = replace(ModelOptions(), resolution=resolution, input_shape=tuple(input_shape) if input_shape else None)
    state = p.build(model, options, p.Target(format="pte"),
                    p.Quantization(scheme=scheme, keep_fp32=tuple(keep_fp32)), p.Verification(images=images),
                    progress=progress)
    if not state.scheme.calibrated:
        raise UsageError(f"--quantize {scheme}: only statically quantized programs have quantization points")
    with state.workdir:
        p.run_passes(state)
        p.compile_program(state)
        session = state.program.session
        fp32 = session.check_names(keep_fp32)
        gm, probes, n_outputs = add_probes(session.quantized_module(fp32))
        with p.stage("lower", state):
            data, _ = lower_to_pte(state.program._capture(gm))
    paths = list_images(images) if images is not None else sample_images()
    batch = state.example[0].shape[0]
    return ProbedProgram(data, probes, n_outputs, _calls(paths, state.pre, batch), [q.name for q in paths],
                         state.pre, batch)


def _calls(paths, pre, batch: int) -> list[list[np.ndarray]]:
    """One program call per image: the image preprocessed as the model says, repeated to the batch."""
    from edgeml.quantize import load_inputs

    return [[torch.cat([x] * batch).numpy()] for x in load_inputs(paths, pre)]


def run_on_host(data: bytes, inputs: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """The program's outputs per call, with the host's ExecuTorch runtime (x86 XNNPACK kernels)."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(data).load_method("forward")
    return [[o.detach().numpy().copy() for o in method.execute([torch.from_numpy(x) for x in xs])]
            for xs in inputs]
