import sys
from pathlib import Path

import pytest
import torch

# tests/ helpers (goldens.py, ...) import as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Two cores: intra-op threads beyond that only add contention between pytest and exports.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
