"""Fold the weights a model computes from its parameters into constants, in a captured graph.

Some layers compute their weight in ``forward`` from parameters only: weight standardization
(BiT's ``WeightStandardizedConv2d`` normalizes the kernel with ``batch_norm`` on every call),
weight normalization (``g * v / ||v||``), scaled or reparameterized kernels. Captured, the
convolution or ``linear`` then takes the output of an ``aten`` computation instead of a
parameter, and XNNPACK, whose convolutions and fully-connected layers take static weights only,
leaves it to ExecuTorch's portable kernels together with the weight's computation (BiT-50: 53 of
54 compute ops). The computation depends on no input, so its result is a constant of the
program: this pass evaluates it once (ExecuTorch's ``constant_prop_pass`` through
``edgeml.export.fold_constants``, which keeps quantize / dequantize ops), and the layer takes a
constant weight again. A graph whose compute ops all take parameters directly is returned as it
is, unchanged and without the fold's cost.
"""
from __future__ import annotations

import torch
from torch import fx

_COMPUTE = {
    torch.ops.aten.convolution.default, torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default,
    torch.ops.aten.conv3d.default, torch.ops.aten.linear.default, torch.ops.aten.conv_transpose2d.input,
}


def _static_inputs(exported: torch.export.ExportedProgram) -> set[str]:
    sig = exported.graph_signature
    return set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers) | set(sig.inputs_to_lifted_tensor_constants)


def _computed_from_constants(node: fx.Node, static: set[str]) -> bool:
    """``node`` is a computation (not a placeholder) whose every leaf is a parameter, buffer or constant."""
    if node.op == "placeholder":
        return False
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "placeholder":
            if n.name not in static:
                return False
            continue
        if n.op != "call_function":
            return False
        stack.extend(a for a in n.all_input_nodes)
    return True


def computed_weights(exported: torch.export.ExportedProgram) -> list[fx.Node]:
    """The compute nodes whose weight (second argument) is computed from constants only."""
    static = _static_inputs(exported)
    return [n for n in exported.graph.nodes
            if n.op == "call_function" and n.target in _COMPUTE and len(n.args) > 1
            and isinstance(n.args[1], fx.Node) and _computed_from_constants(n.args[1], static)]


def fold_computed_weights(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``exported`` with every weight computed from parameters only folded to a constant."""
    if not computed_weights(exported):
        return exported
    from edgeml.export import fold_constants

    return fold_constants(exported)
