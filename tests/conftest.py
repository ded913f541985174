import os
import sys
from pathlib import Path

import pytest
import torch

# tests/ helpers (goldens.py, ...) import as plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Two cores: intra-op threads beyond that only add contention between pytest and exports. Under
# pytest-xdist (pyproject's addopts) each worker gets its share of the cores.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, torch.get_num_threads()) // _workers))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true",
                     help="also run tests marked slow (long exports of known-open cases)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    for item in items:
        marker = item.get_closest_marker("slow")
        if marker is not None:
            why = marker.kwargs.get("reason", "long-running")
            item.add_marker(pytest.mark.skip(reason=f"slow ({why}); run with --runslow"))
