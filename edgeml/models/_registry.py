"""The model zoo registry: names -> builders plus each model's default deployment config.

Follows timm's pattern (configs as data, one file per family, a registry), with one addition
a deployment compiler needs: every entry says what its input and output *are*, so that the
exporter, the manifest and the Android app never guess.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNIT_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (1.0, 1.0, 1.0)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelConfig:
    """What a zoo model takes and gives, recorded in every artifact's manifest."""

    name: str
    family: str
    resolution: int  # default square input size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000  # 0 when the output is not class logits
    output: str = "logits"  # "logits", "embeddings", "tokens", ...
    output_description: str = "ImageNet-1k class logits (B, 1000)"
    stride: int = 32  # resolutions must be multiples of this
    min_resolution: int = 32
    max_resolution: int = 2048
    in_chans: int = 3
    # The center crop's share of the resized image's shorter side (1.0: resize the shorter side to
    # the resolution; 0.875: resize to resolution / 0.875, then crop, as ImageNet evaluation does).
    crop_fraction: float = 1.0
    labels: str | None = "imagenet-1k"
    # Formats an end-to-end test exports, verifies and runs; empty until a family's tests do.
    formats: tuple[str, ...] = ()
    paper: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["formats"] = list(self.mean), list(self.std), list(self.formats)
        d["extra"] = dict(self.extra)
        return d

    def with_resolution(self, resolution: int) -> ModelConfig:
        return replace(self, resolution=int(resolution))


@dataclass(frozen=True)
class ModelEntry:
    config: ModelConfig
    builder: Callable[..., nn.Module]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(config: ModelConfig) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``builder(**kwargs) -> nn.Module`` under ``config.name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if config.name in _REGISTRY:
            raise ValueError(f"model {config.name!r} registered twice")
        _REGISTRY[config.name] = ModelEntry(config=config, builder=builder)
        return builder

    return wrap


def _import_families() -> None:
    # Families register themselves on import; importing here keeps `import edgeml` cheap
    # for the commands that never build a model.
    from edgeml.models import _families  # noqa: F401


def list_models() -> list[str]:
    """Names of every model in the zoo, sorted."""
    _import_families()
    return sorted(_REGISTRY)


def get_model_config(name: str) -> ModelConfig:
    """The default config of a zoo model (raises UnknownModelError)."""
    return _entry(name).config


def _entry(name: str) -> ModelEntry:
    _import_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Run `edgeml list` to see the zoo."
        ) from None


def create_model(
    name: str,
    checkpoint: str | Path | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model in eval mode, optionally loading an official checkpoint.

    ``checkpoint`` is a path to a file written by ``torch.save`` or a state_dict-like mapping,
    with the official repository's keys (``state_dict``/``model``/``ema`` wrappers and
    ``module.`` prefixes are accepted). Without one the weights are randomly initialized from
    ``seed`` and BatchNorm statistics are estimated on the sample images (see ``_init``), so the
    same name and seed always give the same model. The model carries its config as
    ``model.edgeml_config``.
    """
    entry = _entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.builder(**kwargs)
    config = entry.config
    if "resolution" in kwargs:
        config = config.with_resolution(kwargs["resolution"])
    model.edgeml_config = config  # type: ignore[assignment]
    if checkpoint is not None:
        from edgeml.models._checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint)
    else:
        from edgeml.models._init import finish_random_init

        finish_random_init(model, config)
    return model.eval()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_model_params(name: str, **kwargs: Any) -> int:
    """Parameter count of a zoo model, built on the meta device where the builder allows it."""
    builder = _entry(name).builder
    try:
        with torch.device("meta"):
            return count_params(builder(**kwargs))
    except (NotImplementedError, RuntimeError):  # a builder that computes on its weights
        return count_params(builder(**kwargs))


def example_input(config: ModelConfig, batch: int = 1, resolution: int | None = None) -> torch.Tensor:
    r = resolution or config.resolution
    return torch.randn(batch, config.in_chans, r, r)
