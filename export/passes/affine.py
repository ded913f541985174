"""Fold per-channel scales and shifts into the neighbouring 1x1 convolution or linear layer.

Two patterns of vision backbones leave elementwise ops around a layer that computes per channel
anyway:

* a scale right after the layer (a layer scale, ``x + gamma * mlp(x)``; a constant factor):
  ``layer(x) * s``, where the layer's output feeds only that product;
* a norm's affine right before 1x1 convolutions or linears (``LayerNorm2d`` followed by a
  pointwise convolution, a pre-norm transformer's LayerNorm followed by q / k / v or the MLP):
  ``layer(n * g + b)``, where every reader of ``n * g + b`` is such a layer.

Both fold into the layer's weight and bias, per output channel for the first and per input channel
for the second, and the multiply and add disappear:

    layer(x) * s     ->  W' = s[:, None] * W,  b' = s * b
    layer(n * g + b) ->  W' = W * g[None, :],  b' = bias + W @ b    (1x1 kernel taps summed)

The folds work on a captured program (``torch.export``), before quantization: a program with
fewer elementwise ops runs fewer fp32 islands between int8 regions, and the scale is carried by
per-channel weight quantization instead of an activation's per-tensor one. Conditions keep the
function: the scale or shift is a parameter or buffer (or a number) read only there, that varies
along the layer's channel axis only; the layer's weight (and bias) are read by that layer only;
a convolution is 2-D with a 1x1 kernel, no padding and one group (a shift does not commute with
zero padding, and a grouped convolution mixes only some channels). Everything else is left as it
is. Same function up to fp32 rounding.

Before int8 quantization a fold also has to keep the weights quantizable. A per-channel weight
observer has a smallest scale (XNNPACKQuantizer's: 2**-12, so that XNNPACK's requantization scale
stays in range), and a small layer scale folded into the weights can push a channel's largest
weight below a few steps of it: a scale of 1e-6 (ConvNeXt's init) quantizes the whole channel to
zero. With ``min_weight_step`` set, a fold goes ahead only if every output channel keeps its
largest weight at 64 steps or more (at most one of int8's 7 magnitude bits lost) or, for a channel
already below that, no smaller than it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx
from torch.export.graph_signature import InputKind

aten = torch.ops.aten

_CONV = {aten.conv2d.default}
_LINEAR = {aten.linear.default}
_MUL = {aten.mul.Tensor, aten.mul.Scalar}
_ADD = {aten.add.Tensor}
_MIN_STEPS = 64  # per-channel weight quantization steps a fold must leave (module docstring)
_VIEWS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.unsqueeze.default}


@dataclass
class _State:
    program: torch.export.ExportedProgram
    fqn: dict[str, str]  # placeholder name -> state_dict key, parameters and persistent buffers only
    kind: dict[str, InputKind]
    min_weight_step: float | None = None
    erased: set[fx.Node] = field(default_factory=set)

    def quantizable(self, before: torch.Tensor, after: torch.Tensor) -> bool:
        """Whether ``after`` (a folded weight, output channels first) keeps each channel's largest
        weight at ``_MIN_STEPS`` quantization steps or more where ``before`` had it (module docstring)."""
        if self.min_weight_step is None:
            return True
        floor = _MIN_STEPS * self.min_weight_step
        old, new = (w.abs().reshape(w.shape[0], -1).amax(1) for w in (before, after))
        return bool((new >= torch.clamp(old, max=floor)).all())

    def value(self, placeholder: fx.Node) -> torch.Tensor:
        return self.program.state_dict[self.fqn[placeholder.name]]

    def set(self, placeholder: fx.Node, value: torch.Tensor) -> None:
        key = self.fqn[placeholder.name]
        if self.kind[placeholder.name] == InputKind.PARAMETER:
            value = torch.nn.Parameter(value, requires_grad=False)
        # A new tensor: the state dict's tensors are the eager model's own parameters.
        self.program.state_dict[key] = value


def _layer(node: object) -> str | None:
    """``"conv"`` / ``"linear"`` for a foldable layer node, else None."""
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return None
    if node.target in _LINEAR:
        return "linear"
    if node.target in _CONV:
        weight = node.args[1]
        val = weight.meta.get("val") if isinstance(weight, fx.Node) else None
        # conv2d(input, weight, bias, stride=1, padding=0, dilation=1, groups=1): stride and
        # dilation do not matter to a 1x1 kernel.
        _, padding, _, groups = (list(node.args[3:]) + [1, 0, 1, 1][len(node.args[3:]):])[:4]
        if (val is not None and val.dim() == 4 and tuple(val.shape[2:]) == (1, 1) and groups == 1
                and all(p == 0 for p in ([padding] * 2 if isinstance(padding, int) else padding))):
            return "conv"
    return None


def _own_weights(state: _State, layer: fx.Node) -> tuple[fx.Node, fx.Node | None] | None:
    """The layer's weight and bias placeholders, each read by this layer only; None otherwise."""
    weight = layer.args[1]
    bias = layer.args[2] if len(layer.args) > 2 else layer.kwargs.get("bias")
    for t in (weight, bias):
        if t is None:
            continue
        if not (isinstance(t, fx.Node) and t.op == "placeholder" and t.name in state.fqn and len(t.users) == 1):
            return None
        if state.value(t).dtype != torch.float32:
            return None
    return weight, bias


def _channel_vector(state: _State, operand: object, out: torch.Tensor, axis: int
                    ) -> tuple[torch.Tensor, list[fx.Node]] | None:
    """``operand`` as a vector over ``out``'s channel axis (``axis``, negative), with the nodes that
    only it reads (to remove once folded); None if it is not a constant that varies along that axis
    only, or if anything else reads it."""
    channels = out.shape[axis]
    if isinstance(operand, (int, float)) and not isinstance(operand, bool):
        return torch.full((channels,), float(operand)), []
    if not isinstance(operand, fx.Node):
        return None
    chain, node = [operand], operand
    while node.op == "call_function" and node.target in _VIEWS:
        node = node.args[0]
        if not isinstance(node, fx.Node):
            return None
        chain.append(node)
    if node.op != "placeholder" or node.name not in state.fqn:
        return None
    if any(len(n.users) != 1 for n in chain):
        return None
    shape = tuple(operand.meta["val"].shape)
    if len(shape) > out.dim() or any(size != 1 for i, size in enumerate(reversed(shape), 1) if i != -axis):
        return None
    if -axis <= len(shape) and shape[axis] not in (1, channels):
        return None
    value = state.value(node)
    if value.dtype != torch.float32:
        return None
    return value.reshape(-1).expand(channels).clone(), chain


def _same_shape(a: object, b: torch.Tensor) -> bool:
    """Same shape, symbolic sizes included (compared as expressions: no guard is added)."""
    return isinstance(a, torch.Tensor) and a.dim() == b.dim() and all(
        str(x) == str(y) for x, y in zip(a.shape, b.shape))


def _per_channel_axis(layer: fx.Node) -> int:
    """The channel axis of the layer's output (and of its input), counted from the end."""
    return -3 if _layer(layer) == "conv" else -1


def _fold_scale_after(state: _State, node: fx.Node) -> bool:
    """``layer(x) * s``: s into the layer's output channels."""
    for i in (0, 1):
        layer, other = node.args[i], node.args[1 - i]
        if _layer(layer) is None or len(layer.users) != 1:
            continue
        weights = _own_weights(state, layer)
        out = layer.meta.get("val")
        if weights is None or out is None or not _same_shape(node.meta["val"], out):
            continue
        found = _channel_vector(state, other, out, _per_channel_axis(layer))
        if found is None:
            continue
        scale, chain = found
        weight, bias = weights
        w = state.value(weight)
        folded = w * scale.view(-1, *([1] * (w.dim() - 1)))
        if not state.quantizable(w, folded):
            continue
        state.set(weight, folded)
        if bias is not None:
            state.set(bias, state.value(bias) * scale)
        node.replace_all_uses_with(layer)
        _erase(state, [node, *chain])
        return True
    return False


def _constant_operand(state: _State, node: fx.Node, out: torch.Tensor, axis: int
                      ) -> tuple[torch.Tensor, list[fx.Node], fx.Node] | None:
    """A binary op's per-channel constant operand (as ``_channel_vector``) and its other operand, a
    computed tensor of the op's own shape; None if it has no such pair."""
    for i in (0, 1):
        src = node.args[i]
        found = _channel_vector(state, node.args[1 - i], out, axis)
        if found is not None and isinstance(src, fx.Node) and _same_shape(src.meta.get("val"), out):
            return (*found, src)
    return None


def _fold_affine_before(state: _State, node: fx.Node) -> bool:
    """``n * g + b`` (or either alone) read only by pointwise layers: into their input channels."""
    readers = list(node.users)
    if not readers or any(_layer(r) is None or r.args[0] is not node or r.args[1] is node for r in readers):
        return False
    axis = _per_channel_axis(readers[0])
    if any(_per_channel_axis(r) != axis for r in readers):
        return False
    weights = [_own_weights(state, r) for r in readers]
    if any(w is None for w in weights):
        return False
    out = node.meta.get("val")
    if out is None:
        return False
    shift = scale = None
    removed: list[fx.Node] = []
    top = node
    if node.target in _ADD and len(node.args) == 2 and node.kwargs.get("alpha", 1) == 1:
        split = _constant_operand(state, node, out, axis)
        if split is None or any(b is None for _, b in weights):
            return False  # nothing to fold, or no bias to carry the shift
        shift, chain, src = split
        removed += [node, *chain]
        node = src
    if node.target in _MUL and (shift is None or len(node.users) == 1):
        split = _constant_operand(state, node, out, axis)
        if split is not None:
            scale, chain, src = split
            removed += [node, *chain]
            node = src
    if shift is None and scale is None:
        return False
    current = [state.value(weight) for weight, _ in weights]
    scaled = current if scale is None else [w * scale.view(1, -1, *([1] * (w.dim() - 2))) for w in current]
    if not all(state.quantizable(w, f) for w, f in zip(current, scaled)):
        return False
    for (weight, bias), w, folded in zip(weights, current, scaled):
        if shift is not None:
            # conv: sum over the 1x1 taps; linear: W @ b.
            state.set(bias, state.value(bias) + w.reshape(w.shape[0], w.shape[1]) @ shift)
        if scale is not None:
            state.set(weight, folded)
    top.replace_all_uses_with(node)
    _erase(state, removed)
    return True


def _erase(state: _State, nodes: list[fx.Node]) -> None:
    """Erase the folded ops and the constants only they read (placeholder, signature and value)."""
    signature = state.program.graph_signature
    for n in nodes:
        if n.users:
            continue
        if n.op == "placeholder":
            key = state.fqn.pop(n.name)
            signature.input_specs[:] = [s for s in signature.input_specs
                                        if not (s.kind in (InputKind.PARAMETER, InputKind.BUFFER)
                                                and s.arg.name == n.name)]
            if key not in state.fqn.values():
                del state.program.state_dict[key]
        n.graph.erase_node(n)
        state.erased.add(n)


def fold_channel_affines(program: torch.export.ExportedProgram, *, min_weight_step: float | None = None) -> int:
    """In place: fold every per-channel scale after, and scale and shift before, a pointwise layer
    (module docstring). ``min_weight_step``: the smallest per-channel weight scale of the quantizer
    that will read the program, to keep folds from pushing weights under it; None for a program
    that stays floating point. Returns how many ops were folded away."""
    signature = program.graph_signature
    fqn, kind = {}, {}
    for spec in signature.input_specs:
        if spec.kind == InputKind.PARAMETER or (spec.kind == InputKind.BUFFER and spec.persistent):
            fqn[spec.arg.name], kind[spec.arg.name] = spec.target, spec.kind
    state = _State(program, fqn, kind, min_weight_step)
    folded = 0
    graph = program.graph_module.graph
    for node in list(graph.nodes):
        if node in state.erased or node.op != "call_function":
            continue
        if node.target in _MUL and _fold_scale_after(state, node):
            folded += 1
    for node in reversed(list(graph.nodes)):
        if node in state.erased or node.op != "call_function":
            continue
        if node.target in _ADD | _MUL and _fold_affine_before(state, node):
            folded += 1
    if folded:
        program.graph_module.recompile()
    return folded
