"""Drop the reshapes and pads that do nothing, in a captured ATen graph.

Decompositions are written from small helpers, and each helper reshapes its operands into the
layout it needs: the selective scan's decomposition reached ExecuTorch with chains of two or
three ``view`` nodes in a row, and a ``constant_pad_nd`` with zero padding where the length is
already a multiple of the chunk (about 20 such nodes per MobileMamba block). Each node costs
lowering time in every pass that walks the graph (ExecuTorch's edge passes, then XNNPACK's 17
passes per partition) and, on the device, a reshape or copy node in the delegate. This pass:

* folds ``view(view(x, s1), s2)`` into ``view(x, s2)`` (a chain of views of a contiguous tensor
  is one view of it);
* removes a ``view`` or an ``expand`` to the shape its input already has (``matmul`` of two 4-D
  operands decomposes into an ``expand`` of each to its own shape before the ``bmm``; ExecuTorch
  keeps them as ``expand_copy``, which XNNPACK does not take: four portable copies per attention);
* removes an ``expand`` whose every user is a broadcasting elementwise op that gives the same
  shape without it (``context.expand_as(value) * value``: the multiply broadcasts by itself, and
  XNNPACK takes no ``expand_copy``); likewise a ``repeat`` along size-1 axes only, which is such
  an expand (SwiftFormer's ``q.unsqueeze(1).repeat(1, n, 1) * k``: XNNPACK takes no ``repeat``);
* writes a ``squeeze`` / ``unsqueeze`` of a static shape as the ``view`` it is (adding or removing
  size-1 axes never moves data; XNNPACK delegates a static view and not ``squeeze_copy``, which
  ``unbind``-ing a fused qkv projection leaves on the portable kernels);
* removes an ``as_strided`` to its input's own shape with the strides a contiguous tensor has on
  every axis longer than one (core ATen's ``adaptive_avg_pool1d``, as Swin's pooler calls it, ends
  in one that only restrides size-1 axes; ExecuTorch keeps it as a portable ``as_strided_copy``);
* removes an ``alias`` and a step-1 ``slice`` over a whole axis (Perceiver's ``x[::1, ::1]``:
  ExecuTorch keeps the alias as a portable ``alias_copy``);
* removes a ``constant_pad_nd`` whose padding is all zero;
* writes a ``view`` whose target shape has exactly one symbolic size (dynamic shapes) with ``-1``
  there: the same reshape, but one XNNPACK takes (its partitioner refuses every reshape that
  names a symbolic size, and accepts one inferred dimension).

Static shapes only for the pads (a symbolic pad width is left alone); the function is unchanged
(``tests/export/test_reshapes_pass.py``).
"""
from __future__ import annotations

import torch
from torch import fx

_VIEW = torch.ops.aten.view.default
_PAD = torch.ops.aten.constant_pad_nd.default
_EXPAND = torch.ops.aten.expand.default
_REPEAT = torch.ops.aten.repeat.default
_AS_STRIDED = torch.ops.aten.as_strided.default
_ALIAS = torch.ops.aten.alias.default
_SLICE = torch.ops.aten.slice.Tensor
_BROADCASTING = (torch.ops.aten.add.Tensor, torch.ops.aten.sub.Tensor, torch.ops.aten.mul.Tensor,
                 torch.ops.aten.div.Tensor, torch.ops.aten.maximum.default, torch.ops.aten.minimum.default)
_SQUEEZES = (torch.ops.aten.squeeze.default, torch.ops.aten.squeeze.dim, torch.ops.aten.squeeze.dims,
             torch.ops.aten.unsqueeze.default)


def _contiguous(node: fx.Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and val.is_contiguous()


def _shape(node: fx.Node) -> tuple | None:
    val = node.meta.get("val")
    return tuple(val.shape) if isinstance(val, torch.Tensor) else None


def _is_identity(node: fx.Node) -> bool:
    if node.op != "call_function" or not isinstance(node.args[0], fx.Node):
        return False
    if node.target is _ALIAS:
        return True
    if node.target is _SLICE and (node.args[4] if len(node.args) > 4 else node.kwargs.get("step", 1)) != 1:
        return False
    if node.target in (_VIEW, _EXPAND, _REPEAT, _SLICE):
        shape = _shape(node)
        return shape is not None and shape == _shape(node.args[0])
    if node.target is _PAD:
        pad = node.args[1]
        return all(isinstance(p, int) and p == 0 for p in pad)
    if node.target is _AS_STRIDED:
        shape, source = _shape(node), node.args[0]
        size, stride = node.args[1], node.args[2]
        offset = node.args[3] if len(node.args) > 3 else node.kwargs.get("storage_offset")
        if shape is None or shape != _shape(source) or not _contiguous(source) or offset not in (None, 0):
            return False
        from edgeml.export import _standard_strides

        return all(isinstance(n, int) and (n == 1 or st == sd)
                   for n, st, sd in zip(size, stride, _standard_strides(shape)))
    return False


def _expands(node: fx.Node) -> bool:
    """``node`` is an expand, or a repeat that only repeats size-1 axes (the same values)."""
    if node.target is _EXPAND:
        return True
    source = _shape(node.args[0]) if node.target is _REPEAT and isinstance(node.args[0], fx.Node) else None
    reps = node.args[1] if len(node.args) > 1 else None
    return (source is not None and isinstance(reps, (list, tuple)) and len(reps) == len(source)
            and all(isinstance(r, int) and (r == 1 or n == 1) for r, n in zip(reps, source)))


def _broadcast_does_it(node: fx.Node) -> bool:
    """Whether ``node`` (an expand, or a repeat that is one) can go: each user broadcasts its
    operands to the same shape and dtype without it."""
    if node.op != "call_function" or not isinstance(node.args[0], fx.Node) or _shape(node.args[0]) is None \
            or not _expands(node):
        return False
    for user in node.users:
        if user.op != "call_function" or user.target not in _BROADCASTING or user.kwargs:
            return False
        shapes = []
        for a in user.args:
            if isinstance(a, fx.Node):
                shape = _shape(a.args[0] if a is node else a)
                if shape is None:
                    return False
                shapes.append(shape)
        try:
            if tuple(torch.broadcast_shapes(*shapes)) != _shape(user):
                return False
        except RuntimeError:
            return False
    return bool(node.users)


def _infer_symbolic_size(node: fx.Node) -> bool:
    """``view(x, [a, s, b])`` with one symbolic size s and the rest static: ``view(x, [a, -1, b])``."""
    shape = node.args[1]
    if not isinstance(shape, (list, tuple)):
        return False
    symbolic = [i for i, size in enumerate(shape) if not isinstance(size, int)]
    if len(symbolic) != 1 or any(size == -1 for size in shape):
        return False
    node.args = (node.args[0], [-1 if i == symbolic[0] else size for i, size in enumerate(shape)], *node.args[2:])
    return True


def simplify_reshapes(graph_module: fx.GraphModule) -> fx.GraphModule:
    """In place, and returned: the graph without chained or identity views and zero pads, and
    with a single symbolic size of a view written as ``-1``."""
    graph = graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in _SQUEEZES and isinstance(node.args[0], fx.Node) \
                and all(user.op != "output" for user in node.users):
            shape = _shape(node)
            if shape is not None and all(isinstance(s, int) for s in shape):
                with graph.inserting_before(node):
                    view = graph.call_function(_VIEW, (node.args[0], list(shape)))
                view.meta = dict(node.meta)
                node.replace_all_uses_with(view)
                graph.erase_node(node)
                node, changed = view, True
        if node.target is _VIEW and _infer_symbolic_size(node):
            changed = True
        if node.target is _VIEW:
            source = node.args[0]
            while (isinstance(source, fx.Node) and source.op == "call_function" and source.target is _VIEW
                   and _contiguous(source.args[0])):
                source = source.args[0]
            if source is not node.args[0]:
                node.args = (source, *node.args[1:])
                changed = True
        if _broadcast_does_it(node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            changed = True
            continue
        if _is_identity(node) and all(user.op != "output" for user in node.users):
            # (a graph output keeps its node: the program's signature names it)
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            changed = True
    if changed:
        graph.eliminate_dead_code()
        graph.lint()
        graph_module.recompile()
    return graph_module
