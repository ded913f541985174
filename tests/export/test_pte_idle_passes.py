"""Two more .pte lowering speed-ups, each with the same program bytes and leaving torch and
ExecuTorch as it found them: skip_idle_passes (a pass that can find nothing to rewrite returns the
graph as is) and deferred_recompiles (a GraphModule writes its code when it is first run or read)."""
import contextlib

import pytest
import torch
from test_pte_decompositions import _Net  # conv, silu, pad, a portable flip (two partitions), linear
from torch import nn

import edgeml.backends.xnnpack.lowering as pte


def _lowered(monkeypatch: pytest.MonkeyPatch, **off: bool) -> tuple[bytes, list[str]]:
    """The program and the classes whose ``call`` really ran, with the named speed-ups off."""
    from torch.fx.passes.infra.pass_base import PassBase

    ran: list[str] = []
    real = PassBase.__call__

    def noting(self, graph_module):
        result = real(self, graph_module)
        if result is not None and result.modified:
            ran.append(type(self).__name__)
        return result

    torch.manual_seed(0)
    exported = torch.export.export(_Net().eval(), (torch.randn(1, 3, 10, 10),))
    with monkeypatch.context() as m:
        m.setattr(PassBase, "__call__", noting)
        for name in off:
            m.setattr(pte, name, contextlib.nullcontext)
        data, summary = pte.lower_to_pte(exported)
    assert summary.compute_share == 1.0
    return data, ran


def test_idle_passes_are_skipped_with_the_same_program(monkeypatch):
    calls = {cls: cls.__dict__.get("call") for cls, _ in pte._idle_pass_checks()}
    assert len(calls) == 6  # the four edge passes and XNNPACK's upsample and SDPA passes
    skipped, ran_skipping = _lowered(monkeypatch)
    full, ran_full = _lowered(monkeypatch, skip_idle_passes=True)
    assert skipped == full
    # What the skipped passes would have done to this program: retrace it and change nothing.
    assert {"SymToTensorPass", "NormalizeTransposePass", "RemoveMixedTypeOperators"} <= set(ran_full)
    assert not {"SymToTensorPass", "NormalizeTransposePass", "RemoveMixedTypeOperators",
                "ConvertToUpsampleBilinear2d", "ConvertToSDPAPass"} & set(ran_skipping)
    assert {cls: cls.__dict__.get("call") for cls in calls} == calls  # the classes as they were


def test_a_pass_with_something_to_rewrite_still_runs():
    from executorch.exir.passes.normalize_transpose_pass import NormalizeTransposePass
    from executorch.exir.passes.remove_mixed_type_operators import RemoveMixedTypeOperators

    class T(nn.Module):
        def forward(self, x, n):
            return torch.ops.aten.t.default(x), torch.ops.aten.add.Tensor(x, n)  # aten.t; float + int64

    ep = torch.export.export(T(), (torch.randn(3, 4), torch.ones(3, 4, dtype=torch.int64)))
    gm = ep.graph_module
    with pte.skip_idle_passes():
        gm = NormalizeTransposePass()(gm).graph_module
        res = RemoveMixedTypeOperators()(gm)
    names = {getattr(n.target, "__name__", "") for n in res.graph_module.graph.nodes}
    assert "t_copy.default" in names and "t.default" not in names
    assert res.modified and "_to_copy.default" in names  # the int64 operand is cast


def test_every_pattern_of_the_skipped_xnnpack_passes_calls_the_op_checked_for():
    # The upsample and SDPA passes are skipped without that op: sound only while each of their
    # patterns calls it (they are rebuilt here, from this ExecuTorch).
    from executorch.backends.xnnpack.partition.graphs import bilinear_2d, sdpa

    for graphs, op in ((bilinear_2d.get_graphs(), "upsample_bilinear2d"), (sdpa.get_graphs(), "_softmax")):
        assert graphs
        for g in graphs:
            assert op in pte._op_names(g)


def test_the_idle_pass_patch_is_undone_when_lowering_fails():
    calls = {cls: cls.__dict__.get("call") for cls, _ in pte._idle_pass_checks()}
    with pytest.raises(RuntimeError, match="boom"), pte.skip_idle_passes():
        raise RuntimeError("boom")
    assert {cls: cls.__dict__.get("call") for cls in calls} == calls


def test_deferred_recompiles_give_the_same_program_with_fewer_code_generations(monkeypatch):
    from torch.fx.graph_module import GraphModule

    def generated(**off: bool) -> tuple[bytes, int]:
        count = []
        real = GraphModule.recompile

        def counting(self):
            count.append(1)
            return real(self)

        with monkeypatch.context() as m:
            m.setattr(GraphModule, "recompile", counting)
            data, _ = _lowered(monkeypatch, **off)
        return data, len(count)

    deferred, n_deferred = generated()
    eager, n_eager = generated(deferred_recompiles=True)
    assert deferred == eager
    assert n_deferred < n_eager // 2
    assert GraphModule.__dict__["__new__"].__func__.__qualname__ == "GraphModule.__new__"


def test_a_deferred_graph_module_runs_prints_and_exports_strictly():
    class Add(nn.Module):
        def forward(self, x):
            return x + 1

    with pte.deferred_recompiles():
        gm = torch.fx.symbolic_trace(Add())
        assert "add" in gm.code
        torch.testing.assert_close(gm(torch.zeros(2)), torch.ones(2))
        # Strict export reads the pytree specs that only a code generation sets.
        ep = torch.export.export(gm, (torch.zeros(2),), strict=True)
    torch.testing.assert_close(ep.module()(torch.zeros(2)), torch.ones(2))
