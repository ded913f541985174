"""Fold inference-mode BatchNorm into the neighbouring convolution or linear layer.

Generic over architectures: the model is traced once with ``torch.export`` to find, from the
data flow rather than from module names, every ``conv -> batch_norm`` pair (the conv's output
feeds only that BN), every ``linear -> batch_norm`` pair, also through reshapes that only merge
or split the leading dimensions (LeViT's ``linear -> flatten(0, 1) -> BatchNorm1d``, over the
linear's features), and every ``batch_norm -> linear`` pair (MobileMamba's ``BN_Linear`` head);
the folding itself is done on the ``nn.Module`` parameters, and the BN module becomes
``nn.Identity``. A BN or conv module called more than once is left alone (folding it would
change the other call sites). The input is not modified.

    conv -> BN:   W' = W * s[:, None, None, None],  b' = (b - mean) * s + beta
    linear -> BN: W' = W * s[:, None],              b' = (b - mean) * s + beta
    BN -> linear: W' = W * s[None, :],              b' = b + W @ (beta - mean * s)
    with s = gamma / sqrt(var + eps)
"""
from __future__ import annotations

import copy
import operator
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

aten = torch.ops.aten

_CONV_TARGETS = {aten.conv2d.default, aten.conv1d.default, aten.convolution.default}
_LINEAR_TARGETS = {aten.linear.default}
_RESHAPE_TARGETS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.flatten.using_ints}


def _is_batch_norm(node: torch.fx.Node) -> bool:
    return node.op == "call_function" and "batch_norm" in str(node.target)


@dataclass(frozen=True)
class FoldPlan:
    conv_bn: list[tuple[str, str]]  # (conv module path, bn module path)
    linear_bn: list[tuple[str, str]]  # (linear module path, bn module path)
    bn_linear: list[tuple[str, str]]  # (bn module path, linear module path)


def find_batchnorm_folds(model: nn.Module, example_inputs: tuple) -> FoldPlan:
    """Locate foldable pairs by tracing ``model`` (which is not changed); a model without
    BatchNorm is not traced. A model torch.export cannot capture is a LoweringError."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return FoldPlan([], [], [])
    from edgeml.export import capture

    ep = capture(model, example_inputs)
    sig = ep.graph_signature
    owner = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}  # placeholder -> FQN

    def module_of(node: torch.fx.Node) -> str | None:
        fqn = owner.get(node.name) if isinstance(node, torch.fx.Node) else None
        return fqn.rsplit(".", 1)[0] if fqn and "." in fqn else None

    # How many times each parameter is consumed: shared modules must not be folded.
    uses = Counter(owner[n.name] for n in ep.graph.nodes if n.op == "placeholder" and n.name in owner
                   for _ in n.users)
    conv_bn, linear_bn, bn_linear = [], [], []
    for node in ep.graph.nodes:
        if not _is_batch_norm(node):
            continue
        bn_path = module_of(node.args[1]) if len(node.args) > 1 else None
        if bn_path is None or uses[f"{bn_path}.weight"] != 1:
            continue
        src = node.args[0]
        if (isinstance(src, torch.fx.Node) and src.target in _CONV_TARGETS and len(src.users) == 1):
            conv_path = module_of(src.args[1])
            if conv_path and uses[f"{conv_path}.weight"] == 1:
                conv_bn.append((conv_path, bn_path))
                continue
        lin = _linear_over_features(node)
        if lin is not None:
            lin_path = module_of(lin.args[1])
            if lin_path and uses[f"{lin_path}.weight"] == 1:
                linear_bn.append((lin_path, bn_path))
                continue
        out = _bn_output(node)
        if out is not None and len(out.users) == 1:
            (user,) = out.users
            if user.target in _LINEAR_TARGETS and user.args[0] is out:
                lin_path = module_of(user.args[1])
                if lin_path and uses[f"{lin_path}.weight"] == 1:
                    bn_linear.append((bn_path, lin_path))
    return FoldPlan(conv_bn, linear_bn, bn_linear)


def _linear_over_features(bn: torch.fx.Node) -> torch.fx.Node | None:
    """The linear whose output features this BN normalizes, or None.

    The BN must read a 2-D (rows, features) tensor: its channels are then the last dimension, the
    linear's output features. Between the two only reshapes that keep that last dimension (merging
    or splitting leading ones), each the only reader of its input."""
    src = bn.args[0]
    shape = getattr(src.meta.get("val"), "shape", None) if isinstance(src, torch.fx.Node) else None
    if shape is None or len(shape) != 2:
        return None
    features = shape[-1]
    while isinstance(src, torch.fx.Node) and src.target in _RESHAPE_TARGETS:
        parent = src.args[0]
        if not isinstance(parent, torch.fx.Node) or len(_value_readers(parent)) != 1:
            return None
        val = parent.meta.get("val")
        if val is None or val.dim() < 1 or val.shape[-1] != features:
            return None
        if src.target is aten.flatten.using_ints and (src.args[2] if len(src.args) > 2 else -1) in (-1, val.dim() - 1):
            return None  # a flatten into the last dimension changes what the last dimension is
        src = parent
    if not isinstance(src, torch.fx.Node) or src.target not in _LINEAR_TARGETS or len(_value_readers(src)) != 1:
        return None
    return src


_SHAPE_OF_SECOND = {aten.reshape_as.default, aten.view_as.default, aten.expand_as.default}


def _value_readers(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The users that read ``node``'s values, not only its shape (``y.reshape_as(node)``, ``node.size(0)``)."""
    return [u for u in node.users
            if not (u.target is aten.sym_size.int
                    or (u.target in _SHAPE_OF_SECOND and u.args[1] is node and u.args[0] is not node))]


def _bn_output(node: torch.fx.Node) -> torch.fx.Node | None:
    # aten.batch_norm returns a tensor; the _native_* variants return a tuple read by getitem 0.
    if "native" not in str(node.target):
        return node
    getters = [u for u in node.users if u.target is operator.getitem and u.args[1] == 0]
    return getters[0] if len(getters) == 1 else None


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    s = gamma / torch.sqrt(var + bn.eps)
    return s, beta - mean * s


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example_inputs: tuple) -> nn.Module:
    """Return a copy of ``model`` (eval mode) with every foldable BatchNorm folded away."""
    model = copy.deepcopy(model).eval()
    plan = find_batchnorm_folds(model, example_inputs)
    for conv_path, bn_path in plan.conv_bn:
        conv, bn = model.get_submodule(conv_path), model.get_submodule(bn_path)
        s, t = _bn_scale_shift(bn)
        w = conv.weight.double()
        b = conv.bias.double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        # ConvTranspose would need the scale on dim 1; only plain convs are matched above.
        conv.weight.copy_((w * s.view(-1, *([1] * (w.dim() - 1)))).to(conv.weight.dtype))
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.empty(w.shape[0], dtype=conv.weight.dtype))
        conv.bias.copy_((b * s + t).to(conv.bias.dtype))
        _replace(model, bn_path, nn.Identity())
    for lin_path, bn_path in plan.linear_bn:
        lin, bn = model.get_submodule(lin_path), model.get_submodule(bn_path)
        s, t = _bn_scale_shift(bn)
        w = lin.weight.double()
        b = lin.bias.double() if lin.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        lin.weight.copy_((w * s.view(-1, 1)).to(lin.weight.dtype))
        if lin.bias is None:
            lin.bias = nn.Parameter(torch.empty(w.shape[0], dtype=lin.weight.dtype))
        lin.bias.copy_((b * s + t).to(lin.bias.dtype))
        _replace(model, bn_path, nn.Identity())
    for bn_path, lin_path in plan.bn_linear:
        bn, lin = model.get_submodule(bn_path), model.get_submodule(lin_path)
        s, t = _bn_scale_shift(bn)
        w = lin.weight.double()
        b = lin.bias.double() if lin.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        lin.weight.copy_((w * s.view(1, -1)).to(lin.weight.dtype))
        if lin.bias is None:
            lin.bias = nn.Parameter(torch.empty(w.shape[0], dtype=lin.weight.dtype))
        lin.bias.copy_((b + w @ t).to(lin.bias.dtype))
        _replace(model, bn_path, nn.Identity())
    return model


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
