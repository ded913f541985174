"""Fold what a captured graph computes from constants only into constants of the program.

Models compute values in ``forward`` that depend on no input:

* weights: weight standardization (BiT's ``WeightStandardizedConv2d`` normalizes the kernel with
  ``batch_norm`` on every call), weight normalization (``g * v / ||v||``), scaled or
  reparameterized kernels. XNNPACK's convolutions and fully-connected layers take static weights
  only, so such a layer stays on ExecuTorch's portable kernels together with the weight's
  computation (BiT-50: 53 of 54 compute ops);
* masks and indices: Swin's shifted-window attention mask (``arange``, ``fmod``, comparisons,
  ``masked_fill`` on every call), relative-position-bias lookups (``index`` of a table with a
  buffer of indices), ``torch.roll``'s gather indices, position embeddings resized to the input.
  XNNPACK runs none of these boolean and gather ops; each would run on a portable kernel and
  split the XNNPACK partition around it.

None of it depends on the input, so its result is a constant of the program: this pass evaluates
it once (ExecuTorch's ``constant_prop_pass`` through ``edgeml.export.fold_constants``, which keeps
quantize / dequantize ops so that a quantized weight keeps its pair for XNNPACK's int8 kernels).
Under dynamic shapes a value computed from the symbolic size depends on an input and stays in
the graph. A graph with nothing to fold is returned as it is, without the fold's cost.
"""
from __future__ import annotations

import contextlib

import torch
from torch import fx

aten = torch.ops.aten
# A view or copy of one constant, or a check that computes nothing: not worth a fold of its own
# (XNNPACK takes a reshaped parameter as it is), though folded with the rest when there is a fold.
_LAYOUT_ONLY = {
    aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.permute.default, aten.t.default,
    aten.transpose.int, aten.expand.default, aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims,
    aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
    aten.lift_fresh_copy.default, aten._assert_tensor_metadata.default,
}


def _static_inputs(exported: torch.export.ExportedProgram) -> set[str]:
    sig = exported.graph_signature
    return set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers) | set(sig.inputs_to_lifted_tensor_constants)


def _quant_primitives() -> set:
    from executorch.exir.operator.util import _QUANT_PRIMITIVES

    return set(_QUANT_PRIMITIVES)


def _constant_nodes(exported: torch.export.ExportedProgram) -> tuple[list[fx.Node], set[fx.Node]]:
    static = _static_inputs(exported)
    skip = _quant_primitives()
    constant: set[fx.Node] = set()
    found = []
    for n in exported.graph.nodes:
        if n.op == "placeholder":
            if n.name in static:
                constant.add(n)
        elif (n.op == "call_function" and n.target not in skip and isinstance(n.target, torch._ops.OpOverload)
              and all(a in constant for a in n.all_input_nodes)):
            constant.add(n)
            found.append(n)
    return found, constant


def constant_computations(exported: torch.export.ExportedProgram) -> list[fx.Node]:
    """The ``call_function`` nodes whose every input is a parameter, buffer, constant or another
    such node (or that take no input at all, like ``arange``), quantize / dequantize excepted."""
    return _constant_nodes(exported)[0]


_ARITHMETIC = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor}


def _float_integer_operands(exported: torch.export.ExportedProgram, constant: set[fx.Node]) -> int:
    """Give each integer (or boolean) constant operand of float arithmetic a cast to the result's
    dtype, for the fold to make a float constant of: an int64 mask times float activations (SigLIP2's
    pooling ``x * mask``) is promoted by a ``_to_copy`` ExecuTorch inserts after the fold, which runs
    on the portable kernels at every call. Returns how many."""
    graph, added = exported.graph, 0
    for node in list(graph.nodes):
        out = node.meta.get("val")
        if node.op != "call_function" or node.target not in _ARITHMETIC or not isinstance(out, torch.Tensor) \
                or not out.dtype.is_floating_point:
            continue
        for i, a in enumerate(node.args[:2]):
            val = a.meta.get("val") if isinstance(a, fx.Node) else None
            if a not in constant or not isinstance(val, torch.Tensor) or val.dtype.is_floating_point:
                continue
            with graph.inserting_before(node):
                cast = graph.call_function(aten._to_copy.default, (a,), {"dtype": out.dtype})
            mode = getattr(val, "fake_mode", None)
            with mode if mode is not None else contextlib.nullcontext():
                cast.meta["val"] = val.to(out.dtype)
            node.update_arg(i, cast)
            added += 1
    if added:
        exported.graph_module.recompile()
    return added


def fold_constant_computations(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``exported`` with everything computed from constants only folded to constants, and integer
    constant operands of float arithmetic made float constants; returned as it is when nothing
    but views of constants would fold."""
    found, constant = _constant_nodes(exported)
    cast = _float_integer_operands(exported, constant)
    if not cast and all(n.target in _LAYOUT_ONLY for n in found):
        return exported
    from edgeml.export import fold_constants

    return fold_constants(exported)
