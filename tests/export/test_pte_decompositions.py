"""Decomposing for XNNPACK in edgeml's own retrace, so that lowering has none left to do
(``decompose_custom_ops(..., backend="xnnpack")`` and ``pte.skip_empty_decompositions``)."""
import contextlib

import pytest
import torch
from torch import nn
from torch.export import ExportedProgram

import edgeml.backends.xnnpack.lowering as pte
from edgeml.export import decompose_custom_ops
from edgeml.runtime.runners import runner_from_bytes


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.silu(self.conv(x))  # silu and linear: decomposed / kept for XNNPACK
        y = nn.functional.pad(y, (1, 1, 1, 1)).flip(-1)  # a flip on portable kernels: two partitions
        return self.fc(y.mean((2, 3), keepdim=True).flatten(1))  # the mean XNNPACK takes as it is


class _Counter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add_(1)
        return x * 2


def _lowered(monkeypatch: pytest.MonkeyPatch, *, merge: bool) -> tuple[bytes, int]:
    """The program, and how many whole-program retraces run_decompositions made while lowering."""
    torch.manual_seed(0)
    exported = torch.export.export(_Net().eval(), (torch.randn(1, 3, 12, 12),))
    if merge:
        exported = decompose_custom_ops(exported, backend="xnnpack")
    real = ExportedProgram.run_decompositions
    retraced = []

    def counting(self, *args, **kwargs):
        if len(self.graph.nodes) > 8:  # not the delegates' one-call programs
            retraced.append(args)
        return real(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(ExportedProgram, "run_decompositions", counting)
        if not merge:
            m.setattr(pte, "skip_empty_decompositions", contextlib.nullcontext)
        data, summary = pte.lower_to_pte(exported)
    assert summary.compute_share == 1.0
    return data, len(retraced)


def test_lowering_a_program_decomposed_for_xnnpack_retraces_nothing_and_computes_the_same(monkeypatch):
    merged, merged_retraces = _lowered(monkeypatch, merge=True)
    plain, plain_retraces = _lowered(monkeypatch, merge=False)
    assert plain_retraces == 3 and merged_retraces == 0
    x = torch.randn(1, 3, 12, 12)
    torch.testing.assert_close(runner_from_bytes(merged, "pte").run([x])[0],
                               runner_from_bytes(plain, "pte").run([x])[0], rtol=0, atol=0)
    with torch.no_grad():
        torch.manual_seed(0)
        torch.testing.assert_close(runner_from_bytes(merged, "pte").run([x])[0], _Net().eval()(x),
                                   rtol=1e-4, atol=1e-5)
    assert "run_decompositions" in ExportedProgram.__dict__
    assert ExportedProgram.run_decompositions.__name__ == "run_decompositions"  # the patch is undone


def test_only_a_functional_aten_program_without_table_ops_counts_as_decomposed():
    x = torch.randn(1, 3, 12, 12)
    training = torch.export.export(_Net().eval(), (x,))
    assert training.dialect == "TRAINING"
    assert not pte._nothing_to_decompose(training, {})  # capture's dialect: the retrace converts it
    decomposed = decompose_custom_ops(training, backend="xnnpack")
    assert pte._nothing_to_decompose(decomposed, {})
    from edgeml.backends.xnnpack.passes.means import mean_decompositions

    # edgeml's mean decomposition is conditional (it leaves the pooling XNNPACK takes as it is), so
    # a graph holding that mean counts as having work under the full table: ExecuTorch's part here.
    table = {op: f for op, f in pte.xnnpack_decomposition_table(decomposed).items() if op not in mean_decompositions()}
    assert pte._nothing_to_decompose(decomposed, table)
    linear = torch.ops.aten.linear.default
    assert any(n.target is linear for n in decomposed.graph.nodes)  # kept for XNNPACK, so ...
    assert not pte._nothing_to_decompose(decomposed, {linear: None})  # ... a table with it has work
    mutating = torch.export.export(_Counter(), (x,)).run_decompositions({})
    assert mutating.graph_signature.buffers_to_mutate
    assert not pte._nothing_to_decompose(mutating, {})


def test_the_patch_is_undone_when_lowering_fails():
    real = ExportedProgram.__dict__["run_decompositions"]
    with pytest.raises(RuntimeError, match="boom"), pte.skip_empty_decompositions():
        assert ExportedProgram.__dict__["run_decompositions"] is not real
        raise RuntimeError("boom")
    assert ExportedProgram.__dict__["run_decompositions"] is real


def test_a_lowering_failure_says_what_to_do_when_quantized_ops_are_left_without_kernels():
    e = RuntimeError("Missing out variants: {'quantized_decomposed::choose_qparams'}\nmore")
    assert pte.lowering_failure(e) == (
        "lowering to ExecuTorch failed: Missing out variants: {'quantized_decomposed::choose_qparams'}; XNNPACK did "
        "not take every quantized op of this model and ExecuTorch has no portable kernel for the rest: use --quantize "
        "int8 (static), or keep those layers in fp32")
    assert pte.lowering_failure(ValueError()) == "lowering to ExecuTorch failed: ValueError"
