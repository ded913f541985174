"""PT2E and torchao quantization sessions for the XNNPACK backend (see ``edgeml.quantize.session``).

``Pt2eSession``: ``XNNPACKQuantizer`` static or dynamic int8, calibrated once; any set of layers can
be left in fp32 from the same calibration. ``Int4WeightSession``: torchao's 8-bit dynamic
activations with 4-bit grouped weights on ``nn.Linear`` layers.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence

import torch
from torch import nn

from edgeml.quantize.schemes import Scheme, apply_8da4w, check_8da4w, linear_layers
from edgeml.quantize.session import LayerGroup, QuantSession, UnionFind, as_list, to_batch, unique_layer_names


class _FakeQuant(nn.Module):
    """A calibrated observer as a switchable fake-quantize op (what the lowered Q/DQ pair computes).

    A dynamic one (int8-dynamic) rounds with ranges taken at run time, as XNNPACK's ``qdint8``
    tensors do: one range per row (per token) of a linear's input, one per batch item of a conv's
    (ExecuTorch's XNNPACK delegate gives them 1 and 3 non-batch dimensions). convert_pt2e's eager
    graph takes one range for the whole tensor instead; that is not what runs on the phone, and a
    class token or latent far smaller than the other rows loses its precision only there."""

    def __init__(self, observer: nn.Module, *, per_row: bool = True) -> None:
        super().__init__()
        from torchao.quantization.pt2e import PlaceholderObserver

        self.enabled = True
        self.dynamic = isinstance(observer, PlaceholderObserver)
        self.per_row = per_row
        self.quant_min = int(getattr(observer, "quant_min", None) or -128)
        self.quant_max = int(getattr(observer, "quant_max", None) or 127)
        self.axis: int | None = None
        if not self.dynamic:
            scale, zero_point = observer.calculate_qparams()
            if observer.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine):
                self.axis = int(observer.ch_axis)
            self.register_buffer("scale", scale.detach().float().reshape(-1))
            self.register_buffer("zero_point", zero_point.detach().to(torch.int32).reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.dynamic:
            # The asymmetric range of this very tensor, per row or per batch item (see the class doc).
            dims = (-1,) if self.per_row else tuple(range(1, x.dim()))
            lo = torch.clamp(x.detach().amin(dim=dims, keepdim=True), max=0.0)
            hi = torch.clamp(x.detach().amax(dim=dims, keepdim=True), min=0.0)
            scale = torch.clamp((hi - lo) / float(self.quant_max - self.quant_min), min=2**-20)
            zero_point = torch.clamp(torch.round(self.quant_min - lo / scale), self.quant_min, self.quant_max)
            q = torch.clamp(torch.round(x / scale) + zero_point, self.quant_min, self.quant_max)
            return (q - zero_point) * scale
        if self.axis is None:
            return torch.fake_quantize_per_tensor_affine(x, float(self.scale[0]), int(self.zero_point[0]),
                                                         self.quant_min, self.quant_max)
        return torch.fake_quantize_per_channel_affine(x, self.scale, self.zero_point, self.axis,
                                                      self.quant_min, self.quant_max)


def _constants_just_in_time(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The graph's nodes in an order that computes each value that does not depend on the input (a
    weight and its quantizer) right before its first reader, instead of at the top as the graph
    lists them: a run that starts at a layer's weight quantizer then starts at the layer. What
    nothing reads goes after the rest, and the output node stays last."""
    nodes = list(graph.nodes)
    varying: set[torch.fx.Node] = set()
    for n in nodes:
        if n.op == "placeholder" or any(a in varying for a in n.all_input_nodes):
            varying.add(n)
    order: list[torch.fx.Node] = []
    placed: set[torch.fx.Node] = set()

    def place(n: torch.fx.Node) -> None:
        stack = [(n, False)]
        while stack:
            node, ready = stack.pop()
            if node in placed:
                continue
            if ready:
                placed.add(node)
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.all_input_nodes) if a not in placed)

    output = next(n for n in nodes if n.op == "output")
    for n in nodes:
        if n in varying and n is not output:
            place(n)
    for n in nodes:  # what no input-dependent node reads (an unused constant, a check on constants)
        if n is not output:
            place(n)
    place(output)
    return order


def _run_nodes(interpreter: torch.fx.Interpreter, nodes: list[torch.fx.Node], start: int, stop: int,
               env: dict, last: dict) -> int:
    """Run ``nodes[start:stop]`` into ``env`` (which holds the values they read), dropping each value
    after its last reader; returns ``stop``. The output node's value is its result."""
    interpreter.env = env
    for k in range(start, stop):
        node = nodes[k]
        if node.op == "placeholder":
            continue  # the input, in env from the start
        env[node] = interpreter.run_node(node)
        for read in node.all_input_nodes:
            if last[read] <= k and read.op != "placeholder":
                env.pop(read, None)
    return stop


def _is_conv(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and "conv" in getattr(node.target, "__name__", str(node.target))


def _is_observer(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    from torchao.quantization.pt2e import ObserverBase

    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), ObserverBase)


def _op_name(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0].rstrip("_")


def _module_path(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L__self___", "")


def _weight_target(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str | None:
    """The attribute a conv / linear reads its weight from (through its observer), e.g.
    'features.3.conv.1.0.weight'; None for an op without one."""
    if len(node.args) < 2 or not isinstance(node.args[1], torch.fx.Node):
        return None
    w = _producer(gm, node.args[1])
    return str(w.target) if w.op == "get_attr" else None


def _weight_module(gm: torch.fx.GraphModule, node: torch.fx.Node) -> str | None:
    """'features.3.conv.1.0' for a conv/linear whose weight is the parameter 'features.3.conv.1.0.weight'."""
    target = _weight_target(gm, node)
    if target is None or not target.endswith("weight"):
        return None
    return target.rsplit(".", 1)[0] if "." in target else target


# The constant (1, C) weights edgeml's LayerNorm pass averages with (``export/passes/layernorm.py``).
_NORM_STATISTIC_BUFFERS = ("averaging_mean", "averaging_var")


def _producer(gm: torch.fx.GraphModule, node: object) -> object:
    """The node an argument comes from, through its observer."""
    return node.args[0] if isinstance(node, torch.fx.Node) and _is_observer(gm, node) else node


def _consumers(gm: torch.fx.GraphModule, node: torch.fx.Node) -> list[torch.fx.Node]:
    """The nodes reading ``node``'s value, through its observers."""
    out = []
    for u in node.users:
        out.extend(u.users if _is_observer(gm, u) else [u])
    return out


def _input_free_nodes(gm: torch.fx.GraphModule) -> set[str]:
    """The nodes whose value does not depend on the graph's inputs (parameters, buffers and what is
    computed from them alone)."""
    free: set[str] = set()
    for n in gm.graph.nodes:
        if n.op == "get_attr" or (n.op in ("call_function", "call_module", "call_method")
                                  and all(a.name in free for a in n.all_input_nodes)):
            free.add(n.name)
    return free


def _normalization_nodes(gm: torch.fx.GraphModule) -> set[str]:
    """The nodes of each LayerNorm in the LayerNorm pass's form that stay fp32: the two means and
    what lies between the variance and the normalized value,

        mean = avg(x);  c = x - mean;  var = avg(c * c);  y = c * rsqrt(var + eps)

    that is ``c * c``, ``var + eps`` and ``c * rsqrt(...)``; ``y`` is quantized where the next
    quantized op reads it (the affine ``* weight + bias`` and whatever follows). Per-tensor int8 is
    unsound on that stretch: one range covers every token's variance, so the variance of a token
    far smaller than the rest (a class token) rounds to zero, ``eps`` is below one step and is lost
    in the rounding of ``var + eps``, and ``rsqrt`` of it is unbounded (PVT's class-token stage gave
    non-finite outputs with that multiply in fp32 and its inputs in int8), while ``1 / std`` spans
    more than int8's steps can cover for the others."""
    found: set[str] = set()
    for n in gm.graph.nodes:
        if n.op != "call_function" or not _is_norm_statistic(gm, n):
            continue
        found.add(n.name)
        square = _producer(gm, n.args[0])
        if not (isinstance(square, torch.fx.Node) and _op_name(square) == "mul" and len(square.args) == 2
                and _producer(gm, square.args[0]) is _producer(gm, square.args[1])):
            continue  # the mean, not the variance
        centered = _producer(gm, square.args[0])
        for plus_eps in _consumers(gm, n):
            if _op_name(plus_eps) != "add":
                continue
            for rsqrt in _consumers(gm, plus_eps):
                if _op_name(rsqrt) != "rsqrt":
                    continue
                normalized = [m for m in _consumers(gm, rsqrt) if _op_name(m) == "mul"
                              and centered in {_producer(gm, a) for a in m.args}]
                if normalized:
                    found |= {square.name, plus_eps.name, rsqrt.name, *(m.name for m in normalized)}
    return found


def _is_norm_statistic(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    """A conv / linear that averages over the channels: its weight is one of the LayerNorm pass's
    averaging buffers, or any constant ``(1, C)`` / ``(1, C, 1, 1)`` of ``1/C`` (the decomposition
    of ``native_layer_norm``, whose constant folding names it otherwise)."""
    target = _weight_target(gm, node)
    if target is None:
        return False
    if target.rsplit(".", 1)[-1] in _NORM_STATISTIC_BUFFERS:
        return True
    if _op_name(node) not in ("linear", "conv2d", "conv1d"):
        return False
    w = gm
    for part in target.split("."):
        w = getattr(w, part, None)
    if not isinstance(w, torch.Tensor) or w.dim() not in (2, 3, 4) or w.shape[0] != 1 or w.numel() != w.shape[1]:
        return False
    return bool(torch.all(w == w.flatten()[0])) and abs(float(w.flatten()[0]) * w.shape[1] - 1.0) < 1e-5


def _one_dequantize_per_user(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Give every user of a dequantize node its own copy of it.

    With layers kept in fp32, one Q/DQ pair can feed a quantized op and an fp32 op. XNNPACK's
    partitioner takes the DQ into the quantized op's partition, and the fp32 op outside then
    reads from inside the partition; when its result flows back into the same partition, the
    partition depends on itself ("Invalid partition, found dependency cycles": efficientmod_xxs
    with every third layer in fp32 had 5 such partitions of 16). A DQ per user keeps the
    partitions closed; the extra DQs are a few elementwise ops."""
    dequantize = {torch.ops.quantized_decomposed.dequantize_per_tensor.default,
                  torch.ops.quantized_decomposed.dequantize_per_tensor.tensor,
                  torch.ops.quantized_decomposed.dequantize_per_channel.default}
    changed = False
    for n in list(gm.graph.nodes):
        if n.op != "call_function" or n.target not in dequantize or len(n.users) < 2:
            continue
        for user in list(n.users)[1:]:
            with gm.graph.inserting_after(n):
                copy_ = gm.graph.call_function(n.target, n.args, n.kwargs)
            copy_.meta = dict(n.meta)
            user.replace_input_with(n, copy_)
            changed = True
    if changed:
        gm.graph.lint()
        gm.recompile()
    return gm


def _edgeml_quantizer_class():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import propagate_annotation

    from edgeml.backends.xnnpack.annotate import annotate_conv_clamp, annotate_pads, keep_integer_scalars

    class EdgeXnnpackQuantizer(XNNPACKQuantizer):
        """``XNNPACKQuantizer`` that first annotates conv / linear -> hardtanh pairs as one op, and
        then constant pads with their input's quantization; integer arithmetic stays integer
        (``annotate.py``)."""

        def transform_for_annotation(self, model):
            keep_integer_scalars(model)
            return super().transform_for_annotation(model)

        def annotate(self, model):
            annotate_conv_clamp(model, self.global_config)
            model = super().annotate(model)
            if annotate_pads(model):
                propagate_annotation(model)  # on to the max pools, views and slices after the pads
            return model

    return EdgeXnnpackQuantizer


# XNNPACKQuantizer's smallest per-channel weight scale (its weight observer's eps; the test suite
# checks it against the quantizer's config).
WEIGHT_SCALE_FLOOR = 2**-12


def xnnpack_quantizer(scheme: Scheme, observer: str | None):
    """XNNPACKQuantizer for ``int8`` (static, the given observer) or ``int8-dynamic``; static int8
    also quantizes a conv / linear and the clamp after it as one op (``annotate.py``)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    from edgeml.quantize.observers import HistogramObserver  # torchao's, its range search faster

    if scheme.name not in ("int8", "int8-dynamic"):
        raise ValueError(f"{scheme.name} is not a PT2E scheme")
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=scheme.name == "int8-dynamic")
    if scheme.name == "int8":
        ctr = {"histogram": HistogramObserver, "minmax": MinMaxObserver}[observer or "histogram"]
        act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=ctr.with_args(eps=2**-12))
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return _edgeml_quantizer_class()().set_global(config)



class Pt2eSession(QuantSession):
    """XNNPACKQuantizer prepare + calibration, once; simulation and conversion for any fp32 set.

    LayerNorm statistics stay fp32 (``norm_statistics="fp32"``, the default). edgeml's LayerNorm
    pass writes a LayerNorm's two means as a linear / 1x1 conv with a constant ``1/C`` weight so
    that XNNPACK runs them; XNNPACKQuantizer would then quantize them like any linear, which it
    never does to a LayerNorm (it does not annotate ``layer_norm``). The second of them is the
    variance, the dynamic range int8 handles worst: quantizing the two cost SigLIP-B/16 int8-dynamic
    25.5 -> 32.1 dB and so400m 21.2 -> 30.0 dB, for nothing in
    size (C weights each). Under static int8 the square, ``var + eps`` and the multiply by the
    reciprocal standard deviation stay fp32 with them (``_normalization_nodes``): the normalized
    value is what gets quantized. These groups are ``pinned_fp32``: not in ``groups``, never
    quantized, accepted (and dropped) by ``check_names``. ``norm_statistics="int8"`` quantizes
    them as XNNPACKQuantizer alone would.
    """

    format = "pte"

    def __init__(self, model: nn.Module, example_inputs: tuple, scheme: Scheme, observer: str | None,
                 calibration: Sequence[torch.Tensor], *, dynamic_shapes: object | None = None,
                 on_batch: Callable[[], None] | None = None, norm_statistics: str = "fp32") -> None:
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

        from edgeml.export.passes.affine import fold_channel_affines

        if norm_statistics not in ("fp32", "int8"):
            raise ValueError(f"norm_statistics must be 'fp32' or 'int8', not {norm_statistics!r}")
        self.scheme, self.observer = scheme, observer
        self.example_inputs = example_inputs
        # The same dynamic shapes as the final capture: a graph prepared static and exported
        # dynamic later fails at run time ("Attempted to resize a static tensor").
        captured = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
        # Before observers: a folded layer scale is carried by the per-channel weight scales (a
        # fold that would push weights under their smallest scale is skipped).
        fold_channel_affines(captured, min_weight_step=WEIGHT_SCALE_FLOOR)
        graph = captured.module()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.prepared = prepare_pt2e(graph, xnnpack_quantizer(scheme, observer))
            with torch.no_grad():
                # Dynamic schemes need no images, but the weight observers must see the weights once.
                for x in calibration if len(calibration) else [example_inputs[0]]:
                    self.prepared(x)
                    if on_batch:
                        on_batch()
        self._all_groups, self._points = self._find_layers(self.prepared)
        normalization = set() if norm_statistics == "int8" else _normalization_nodes(self.prepared)
        norm = {g.name for g in self._all_groups if normalization & set(g.nodes)}
        # A layer computed from constants only (a linear on learned latents or queries) is folded
        # to a constant at export: quantizing it adds error for nothing, and under int8-dynamic
        # the fold leaves a dequantize of a constant that XNNPACK does not take ("Missing out
        # variants": the Perceivers).
        constant = _input_free_nodes(self.prepared)
        folded = {g.name for g in self._all_groups if set(g.nodes) <= constant} - norm
        self.norm_fp32 = tuple(g.name for g in self._all_groups if g.name in norm)
        self.constant_fp32 = tuple(g.name for g in self._all_groups if g.name in folded)
        pinned = norm | folded
        self.pinned_fp32 = tuple(g.name for g in self._all_groups if g.name in pinned)
        self._group_of = {node: g.name for g in self._all_groups for node in g.nodes}
        self.groups = [g for g in self._all_groups if g.name not in pinned]
        self._sim: torch.fx.GraphModule | None = None

    @staticmethod
    def _find_layers(gm: torch.fx.GraphModule) -> tuple[list[LayerGroup], dict[str, set[str]]]:
        from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec
        from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

        nodes = list(gm.graph.nodes)
        annotated = {n.name: n for n in nodes if n.op == "call_function" and Q_ANNOTATION_KEY in n.meta}
        uf = UnionFind()
        for name, n in annotated.items():
            uf.find(name)
            ann = n.meta[Q_ANNOTATION_KEY]
            specs = [ann.output_qspec, *ann.input_qspec_map.values()]
            for spec in specs:
                if isinstance(spec, SharedQuantizationSpec):
                    ref = spec.edge_or_node
                    for r in (ref if isinstance(ref, tuple) else (ref,)):
                        if isinstance(r, torch.fx.Node) and r.name in annotated:
                            uf.union(r.name, name)
            # Ops fused into one pattern (conv -> relu) have no observer between them.
            for a in n.all_input_nodes:
                if a.name in annotated:
                    uf.union(a.name, name)
        members: dict[str, list[torch.fx.Node]] = {}
        for n in nodes:
            if n.name in annotated:
                members.setdefault(uf.find(n.name), []).append(n)
        raw = []
        root_to_group: dict[str, str] = {}
        for root, group in members.items():  # graph order
            anchor = next((n for n in group if _weight_module(gm, n)), None)
            if anchor is not None:
                name, op = _weight_module(gm, anchor), _op_name(anchor)
            else:
                anchor = group[0]
                op = _op_name(anchor)
                path = _module_path(anchor)
                name = f"{path}:{op}" if path else op
            raw.append((name, op, tuple(n.name for n in group)))
            root_to_group[root] = str(len(raw) - 1)
        groups = unique_layer_names(raw)
        group_of = {n: groups[int(root_to_group[uf.find(n)])].name for n in annotated}
        # Each observer is a quantization point: active when a quantized layer writes or reads it.
        points: dict[str, set[str]] = {}
        for n in nodes:
            if not _is_observer(gm, n):
                continue
            adj = set()
            src = n.args[0]
            if isinstance(src, torch.fx.Node) and src.name in group_of:
                adj.add(group_of[src.name])
            adj |= {group_of[u.name] for u in n.users if u.name in group_of}
            points[n.name] = adj
        return groups, points

    def _active_points(self, quantized: Collection[str]) -> set[str]:
        q = set(quantized)
        return {p for p, adj in self._points.items() if adj & q or (not adj and q)}

    def _simulator(self) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e import PlaceholderObserver

        if self._sim is None:
            gm = copy.deepcopy(self.prepared)
            group_of = self._group_of
            for i, n in enumerate(list(gm.graph.nodes)):
                if n.name not in self._points:
                    continue
                observer = gm.get_submodule(n.target)
                if not isinstance(observer, PlaceholderObserver):
                    fq = _FakeQuant(observer)
                    target = f"edgeml_fake_quant_{i}"
                    gm.add_submodule(target, fq)
                    n.target = target
                    fq.point, fq.user = n.name, None
                    continue
                # Dynamic: each reader rounds for itself, and only a quantized one rounds at all
                # (an fp32 layer reads the fp32 tensor; see quantized_module).
                for j, user in enumerate(list(n.users)):
                    fq = _FakeQuant(observer, per_row=not _is_conv(user))
                    target = f"edgeml_fake_quant_{i}_{j}"
                    gm.add_submodule(target, fq)
                    with gm.graph.inserting_before(user):
                        own = gm.graph.call_module(target, (n.args[0],))
                    user.replace_input_with(n, own)
                    fq.point, fq.user = n.name, group_of.get(user.name)
                gm.graph.erase_node(n)
            gm.graph.lint()
            gm.recompile()
            gm.delete_all_unused_submodules()
            self._sim = gm
        return self._sim

    @torch.no_grad()
    def simulate(self, quantized: Collection[str], inputs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        sim = self._simulator()
        active = self._active_points(quantized)
        layers = set(quantized)
        for m in sim.modules():
            if isinstance(m, _FakeQuant):
                m.enabled = m.point in active if not m.dynamic else m.user in layers
        return [[t.float()[:1] for t in as_list(sim(to_batch(x, self.example_inputs[0])))] for x in inputs]

    @torch.no_grad()
    def simulate_alone(self, inputs: Sequence[torch.Tensor]) -> Iterator[tuple[int, str, list[torch.Tensor]]]:
        """``simulate([layer])`` for every layer, image by image, each run starting where its layer's
        first quantizer sits: upstream of it every value is the fp32 one, computed once per image
        for all layers (on average half of each run). The same ops on the same values as
        ``simulate``, so the same outputs."""
        sim = self._simulator()
        nodes = _constants_just_in_time(sim.graph)
        index = {n: i for i, n in enumerate(nodes)}
        fake = {n: sim.get_submodule(n.target) for n in nodes
                if n.op == "call_module" and isinstance(sim.get_submodule(n.target), _FakeQuant)}
        plan = []
        for group in self.groups:
            active = self._active_points([group.name])
            mine = [n for n, m in fake.items() if (m.user == group.name if m.dynamic else m.point in active)]
            plan.append((min((index[n] for n in mine), default=len(nodes) - 1), group.name, mine))
        plan.sort(key=lambda p: p[0])
        # Where each value is read last, so a run drops what it no longer needs.
        last = {n: max((index[u] for u in n.users), default=index[n]) for n in nodes}
        example = self.example_inputs[0]
        try:
            for m in fake.values():
                m.enabled = False
            interpreter = torch.fx.Interpreter(sim, garbage_collect_values=False)
            (placeholder,) = [n for n in nodes if n.op == "placeholder"]
            for i, x in enumerate(inputs):
                env: dict[torch.fx.Node, object] = {placeholder: to_batch(x, example)}
                done = 0
                for start, name, mine in plan:
                    done = _run_nodes(interpreter, nodes, done, start, env, last)
                    for n in mine:
                        fake[n].enabled = True
                    out = dict(env)
                    _run_nodes(interpreter, nodes, start, len(nodes), out, last)
                    for n in mine:
                        fake[n].enabled = False
                    yield i, name, [t.float()[:1] for t in as_list(out[nodes[-1]])]
        finally:
            for m in fake.values():
                m.enabled = True

    def _copy_prepared(self, fp32_layers: Collection[str]) -> torch.fx.GraphModule:
        """A deep copy of the calibrated graph whose annotations point at its own nodes (deepcopy leaves
        them on the original's), without the annotations of the layers that stay fp32; convert_pt2e's
        metadata pass follows them to find each quantized input's (dynamic) Q/DQ nodes."""
        from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec
        from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

        gm = copy.deepcopy(self.prepared)
        by_name = {n.name: n for n in gm.graph.nodes}
        drop = {node for g in self._all_groups if g.name in set(fp32_layers) for node in g.nodes}

        def remap(spec):
            if isinstance(spec, SharedQuantizationSpec):
                ref = spec.edge_or_node
                ref = tuple(by_name[r.name] for r in ref) if isinstance(ref, tuple) else by_name[ref.name]
                return SharedQuantizationSpec(ref)
            return spec

        for n in gm.graph.nodes:
            ann = n.meta.get(Q_ANNOTATION_KEY)
            if ann is None:
                continue
            if n.name in drop:
                del n.meta[Q_ANNOTATION_KEY]
                continue
            n.meta[Q_ANNOTATION_KEY] = dataclasses.replace(
                ann, input_qspec_map={by_name[k.name]: remap(v) for k, v in ann.input_qspec_map.items()},
                output_qspec=remap(ann.output_qspec))
        return gm

    def quantized_module(self, fp32_layers: Collection[str] = ()) -> nn.Module:
        """convert_pt2e of the calibrated graph, without the observers only fp32 layers touch."""
        from torchao.quantization.pt2e import PlaceholderObserver
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        fp32_layers = {*fp32_layers, *self.pinned_fp32}
        keep = self._active_points([g.name for g in self.groups if g.name not in fp32_layers])
        gm = self._copy_prepared(fp32_layers)
        quantized = {g.name for g in self.groups if g.name not in fp32_layers}
        group_of = self._group_of
        for n in list(gm.graph.nodes):
            if n.name not in self._points:
                continue
            if n.name in keep and isinstance(gm.get_submodule(n.target), PlaceholderObserver):
                # A tensor read by a dynamically quantized linear and by an fp32 one (q / k / v with
                # one of them kept): the fp32 reader takes the fp32 tensor. Through the dynamic
                # Q/DQ pair it would leave a dequantize XNNPACK does not take and ExecuTorch has
                # no kernel for ("Missing out variants").
                for user in list(n.users):
                    if group_of.get(user.name) not in quantized:
                        user.replace_input_with(n, n.args[0])
            if n.name not in keep or not n.users:
                n.replace_all_uses_with(n.args[0])
                gm.graph.erase_node(n)
        gm.graph.lint()
        gm.recompile()
        gm.delete_all_unused_submodules()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = convert_pt2e(gm)
        return _one_dequantize_per_user(converted) if fp32_layers else converted


# --------------------------------------------------------------------------------------------
# torchao 8da4w: Linear layers
# --------------------------------------------------------------------------------------------

class Int4WeightSession(QuantSession):
    """8da4w on each Linear; simulation swaps torchao-quantized copies of single layers in."""

    format = "pte"

    def __init__(self, model: nn.Module, scheme: Scheme, group_size: int, model_name: str) -> None:
        self.scheme, self.observer, self.group_size = scheme, None, group_size
        self.model = model.eval()
        names = check_8da4w(model, group_size, model_name)
        self.groups = [LayerGroup(n, "linear", (n,)) for n in names]
        self._quantized: dict[str, nn.Module] = {}

    def _quantized_layer(self, name: str) -> nn.Module:
        if name not in self._quantized:
            layer = copy.deepcopy(self.model.get_submodule(name))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                apply_8da4w(layer, self.group_size)
            self._quantized[name] = layer
        return self._quantized[name]

    @torch.no_grad()
    def simulate(self, quantized: Collection[str], inputs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        originals = linear_layers(self.model)
        swapped = []
        try:
            for name in quantized:
                parent, _, leaf = name.rpartition(".")
                setattr(self.model.get_submodule(parent) if parent else self.model, leaf,
                        self._quantized_layer(name))
                swapped.append(name)
            return [[t.float() for t in as_list(self.model(x))] for x in inputs]
        finally:
            for name in swapped:
                parent, _, leaf = name.rpartition(".")
                setattr(self.model.get_submodule(parent) if parent else self.model, leaf, originals[name])

    def quantized_module(self, fp32_layers: Collection[str] = ()) -> nn.Module:
        model = copy.deepcopy(self.model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return apply_8da4w(model, self.group_size, exclude=fp32_layers)


# --------------------------------------------------------------------------------------------
# ONNX Runtime: QDQ static and dynamic
# --------------------------------------------------------------------------------------------

# 7-bit weights. ONNX Runtime's x86 integer kernels multiply uint8 activations by int8 weights
# with an instruction (vpmaddubsw) whose int16 pair sums saturate on CPUs without VNNI (AVX2,
# AVX-512F): efficientmod_xxs's QDQ int8 model measured 3.3 dB worst-image SQNR there with full-
# range weights, 23.7 dB with reduced range, and 24.0 dB with graph optimizations off (no fused
# integer kernels at all). A .onnx is not tied to the CPU it was built on, so the safe range is
# the default; the cost is one bit of weight resolution on CPUs that would not have saturated.


__all__ = ["Int4WeightSession", "Pt2eSession"]
