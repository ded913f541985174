"""Access to ../shared/goldens: outputs of the original implementations (see its README).

A case is checked through the official-checkpoint path: the golden's state_dict (keys of the
original repository, filled by ``fill.py``) goes through ``edgeml.models._checkpoint`` exactly as
a user's checkpoint would.
"""
from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEML_SHARED", REPO.parent / "shared"))
GOLDENS = SHARED / "goldens"
IMAGES = SHARED / "images"


def require_shared(path: Path = GOLDENS) -> Path:
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the shared goldens/images live beside the repository (../shared)")
    return path


@lru_cache(maxsize=1)
def _fill_module():
    spec = importlib.util.spec_from_file_location("edgeml_golden_fill", GOLDENS / "fill.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class GoldenCase:
    name: str
    info: dict
    input: torch.Tensor
    output: torch.Tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The original implementation's state_dict filled with the golden weights."""
        empty = {k: torch.zeros(shape) for k, shape in self.info["keys"].items()}
        # num_batches_tracked is an integer buffer in the original; keep that dtype.
        for k in empty:
            if k.endswith("num_batches_tracked"):
                empty[k] = torch.zeros((), dtype=torch.long)
        return _fill_module().fill_state_dict(empty, skip=tuple(self.info["fill_skip"]))

    def relative_error(self, y: torch.Tensor) -> float:
        ref = self.output
        assert tuple(y.shape) == tuple(ref.shape), f"{self.name}: shape {tuple(y.shape)} != {tuple(ref.shape)}"
        return float((y.detach().float() - ref).abs().max() / ref.abs().max())


def golden_cases(prefix: str = "") -> list[str]:
    if not GOLDENS.is_dir():
        return []
    return sorted(p.stem for p in GOLDENS.glob(f"{prefix}*.json"))


def load_golden(name: str) -> GoldenCase:
    require_shared()
    info = json.loads((GOLDENS / f"{name}.json").read_text())
    data = np.load(GOLDENS / f"{name}.npz")
    return GoldenCase(name, info, torch.from_numpy(data["input"]), torch.from_numpy(data["output"]))
