"""Structural reparameterization pass: merge training-form branches into single convolutions and
fold BatchNorms into the convs before them.

What it merges (the arithmetic sits with the blocks in ``edgeml.models.layers.reparam``, as in
timm, so that a block and its merge rule cannot drift apart):

* MobileOne: ``BN(x) + convbn_1x1(x) + sum_i convbn_kxk_i(x)`` -> one k x k conv with bias;
* RepLKNet large-kernel conv: ``convbn_7x7(x) + convbn_3x3(x)`` -> one 7x7 conv;
* FastViT RepMixer: ``x + ls * (mixer(x) - norm(x))`` -> one depthwise conv with
  ``W = I + ls * (W_mixer - W_norm)``, ``b = ls * (b_mixer - b_norm)`` (the residual disappears);
* FastViT RepCPE: ``x + DWConv(x)`` -> ``W = I + W_pe``;
* any block of a model edgeml did not define that follows the common conventions: a
  ``reparameterize()`` (timm, MobileOne, FastViT), ``switch_to_deploy()`` (RepVGG and its
  descendants) or ``fuse()`` (timm's LeViT / RepViT, returning the fused block) method taking no
  arguments is called, outer blocks first, as timm's ``reparameterize_model`` does;
* then every ``Sequential`` whose ``Conv2d`` is directly followed by a ``BatchNorm2d`` gets the BN
  folded into the conv (the BN becomes ``Identity``); FastViT's ConvFFN keeps such a BN even in
  the inference form that FastVLM ships.

Differences from the originals' ``reparameterize()``: the pass is pure (it works on a deep copy
and returns it in eval mode), and BN folding uses the running statistics, i.e. the result is the
eval-mode function. It works on eager ``nn.Module`` trees, which is where the export pipeline
applies it, before ``torch.export``: a traced ``GraphModule`` calls the branch convs from its
graph, so swapping its submodules would not change what it computes, and it is refused.
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import fx, nn

from edgeml.models.layers.reparam import ReparamModule, fuse_bn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv computing ``bn(conv(x))`` with the BN's running statistics."""
    if conv.out_channels != bn.num_features:
        raise ValueError(f"BN over {bn.num_features} channels after a conv with {conv.out_channels}")
    weight, bias = fuse_bn(conv.weight, bn, conv.bias)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused


# Method names that, by the common conventions of other codebases, switch a block to its
# inference form: timm / MobileOne / FastViT ``reparameterize()``, RepVGG-style
# ``switch_to_deploy()``, timm / LeViT / RepViT ``fuse()`` (which returns the fused module).
REPARAMETERIZE_METHODS = ("reparameterize", "switch_to_deploy", "fuse")


def reparameterize_method(module: nn.Module) -> Callable[[], Any] | None:
    """The block's own inference-form switch, if it has one that takes no arguments."""
    for name in REPARAMETERIZE_METHODS:
        method = getattr(module, name, None)
        if callable(method) and not isinstance(method, nn.Module) and _takes_no_arguments(method):
            return method
    return None


def _takes_no_arguments(method: Callable) -> bool:
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def merge_reparam_blocks(module: nn.Module) -> nn.Module:
    """In place: switch every block under ``module`` that has an inference-form method (edgeml's
    ``ReparamModule`` and any module following the conventions above) to that form, outer blocks
    first, as timm's ``reparameterize_model`` does (a block's switch may merge its children too).
    A method that returns another module (``fuse()``) replaces the block; the returned module is
    ``module`` or its replacement."""
    method = reparameterize_method(module)
    if method is not None:
        result = method()
        if isinstance(result, nn.Module) and result is not module:
            return result
        if isinstance(module, ReparamModule):
            return module  # merges nested blocks too (a RepMixer's MobileOnes)
    for name, child in list(module.named_children()):
        replaced = merge_reparam_blocks(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def fold_sequential_batchnorms(module: nn.Module) -> int:
    """In place: fold each ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential``
    into that conv. Returns how many were folded."""
    folded = sum(fold_sequential_batchnorms(child) for child in module.children())
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for prev, name in zip(names, names[1:], strict=False):
            conv, bn = module._modules[prev], module._modules[name]
            if isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
                module._modules[prev] = fold_conv_bn(conv, bn)
                module._modules[name] = nn.Identity()
                folded += 1
    return folded


def reparameterize_model(module: ModuleT) -> ModuleT:
    """Return a copy of ``module`` with every reparameterizable block merged into one conv and every
    ``Sequential`` conv -> BN pair folded; ``module`` itself is left untouched.

    The copy is in eval mode and computes the same eval-mode function within fp32 rounding.
    """
    if isinstance(module, fx.GraphModule):
        raise TypeError(
            "reparameterize_model works on eager modules: apply it before torch.export / fx tracing"
        )
    model = copy.deepcopy(module)
    with torch.no_grad():
        model = merge_reparam_blocks(model.eval())
        fold_sequential_batchnorms(model)
    return model.eval()
