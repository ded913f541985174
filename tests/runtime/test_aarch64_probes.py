"""edgeml.aarch64.probes: quantization points as probe outputs, and where two runs part.

The probe bookkeeping is checked on the host (a probed int8 program's probe outputs are the
converted graph's own quantized tensors, each at its own point); the origin logic on made-up
runs; the emulated ARM run of a probed program only when ``edgeml setup-aarch64`` has built the
environment (slow: one emulated process).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeml.aarch64.probes import Probe, add_probes, compare_probes, probed_program, run_on_host, summarize_ops


class _Block(nn.Module):
    """Conv, then a token MLP with LayerNorm and GELU: int8 points around fp32-statistics ops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 2, 1)
        self.norm = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.conv(x).flatten(2).transpose(1, 2)
        return self.fc2(self.act(self.fc1(self.norm(t)))).mean(1)


@pytest.fixture(scope="module")
def probed():
    torch.manual_seed(0)
    return probed_program(_Block().eval(), input_shape=(1, 3, 32, 32))


def test_every_activation_point_is_probed_with_its_module_and_upstream(probed):
    probes = probed.probes
    assert probed.n_outputs == 1
    assert probes[0].upstream == [] and probes[0].module == ""  # the image itself
    modules = [p.module for p in probes]
    for name in ("conv", "norm", "fc1", "act", "fc2"):
        assert name in modules, modules
    conv = modules.index("conv")
    assert probes[conv].ops == ["conv2d"] and probes[conv].upstream == [0]
    # Every point but the input reads from earlier points only: the upstream links form a DAG in order.
    assert all(probes[i].upstream and max(probes[i].upstream) < i for i in range(1, len(probes)))
    assert all(p.scale > 0 for p in probes)


def test_probe_outputs_are_the_quantized_tensors_at_their_points(probed):
    """Each probe output sits on its point's int8 grid and matches the eager value of the same node."""
    outs = run_on_host(probed.data, probed.inputs)
    assert len(outs[0]) == probed.n_outputs + len(probed.probes)
    for p in probed.probes:
        y = outs[0][probed.n_outputs + p.index]
        steps = y.astype(np.float64) / p.scale + p.zero_point
        assert np.abs(steps - np.rint(steps)).max() < 1e-3, p.node  # dequantized int8 values
        assert -128 <= np.rint(steps).min() and np.rint(steps).max() <= 127, p.node
    # The fc2 point holds the 16x16 tokens x 10 classes whose mean is the last point: the output.
    fc2 = outs[0][probed.n_outputs + [p.module for p in probed.probes].index("fc2")]
    last = probed.probes[-1]
    assert fc2.shape == (1, 256, 10) and last.ops == ["mean.dim"]
    np.testing.assert_array_equal(outs[0][probed.n_outputs + last.index], outs[0][0])
    np.testing.assert_allclose(fc2.mean(1), outs[0][0], atol=last.scale)


def _probe(i: int, upstream: list[int]) -> Probe:
    return Probe(i, f"q{i}", 0.5, 0, f"m{i}", ["linear"], upstream)


def test_origin_is_the_first_differing_point_whose_inputs_agree():
    probes = [_probe(0, []), _probe(1, [0]), _probe(2, [1]), _probe(3, [2]), _probe(4, [1])]
    base = [np.zeros(8, np.float32)] + [np.arange(8, dtype=np.float32) * 0.5 for _ in probes]
    other = [a.copy() for a in base]
    other[1 + 2][3] += 0.5  # point 2: one value one step off
    other[1 + 3][:2] += 1.0  # point 3 inherits it: two values, two steps
    result = compare_probes(probes, 1, [base], [other])
    assert [d.probe.index for d in result.origins] == [2]
    d2, d3 = result.diffs[2], result.diffs[3]
    assert (d2.differing, d2.max_steps, d3.differing, d3.max_steps) == (1, 1, 2, 2)
    assert result.diffs[4].identical and result.outputs_identical
    other[0][0] = 1.0
    assert not compare_probes(probes, 1, [base], [other]).outputs_identical


def test_add_probes_refuses_nothing_it_cannot_name_and_keeps_outputs_first():
    """A graph with no quantization point gains no output; its own outputs stay where they were."""
    gm = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    gm, probes, n = add_probes(gm)
    assert probes == [] and n == 1
    assert isinstance(gm(torch.randn(2, 4)), tuple)


def test_summarize_ops_counts_repeats_in_order():
    assert summarize_ops(["linear", "sub", "linear", "mul"]) == "linear x2, sub, mul"
    assert summarize_ops([f"op{i}" for i in range(10)], limit=3) == "op0, op1, op2, +7 more"


def _missing_env() -> str | None:
    from edgeml.aarch64 import Aarch64EnvError
    from edgeml.aarch64.setup import find_env

    try:
        find_env()
    except Aarch64EnvError as e:
        return f"no emulated aarch64 environment: {e}"
    return None


@pytest.mark.skipif(_missing_env() is not None, reason=str(_missing_env()))
@pytest.mark.slow(reason="one emulated aarch64 process: 3 - 15 minutes to import torch and ExecuTorch under qemu")
def test_probed_program_runs_on_emulated_arm(probed, tmp_path):
    from edgeml.aarch64.run import run_calls
    from edgeml.aarch64.setup import find_env

    path = tmp_path / "probed.pte"
    path.write_bytes(probed.data)
    host = run_on_host(probed.data, probed.inputs[:1])
    outs, info = run_calls(find_env(), path, "pte", probed.inputs[:1], "cortex-a76")
    assert info["cpu"]["machine"] == "aarch64"
    result = compare_probes(probed.probes, probed.n_outputs, host, outs)
    assert len(result.diffs) == len(probed.probes)
    # Whatever differs, the report names where it starts.
    assert all(d.identical for d in result.diffs) or result.origins


def test_no_module_beside_the_remote_runner_shadows_the_standard_library():
    """The emulated Python runs _remote_runner.py with its folder first on sys.path: a module there
    named like a standard one (``bisect.py``) is what torch's own imports would find."""
    from edgeml.aarch64.run import REMOTE_RUNNER

    names = {p.stem for p in REMOTE_RUNNER.parent.glob("*.py")} | {p.name for p in REMOTE_RUNNER.parent.iterdir()
                                                                   if p.is_dir()}
    assert not names & set(__import__("sys").stdlib_module_names)


def test_the_probed_program_takes_other_images_preprocessed_as_the_model_says(probed, tmp_path):
    import shutil

    from edgeml.images import sample_images

    samples = sample_images()
    for p in samples[1:3]:
        shutil.copy(p, tmp_path / p.name)
    other = probed.with_images(tmp_path)
    assert other.images == [p.name for p in samples[1:3]] and other.data is probed.data
    for got, want in zip(other.inputs, probed.inputs[1:3], strict=True):
        np.testing.assert_array_equal(got[0], want[0])
