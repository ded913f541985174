"""Constant operands of 4-D elementwise ops given four dimensions, so XNNPACK keeps them channels-last.

ExecuTorch's ``ChannelsLastTaggedReshapePass`` (1.5.1) runs a convolution's output in NHWC, and
an elementwise op on it stays NHWC only if every operand can be made NHWC, which it allows for
4-D tensors only. ``x * weight.view(C, 1, 1)``, ``var + 1e-5`` or a layer scale of shape
``(C, 1, 1)`` have a 3-D or 0-D constant operand, so the pass runs the op in NCHW and puts a
``Transpose`` of the whole activation on each side of it. A LayerNorm over channels with its
affine (EfficientMod, FastViT) paid four of them: EfficientMod-XXS's program transposed
activations 114 times, and 26 times with this pass.

The same constant viewed with leading 1s to four dimensions broadcasts to the same values, and is
4-D: the op stays NHWC, and the only layout change left is of the constant itself, which
ExecuTorch folds. ``rank_align_constant_operands`` rewrites the graph in place; the caller folds
the new views of constants (``edgeml.export.fold_constants``).
"""
from __future__ import annotations

import torch
from torch import fx

_aten = torch.ops.aten
_BINARY = (_aten.add.Tensor, _aten.sub.Tensor, _aten.mul.Tensor, _aten.div.Tensor)


def rank_align_constant_operands(graph_module: fx.GraphModule, constants: set[str]) -> int:
    """In place: in every float32 add / sub / mul / div whose output is 4-D and whose other operand
    is computed, a constant operand of fewer dimensions (computed from placeholders named in
    ``constants`` only, or a Python number) is replaced by a 4-D view of it. Returns how many
    operands changed."""
    graph = graph_module.graph
    # Constant: computed from constants only (a parameter's ``view(C, 1, 1)`` included).
    constant: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            if node.name in constants:
                constant.add(node)
        elif node.op == "call_function" and node.all_input_nodes and all(a in constant for a in node.all_input_nodes):
            constant.add(node)
    changed = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _BINARY or len(node.args) < 2:
            continue
        out = node.meta.get("val")
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.dtype != torch.float32:
            continue
        args = list(node.args[:2])
        computed = [isinstance(a, fx.Node) and a not in constant for a in args]
        if not any(computed):
            continue
        for i, arg in enumerate(args):
            if computed[i]:
                continue
            with graph.inserting_before(node):
                if isinstance(arg, (int, float)) and not isinstance(arg, bool):
                    args[i] = graph.call_function(_aten.full.default, ([1, 1, 1, 1], float(arg)),
                                                  {"dtype": torch.float32, "device": out.device})
                    args[i].meta["val"] = out.new_full((1, 1, 1, 1), float(arg))  # fake like ``out``
                elif (isinstance(arg, fx.Node) and isinstance(val := arg.meta.get("val"), torch.Tensor)
                      and val.dim() < 4 and val.dtype == torch.float32):
                    shape = [1] * (4 - val.dim()) + list(val.shape)
                    args[i] = graph.call_function(_aten.view.default, (arg, shape))
                    args[i].meta["val"] = val.reshape(shape)
                else:
                    continue
            changed += 1
        node.args = (*args, *node.args[2:])
    if changed:
        graph_module.recompile()
    return changed
