"""Binary ops with a Python-number operand in their Tensor form, which XNNPACK delegates.

``aten.mul.Scalar`` (and add / sub / div) reaches ExecuTorch's edge dialect as itself, and the
XNNPACK partitioner takes the ``.Tensor`` overloads only: the query and key scaling of
``scaled_dot_product_attention``'s decomposition (``q * sqrt(scale)``) ran on the portable kernels,
two per attention (SegFormer: 16). ``mul.Tensor(x, 0.42)`` is the same op with the number as a
0-d operand, which ExecuTorch lifts into a constant of ``x``'s dtype. Floating-point tensors only
(an integer tensor times a float would change dtype promotion); fp16 programs have their own
rewrite (``edgeml.quantize.fp16.fp16_scalar_operands``), which makes fp16 constants.
"""
from __future__ import annotations

import torch
from torch import fx

_aten = torch.ops.aten
_TENSOR_FORM = {_aten.add.Scalar: _aten.add.Tensor, _aten.sub.Scalar: _aten.sub.Tensor,
                _aten.mul.Scalar: _aten.mul.Tensor, _aten.div.Scalar: _aten.div.Tensor}
_BINARY = {*_TENSOR_FORM, *_TENSOR_FORM.values()}


def scalar_ops_as_tensor_ops(graph_module: fx.GraphModule) -> int:
    """In place: each ``.Scalar`` binary op on a float32 tensor becomes its ``.Tensor`` form, and an
    integer number operand of a float32 binary op becomes the float it means (``x * 2``: ExecuTorch
    lifts the ``2`` as an int64 tensor and casts it on the portable kernels). Returns how many."""
    changed = 0
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target not in _BINARY:
            continue
        val = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
        number = node.args[1] if len(node.args) > 1 else None
        if not isinstance(val, torch.Tensor) or val.dtype != torch.float32 or isinstance(number, bool) \
                or not isinstance(number, (int, float)):
            continue
        node.target = _TENSOR_FORM.get(node.target, node.target)
        node.args = (node.args[0], float(number), *node.args[2:])
        changed += 1
    if changed:
        graph_module.recompile()
    return changed
