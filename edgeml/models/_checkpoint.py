"""Loading official checkpoints into zoo models with strict key matching.

Zoo models keep the official repositories' state_dict keys. Where an implementation differs in
structure (a vectorized module, a channels-first layout, a training-form checkpoint of a
reparameterizable model) the model class defines ``adapt_official_state_dict(state) -> state``,
which may reshape tensors, rename keys or even switch the module to another form before the
strict load.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeml.errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model", "ema", "model_ema", "state_dict_ema", "module")


def read_checkpoint(checkpoint: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return a flat ``{key: tensor}`` state_dict from a path or a (wrapped) mapping."""
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
        try:
            # weights_only: a checkpoint is data, never code to execute.
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
            raise CheckpointError(
                f"cannot read checkpoint {path}: {str(e).splitlines()[0]}. "
                "Pass a file written by torch.save holding a state_dict."
            ) from None
    else:
        obj = checkpoint
    return unwrap_state_dict(obj)


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Peel ``state_dict``/``model``/``ema`` wrappers and ``module.`` prefixes."""
    for _ in range(3):  # wrappers nest at most a couple of levels in practice
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            "checkpoint holds no state_dict (expected a mapping of tensors, possibly under "
            f"one of {', '.join(_WRAPPER_KEYS)})"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_checkpoint(model: nn.Module, checkpoint: str | Path | Mapping[str, Any]) -> None:
    """Load an official checkpoint into ``model`` with ``strict=True``."""
    state = read_checkpoint(checkpoint)
    adapt = getattr(model, "adapt_official_state_dict", None)
    if adapt is not None:
        state = adapt(state)
    model_keys = set(model.state_dict())
    missing = sorted(model_keys - set(state))
    unexpected = sorted(set(state) - model_keys)
    if missing or unexpected:
        name = getattr(getattr(model, "edgeml_config", None), "name", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"checkpoint does not match {name}: {'; '.join(parts)} keys. "
            "Is it a checkpoint of this variant, from the official repository?"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint tensors do not fit the model: {str(e).splitlines()[-1].strip()}") from None
