"""EfficientMod's context tiling without a concat of one tensor with itself, for XNNPACK.

An EfficientMod block with MLP ratio ``r > 1`` computes ``fc2(act(fc1(x)) * tile_r(ctx))`` where
``tile_r`` is ``cat([ctx] * r, dim=1)``. XNNPACK's partitioner counts a concat's *distinct*
inputs (``node.all_input_nodes``) and refuses a concat of fewer than two, so the tile stays on a
portable kernel and cuts the delegated graph at every such block.

The product is elementwise, so it splits along the ``r`` channel chunks of ``fc1``'s output:

    act(fc1(x)) * tile_r(ctx) = cat_k( act(fc1_k(x)) * ctx ),   k = 0 .. r-1

where ``fc1_k`` is the 1x1 conv made of output channels ``k*C .. (k+1)*C - 1`` of ``fc1``.
The concat now has ``r`` distinct inputs (XNNPACK takes up to 5 per node; ExecuTorch splits
larger ones), ``fc2`` is unchanged, and the multiply-accumulate count is exactly the original's:
the same weights, in ``r`` convs of ``C`` outputs instead of one of ``r*C``. Other ways out cost
more: folding the tile into the context's last 1x1 conv (``g`` repeated ``r`` times) adds
``(r - 1) * C^2`` MACs per pixel (+16% for efficientmod_xxs), and a broadcasting multiply on a
``(B, r, C, HW)`` view forces layout conversions around XNNPACK's channels-last convs.

``split_context_tiling`` is pure (works on a copy) and changes nothing else.
"""
from __future__ import annotations

import copy
from typing import TypeVar

import torch
from torch import fx, nn

from edgeml.models.efficientmod import ContextLayer, ModulationMlp

ModuleT = TypeVar("ModuleT", bound=nn.Module)


class ChunkedModulationMlp(nn.Module):
    """``ModulationMlp`` with ``fc1`` split into ``ratio`` convs of ``C`` outputs each."""

    def __init__(self, mlp: ModulationMlp) -> None:
        super().__init__()
        ratio, fc1 = mlp.ratio, mlp.fc1
        dim = fc1.out_channels // ratio
        self.ratio = ratio
        self.fc1 = nn.ModuleList()
        for k in range(ratio):
            conv = nn.Conv2d(fc1.in_channels, dim, 1, bias=fc1.bias is not None).to(
                device=fc1.weight.device, dtype=fc1.weight.dtype
            )
            with torch.no_grad():
                conv.weight.copy_(fc1.weight[k * dim:(k + 1) * dim])
                if fc1.bias is not None:
                    conv.bias.copy_(fc1.bias[k * dim:(k + 1) * dim])
            self.fc1.append(conv)
        self.act = copy.deepcopy(mlp.act)
        self.context_layer: ContextLayer = copy.deepcopy(mlp.context_layer)
        self.fc2 = copy.deepcopy(mlp.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context_layer(x)
        return self.fc2(torch.cat([self.act(fc(x)) * ctx for fc in self.fc1], dim=1))


def split_context_tiling(module: ModuleT) -> ModuleT:
    """Return a copy of ``module`` in which every ``ModulationMlp`` with ratio > 1 is a
    ``ChunkedModulationMlp``; same function within fp32 rounding. ``module`` is left untouched."""
    if isinstance(module, fx.GraphModule):
        raise TypeError("split_context_tiling works on eager modules: apply it before torch.export")
    if _splittable(module):
        return ChunkedModulationMlp(module).train(module.training)
    model = copy.deepcopy(module)
    _replace_in_place(model)
    return model


def _splittable(module: nn.Module) -> bool:
    return type(module) is ModulationMlp and module.ratio > 1


def _replace_in_place(module: nn.Module) -> None:
    for name, child in module.named_children():
        if _splittable(child):
            setattr(module, name, ChunkedModulationMlp(child).train(child.training))
        else:
            _replace_in_place(child)


def count_tiled_modulations(module: nn.Module) -> int:
    """How many blocks ``split_context_tiling`` would rewrite."""
    return sum(_splittable(m) for m in module.modules())
