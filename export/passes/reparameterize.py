"""Structural reparameterization pass: merge training-form branches into single convolutions and
fold BatchNorms into the convs before them.

What it merges (the arithmetic sits with the blocks in ``edgeml.models.layers.reparam``, as in
timm, so that a block and its merge rule cannot drift apart):

* MobileOne: ``BN(x) + convbn_1x1(x) + sum_i convbn_kxk_i(x)`` -> one k x k conv with bias;
* RepLKNet large-kernel conv: ``convbn_7x7(x) + convbn_3x3(x)`` -> one 7x7 conv;
* FastViT RepMixer: ``x + ls * (mixer(x) - norm(x))`` -> one depthwise conv with
  ``W = I + ls * (W_mixer - W_norm)``, ``b = ls * (b_mixer - b_norm)`` (the residual disappears);
* FastViT RepCPE: ``x + DWConv(x)`` -> ``W = I + W_pe``;
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
from typing import TypeVar

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


def merge_reparam_blocks(module: nn.Module) -> None:
    """In place: merge every training-form ``ReparamModule`` under ``module`` into one conv."""
    if isinstance(module, ReparamModule):
        module.reparameterize()  # merges nested blocks too (a RepMixer's MobileOnes)
        return
    for child in module.children():
        merge_reparam_blocks(child)


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
        merge_reparam_blocks(model)
        fold_sequential_batchnorms(model)
    return model.eval()
