"""Loading official checkpoints into zoo models with strict key matching.

Zoo models keep the official repositories' state_dict keys. Where an implementation differs in
structure (a vectorized module, a channels-first layout, a training-form checkpoint of a
reparameterizable model) the model class defines ``adapt_official_state_dict(state) -> state``,
which may reshape tensors, rename keys or even switch the module to another form before the
strict load.
"""
from __future__ import annotations

import re
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
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a folder; pass the checkpoint file (written by torch.save)")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
        try:
            # weights_only: a checkpoint is data, never code to execute.
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch.load on arbitrary bytes raises nearly anything
            # (KeyError on a text file, UnpicklingError, EOFError, RuntimeError from the zip reader)
            raise CheckpointError(f"cannot read checkpoint {path}: {_why_unreadable(path, e)}") from None
        try:
            return unwrap_state_dict(obj)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
    return unwrap_state_dict(checkpoint)


_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_TORCH_SAVE = "Pass a file written by torch.save holding a state_dict."


def _why_unreadable(path: Path, error: Exception) -> str:
    """What ``path`` is, told from its first bytes, and what to do instead (one line)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as e:
        return f"{e.strerror or type(e).__name__}."
    if not head:
        return f"the file is empty. {_TORCH_SAVE}"
    unsafe = _UNSAFE_GLOBAL.search(str(error))
    if unsafe:
        return (f"besides tensors it stores Python objects ({unsafe.group(1)}), and edgeml reads checkpoints with "
                "torch.load(weights_only=True), which runs no code. If you trust the file, save its state_dict "
                "alone: torch.save(torch.load(FILE, weights_only=False)['model'], 'weights.pth') (or whichever "
                "key holds the weights)")
    if head.startswith(b"\x93NUMPY"):
        return f"it is a NumPy array (.npy), not a state_dict. {_TORCH_SAVE}"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return ("it is a safetensors file; load it with safetensors.torch.load_file and pass the state_dict "
                "to the Python API, or torch.save it to a .pth file")
    if head.startswith(b"PK"):
        if b"data.pkl" in head[:256]:  # torch.save's first entry: <name>/data.pkl
            first = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
            return f"torch cannot read this torch.save archive (truncated or corrupt?): {first[:200]}"
        return f"it is a zip archive but not one torch.save wrote (a NumPy .npz?). {_TORCH_SAVE}"
    try:
        text: str | None = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut by the 4096-byte window is still text
        text = head[:e.start].decode("utf-8") if e.start >= len(head) - 3 and len(head) == 4096 else None
    if text is not None and all(c.isprintable() or c.isspace() for c in text):
        kind = "a JSON file" if text.lstrip()[:1] in ("{", "[") else "a text file"
        return f"it is {kind}, not a checkpoint. {_TORCH_SAVE}"
    return f"it is not a checkpoint torch.save wrote ({type(error).__name__}). {_TORCH_SAVE}"


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
