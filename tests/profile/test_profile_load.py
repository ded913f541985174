"""The load time edgeml profile reports is the program's load, not the runtime's import.

Each case runs in a fresh Python process, the way a user runs ``edgeml profile X.pte``: there,
importing ExecuTorch's runtime takes seconds, while loading this tiny program takes milliseconds.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from profile_helpers import tiny_pte

# Far above a tiny program's load (a few ms), far below the runtime's import in a fresh process (3-9 s).
MAX_LOAD_MS = 1000.0

_PROFILE = """
import json, sys
from edgeml.profile.host import profile_artifact
report = profile_artifact(sys.argv[1], runs=2, warmup=0, per_op=False, memory=False)
print(json.dumps([report.load_ms]))
"""

_COMPARE = """
import json, sys
from edgeml.profile.compare import compare_on_host
comparison = compare_on_host(sys.argv[1:], runs=2, warmup=0)
print(json.dumps([r.load_ms for r in comparison.reports]))
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return tiny_pte(tmp_path_factory.mktemp("load"), "tinynet_xnnpack_fp32.pte", width=8)


def _load_ms_in_fresh_process(script: str, *args) -> list[float]:
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("script, copies", [(_PROFILE, 1), (_COMPARE, 2)], ids=["profile", "compare"])
def test_load_time_excludes_the_runtime_import(small, script, copies):
    loads = _load_ms_in_fresh_process(script, *[small] * copies)
    assert len(loads) == copies
    assert all(0 < ms < MAX_LOAD_MS for ms in loads), loads
