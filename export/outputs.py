"""What a model returns, as the flat list of named tensors that an exported program returns.

Programs return flat tuples of tensors; models return a tensor, a tuple or list, a dict, a
Hugging Face ``ModelOutput``, or nestings of these. ``flatten_outputs`` names each tensor by its
path in that structure, so that the manifest lists the outputs as the model really returns them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def flatten_outputs(y: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """``[(name, tensor)]`` in the model's order: ``""`` for a bare tensor, ``"0"``, ``"1"`` for a
    tuple's items, the key for a mapping's; nested parts joined with ``"."``. ``None`` is skipped."""
    if isinstance(y, torch.Tensor):
        return [(prefix, y)]
    if y is None:
        return []
    if isinstance(y, Mapping) or (hasattr(y, "keys") and hasattr(y, "__getitem__")):
        items = [(str(k), y[k]) for k in y.keys()]
    elif isinstance(y, (tuple, list)):
        items = [(str(i), v) for i, v in enumerate(y)]
    else:
        raise TypeError(f"a model output of type {type(y).__name__} is not a tensor, tuple, list or dict")
    named: list[tuple[str, torch.Tensor]] = []
    for key, value in items:
        named.extend(flatten_outputs(value, f"{prefix}.{key}" if prefix else key))
    return named


def output_names(y: Any, kind: str) -> list[str]:
    """Names for the program's outputs: ``kind`` alone for one tensor, ``kind_0``... for a plain
    tuple (the zoo's convention), the mapping's keys for a dict or ``ModelOutput``."""
    named = flatten_outputs(y)
    if len(named) == 1:
        return [kind]
    if all(name.isdigit() for name, _ in named):
        return [f"{kind}_{name}" for name, _ in named]
    return [name.replace(".", "_") for name, _ in named]


def output_tensors(y: Any) -> list[torch.Tensor]:
    return [t for _, t in flatten_outputs(y)]
