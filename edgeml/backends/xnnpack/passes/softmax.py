"""A softmax over any axis as one over the last axis, for XNNPACK.

XNNPACK's softmax normalizes the innermost axis only, and ExecuTorch 1.5's partitioner leaves a
softmax over any other axis (MobileViTV2's and LeViT-style token weights, ``softmax(dim=1)``) on
the portable kernels. Moved to the end with a transpose, normalized, and moved back, it is the
same function in three ops XNNPACK delegates.
"""
from __future__ import annotations

import torch


def softmax_on_last_axis(x: torch.Tensor, dim: int, half_to_float: bool):
    if half_to_float or x.dim() < 2 or dim % x.dim() == x.dim() - 1:
        return NotImplemented
    y = torch.ops.aten._softmax.default(x.transpose(dim, -1), -1, False)
    return y.transpose(dim, -1)


def softmax_decompositions() -> dict:
    return {torch.ops.aten._softmax.default: softmax_on_last_axis}


_aten = torch.ops.aten


def _rank(node) -> int | None:
    val = getattr(node, "meta", {}).get("val")
    return val.dim() if isinstance(val, torch.Tensor) else None


def _reaches_convolution(node) -> bool:
    """Whether a convolution's output reaches ``node`` through 4-D tensors only."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen or n.op != "call_function" or _rank(n) != 4:
            continue
        seen.add(n)
        if n.target is _aten.convolution.default:
            return True
        stack.extend(a for a in n.all_input_nodes)
    return False


def isolate_channels_last_softmax(graph_module: torch.fx.GraphModule) -> int:
    """Give each softmax over a 4-D tensor that a convolution's output reaches a 3-D view of it.

    ExecuTorch 1.5.1's XNNPACK delegate keeps the 4-D tensors downstream of a convolution in
    channels-last order and then normalizes a softmax over the wrong axis of them: ``conv ->
    softmax(-1)`` on a (1, 8, 4, 16) map came out 0.26 off (max abs), ``conv -> relu -> softmax``
    and ``conv -> permute -> softmax`` likewise, while the same softmax over a 3-D view of the map
    is exact (``tests/export/test_xnnpack_decompositions.py``). MobileViTV2's linear attention
    (a 1x1 conv, a split, a softmax over the patches) verified at -13 dB through it. The view
    costs a layout copy; softmaxes that no convolution reaches as a 4-D tensor (attention scores
    from a matmul) are left alone. Returns how many it changed; in place."""
    graph = graph_module.graph
    changed = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not _aten._softmax.default:
            continue
        x, dim = node.args[0], node.args[1]
        val = x.meta.get("val") if hasattr(x, "meta") else None
        if not isinstance(val, torch.Tensor) or val.dim() != 4 or dim % 4 != 3 or \
                not all(isinstance(s, int) for s in val.shape) or not _reaches_convolution(x):
            continue
        a, b, c, d = val.shape
        with graph.inserting_before(node):
            source = x
            if not val.is_contiguous():
                source = graph.call_function(_aten.clone.default, (x,), {"memory_format": torch.contiguous_format})
                source.meta["val"] = val.contiguous()
            flat = graph.call_function(_aten.view.default, (source, [a, b * c, d]))
            flat.meta["val"] = val.contiguous().view(a, b * c, d)
            soft = graph.call_function(_aten._softmax.default, (flat, 2, node.args[2]))
            soft.meta["val"] = flat.meta["val"].softmax(2)
            back = graph.call_function(_aten.view.default, (soft, [a, b, c, d]))
            back.meta = dict(node.meta)
        node.replace_all_uses_with(back)
        graph.erase_node(node)
        changed += 1
    if changed:
        graph.lint()
        graph_module.recompile()
    return changed
