"""Triton kernels against the naive references, on the CPU in the Triton interpreter.

The kernels run in one subprocess with TRITON_INTERPRET=1 (see triton_cases.py for why), so the
rest of the suite keeps whatever Triton mode it has. Tolerances are the fp32 ones of
test_selective_scan.py / test_linear_attention.py: the interpreter evaluates the kernels in fp32
numpy, so only summation order differs from the references (measured <= 4.3e-7).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

import triton_cases  # noqa: E402  (tests/kernels is on sys.path under pytest's default import mode)

HERE = Path(__file__).resolve().parent
TOL = {"ss": 2e-6, "la": 5e-6}


@pytest.fixture(scope="module")
def interpreted_results() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, str(HERE / "triton_cases.py")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case_id", triton_cases.CASE_IDS)
def test_triton_kernel_matches_reference(interpreted_results, case_id):
    r = interpreted_results[case_id]
    assert r["shape_ok"]
    assert r["finite"]
    assert r["rel_rms"] < TOL[case_id[:2]], r


def test_cpu_tensors_without_interpreter_are_refused():
    # In this process TRITON_INTERPRET is not forced: a CPU call must say what to do instead of
    # failing deep inside Triton's driver lookup.
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("this process runs with the interpreter on")
    import torch

    from edgeml.kernels._triton_selective_scan import selective_scan_triton

    x = torch.randn(1, 2, 4)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        selective_scan_triton(x, x, -torch.ones(2, 1), torch.randn(1, 1, 4), torch.randn(1, 1, 4))
