"""Deterministic random initialization that leaves a network in a usable state.

Without an official checkpoint, the zoo initializes randomly. A freshly initialized network in
eval mode has BatchNorm running statistics (mean 0, var 1) that have nothing to do with its
activations, so activations shrink or blow up layer by layer (MobileNetV2: logits ~1e-9). Every
figure measured on such a model — int8 SQNR above all — would be meaningless. So, after a
seeded init, the BatchNorm statistics are estimated from the real sample images shipped with
edgeml (the same data-dependent trick as BN recalibration after pruning). The result is
deterministic: ``verify`` rebuilds the identical reference from the model name and seed.

A family may then adjust the network through ``finish_random_init()`` (MobileNetV2 scales its
residual branches down: a deep random network with every layer renormalized is chaotic, which
trained networks are not). Parity figures on random weights therefore measure the toolchain's
numerical fidelity on a stable network, not a trained model's accuracy.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeml.models._registry import ModelConfig

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
CALIBRATION_MAX_RESOLUTION = 384


@torch.no_grad()
def finish_random_init(model: nn.Module, config: ModelConfig) -> None:
    """Estimate BatchNorm statistics on the sample images, then let the family finish its init.

    A family whose ``finish_random_init`` estimates every BatchNorm itself (FastViTHD does, in
    its training form) says so through ``estimates_batchnorm_on_init()``; the generic pass would
    only be overwritten."""
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    estimates_itself = getattr(model, "estimates_batchnorm_on_init", None)
    if bns and not (estimates_itself is not None and estimates_itself()):
        _estimate(model, bns, config)
    finish = getattr(model, "finish_random_init", None)
    if finish is not None:
        finish()


def _estimate(model: nn.Module, bns: list[nn.Module], config: ModelConfig) -> None:
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
