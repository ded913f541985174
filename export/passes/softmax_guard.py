"""Drop the fully-masked-row guard of attention softmaxes that have no mask, in a decomposed graph.

``scaled_dot_product_attention`` decomposes (torch's math form) into ``bmm``, ``_softmax`` and
then the guard of ``_safe_softmax``: ``where(all(scores == -inf, dim), 0, softmax)``, so that a
row every key of which is masked out gives zeros rather than NaN. The guard is five boolean ops
(``eq``, ``logical_not``, ``any``, ``logical_not``, ``where``) and a ``full_like`` per attention,
none of which XNNPACK runs: each attention layer leaves them to ExecuTorch's portable kernels
and splits the XNNPACK partition around them (Segformer: 8 attentions, 56 portable nodes).

A score row can only be all ``-inf`` through a mask. When the scores are the product of the
attention matmul, only scaled, reshaped or copied on their way to the softmax (no mask added,
no ``masked_fill`` or ``where``), the guard selects the softmax everywhere, and this pass lets
the softmax's users read it directly; the dead guard nodes go. So does an additive mask that is a
constant of the program with finite values only (Swin's shifted-window mask, -100 where a key
is masked out, once ``passes.constants`` has folded it): finite scores plus finite values are
never ``-inf``. Any other masked attention keeps its guard.
The function is unchanged (``tests/export/test_softmax_guard.py``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import fx

aten = torch.ops.aten
_SOFTMAX = {aten._softmax.default, aten.softmax.int}
_MATMUL = {aten.bmm.default, aten.mm.default, aten.matmul.default, aten.baddbmm.default}
# Ops on the way from the matmul to the softmax that cannot make a finite score -inf.
_PASSTHROUGH = {
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.expand.default,
    aten.permute.default, aten.clone.default, aten.contiguous.default, aten.squeeze.dim,
    aten.unsqueeze.default, aten.mul.Scalar, aten.div.Scalar, aten._to_copy.default,
}


def _unmasked(scores: fx.Node, constants: Mapping[str, torch.Tensor]) -> bool:
    """``scores`` come from a matmul through pass-through ops and constant finite additive masks
    only (no mask on the way that could make a score -inf)."""
    node = scores
    while isinstance(node, fx.Node) and node.op == "call_function":
        if node.target in _MATMUL:
            return True
        if node.target is aten.add.Tensor and len(node.args) == 2:
            finite = [i for i, a in enumerate(node.args) if _finite_constant(a, constants)]
            if not finite:
                return False
            node = node.args[1 - finite[0]]
            continue
        if node.target not in _PASSTHROUGH:
            return False
        node = node.args[0]
    return False


def _finite_constant(node: object, constants: Mapping[str, torch.Tensor]) -> bool:
    value = constants.get(node.name) if isinstance(node, fx.Node) and node.op == "placeholder" else None
    return isinstance(value, torch.Tensor) and value.is_floating_point() and bool(torch.isfinite(value).all())


def constant_values(exported: torch.export.ExportedProgram) -> dict[str, torch.Tensor]:
    """The value of each placeholder of ``exported`` that is a parameter, buffer or constant."""
    sig = exported.graph_signature
    state = {**exported.state_dict, **exported.constants}
    found = {}
    for names in (sig.inputs_to_parameters, sig.inputs_to_buffers, sig.inputs_to_lifted_tensor_constants):
        for placeholder, target in names.items():
            if target in state:
                found[placeholder] = state[target]
    return found


def _guard_of(where: fx.Node) -> fx.Node | None:
    """The softmax a ``where(cond, zeros, softmax)`` guards, when ``cond`` tests its scores for -inf."""
    if where.op != "call_function" or where.target is not aten.where.self or len(where.args) != 3:
        return None
    cond, _, softmax = where.args
    if not (isinstance(softmax, fx.Node) and softmax.op == "call_function" and softmax.target in _SOFTMAX):
        return None
    scores = softmax.args[0]
    stack, seen = [cond], set()
    while stack:  # the condition's few boolean ops, back to an eq(scores, -inf)
        n = stack.pop()
        if not isinstance(n, fx.Node) or n in seen or n.op != "call_function" or len(seen) > 8:
            continue
        seen.add(n)
        if n.target is aten.eq.Scalar and n.args[0] is scores and n.args[1] == -math.inf:
            return softmax
        stack.extend(n.all_input_nodes)
    return None


def drop_unmasked_softmax_guards(graph_module: fx.GraphModule,
                                 constants: Mapping[str, torch.Tensor] | None = None) -> int:
    """Remove the guards of softmaxes whose scores carry no mask, in place; returns how many.
    ``constants`` (``constant_values`` of the program) lets constant finite masks count as none."""
    dropped = 0
    for node in list(graph_module.graph.nodes):
        softmax = _guard_of(node)
        if softmax is not None and _unmasked(softmax.args[0], constants or {}):
            node.replace_all_uses_with(softmax)
            dropped += 1
    if dropped:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return dropped
