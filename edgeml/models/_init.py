"""Deterministic random initialization that leaves a network in a usable state.

Without an official checkpoint, the zoo initializes randomly. A freshly initialized network in
eval mode has BatchNorm running statistics (mean 0, var 1) that have nothing to do with its
activations, so activations shrink or blow up layer by layer (MobileNetV2: logits ~1e-9). Every
figure measured on such a model — int8 SQNR above all — would be meaningless. So, after a
seeded init, the BatchNorm statistics are estimated from the real sample images shipped with
edgeml (the same data-dependent trick as BN recalibration after pruning). The result is
deterministic: ``verify`` rebuilds the identical reference from the model name and seed.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeml.models._registry import ModelConfig

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
CALIBRATION_MAX_RESOLUTION = 384


@torch.no_grad()
def estimate_batchnorm_statistics(model: nn.Module, config: ModelConfig) -> None:
    """Set every BatchNorm's running statistics from one batch of the sample images."""
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if not bns:
        return
    from edgeml.images import Preprocessing, load_image, sample_images

    resolution = min(config.resolution, CALIBRATION_MAX_RESOLUTION)
    resolution -= resolution % config.stride if resolution > config.stride else 0
    pre = Preprocessing.for_resolution(resolution, config.mean, config.std)
    x = torch.cat([pre(load_image(p)) for p in sample_images()])
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches seen
        bn.train()
    try:
        model(x)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
