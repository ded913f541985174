"""What a model may declare to edgeml: one protocol, every method optional.

edgeml compiles any ``nn.Module``. A model (a zoo family, or a user's) can tell it more through
the methods and attributes below; edgeml looks them up by name, so a model never imports edgeml
to use them, and the passes never import a model family. Nothing here is required: a model
without any of them is compiled as it is.

On the whole model
    ``edgeml_config``: a ``ModelConfig`` (input size, mean/std, output kind, stride and
    resolution range). The zoo sets it; a user's callable may return a module carrying one
    instead of passing ``--input-shape``/``--mean``/``--std``.

    ``adapt_official_state_dict(state) -> state``: maps a checkpoint written by the original
    repository onto the module's keys and layout before the strict load (a vectorized module, a
    channels-first layout, a training-form checkpoint of a reparameterizable model).
    ``edgeml.models._checkpoint.load_checkpoint`` calls it.

    ``finish_random_init()``: after a seeded random init and BatchNorm statistics estimated on the
    sample images, adjusts the network so that figures measured on random weights mean something
    (MobileNetV2 scales its residual branches). Zoo models only (``edgeml.models._init``); a user's
    callable builds its weights itself and edgeml leaves them alone.

    ``estimates_batchnorm_on_init() -> bool``: True when ``finish_random_init`` estimates every
    BatchNorm itself, so the generic estimate is skipped.

On any block
    ``use_export_form()``: rewrites the block in place into the same function in ops the
    backends delegate (MobileMamba's SS2D: grouped 1x1 convs instead of batched matmuls).
    ``edgeml.export.passes.export_form`` calls it on a copy, outer blocks first.

    ``reparameterize()`` / ``switch_to_deploy()`` / ``fuse()``: the common conventions for
    switching a training-form block (MobileOne, RepVGG, FastViT's RepMixer, LeViT's ConvNorm) to
    its inference form; ``fuse()`` may return the replacement block.
    ``edgeml.export.passes.reparameterize`` calls the first one a block has, on a copy.

``ModelProtocol`` and ``BlockProtocol`` spell these out for type checkers; ``declared_hooks``
lists which of them a module provides.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

MODEL_HOOKS = ("edgeml_config", "adapt_official_state_dict", "finish_random_init", "estimates_batchnorm_on_init")
BLOCK_HOOKS = ("use_export_form", "reparameterize", "switch_to_deploy", "fuse")


@runtime_checkable
class ModelProtocol(Protocol):
    def adapt_official_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def finish_random_init(self) -> None: ...


@runtime_checkable
class BlockProtocol(Protocol):
    def use_export_form(self) -> None: ...


def declared_hooks(model: nn.Module) -> dict[str, list[str]]:
    """``{hook: [module paths]}`` for every hook of this protocol the model or its blocks define."""
    found: dict[str, list[str]] = {}
    for name in MODEL_HOOKS:
        if hasattr(model, name):
            found.setdefault(name, []).append("")
    for path, module in model.named_modules():
        for name in BLOCK_HOOKS:
            if callable(getattr(module, name, None)) and not isinstance(getattr(module, name), nn.Module):
                found.setdefault(name, []).append(path)
    return found
