"""The .pte lowering's two speed-ups, each with the same program bytes and leaving torch and
ExecuTorch as it found them: shared_provenance (provenance records shared instead of deep-copied)
and skip_unchanged_retraces (an XNNPACK pass that changed nothing skips its retrace)."""
import contextlib

import pytest
import torch
from torch import nn
from torch.fx import traceback as fx_traceback

import edgeml.backends.xnnpack.lowering as pte


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)  # left unfused: XNNPACK's batch-norm pass rewrites it
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = y + self.bn(self.dw(y))
        # A flip stays on portable kernels: two partitions, so the per-partition passes run twice.
        y = y.flip(-1) * torch.sigmoid(y)
        return self.fc(y.mean((2, 3)))


def _lowered(monkeypatch: pytest.MonkeyPatch, share: bool = True, skip: bool = True) -> bytes:
    torch.manual_seed(0)
    model = _Net().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    exported = torch.export.export(model, (torch.randn(1, 3, 12, 12),))
    with monkeypatch.context() as m:
        if not share:
            m.setattr(pte, "shared_provenance", contextlib.nullcontext)
        if not skip:
            m.setattr(pte, "skip_unchanged_retraces", contextlib.nullcontext)
        data, summary = pte.lower_to_pte(exported)
    assert summary.compute_share == 1.0
    return data


def test_the_program_is_byte_identical_with_and_without_sharing(monkeypatch):
    init = fx_traceback.NodeSource.__init__
    assert _lowered(monkeypatch, share=True) == _lowered(monkeypatch, share=False)
    assert _lowered(monkeypatch, share=False, skip=False) == _lowered(monkeypatch)
    assert fx_traceback.NodeSource.__init__ is init


def _node_with_history() -> torch.fx.Node:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    y = graph.call_function(torch.relu, (x,))
    y.meta["from_node"] = [fx_traceback.NodeSource(x, "capture", fx_traceback.NodeSourceAction.CREATE)]
    return y


def test_a_record_made_while_sharing_has_the_same_history_and_does_not_alias_the_list():
    node = _node_with_history()
    copied = fx_traceback.NodeSource(node, "p", fx_traceback.NodeSourceAction.REPLACE)
    with pte.shared_provenance():
        shared = fx_traceback.NodeSource(node, "p", fx_traceback.NodeSourceAction.REPLACE)
    assert shared.to_dict() == copied.to_dict()
    assert shared.from_node is not node.meta["from_node"]  # a new list of the same records
    assert shared.from_node[0] is node.meta["from_node"][0]
    assert node.meta["from_node"] and len(node.meta["from_node"]) == 1  # the node keeps its history


def test_the_patch_is_undone_when_lowering_fails():
    init = fx_traceback.NodeSource.__init__
    with pytest.raises(RuntimeError, match="boom"), pte.shared_provenance():
        assert fx_traceback.NodeSource.__init__ is not init
        raise RuntimeError("boom")
    assert fx_traceback.NodeSource.__init__ is init


def test_an_unknown_node_source_signature_is_left_alone(monkeypatch):
    class Other:
        def __init__(self, node, name):
            self.node = node

    monkeypatch.setattr(fx_traceback, "NodeSource", Other)
    with pte.shared_provenance():
        assert Other.__init__.__name__ == "__init__"
        assert Other(None, "x").node is None


def _retraces(monkeypatch: pytest.MonkeyPatch, skip: bool) -> tuple[bytes, list[str]]:
    """The program, and the XNNPACK passes whose retrace really ran (in order)."""
    from executorch.exir.pass_base import _ExportPassBase

    ran: list[str] = []
    real = _ExportPassBase.call

    def counting(self, graph_module):
        ran.append(type(self).__name__)
        return real(self, graph_module)

    monkeypatch.setattr(_ExportPassBase, "call", counting)
    data = _lowered(monkeypatch, skip=skip)
    monkeypatch.setattr(_ExportPassBase, "call", real)
    return data, ran


def test_skipping_unchanged_retraces_gives_the_same_program_with_fewer_retraces(monkeypatch):
    from executorch.exir.pass_base import _ExportPassBase

    skipped, ran_skipping = _retraces(monkeypatch, skip=True)
    full, ran_full = _retraces(monkeypatch, skip=False)
    assert skipped == full
    assert len(ran_skipping) < len(ran_full) // 2
    # A pass that rewrote something still retraced: the batch norm is fused into the conv before it.
    assert "FuseBatchNormPass" in ran_skipping
    # Nothing for the upsample / SDPA / prelu passes to do here: their retraces were skipped.
    assert not {"ConvertToUpsampleBilinear2d", "ConvertToSDPAPass", "PReLUReshapePass"} & set(ran_skipping)
    assert _ExportPassBase.__dict__["call"].__qualname__ == "_ExportPassBase.call"  # the original is back


def test_a_pass_that_rewrites_in_its_retrace_is_never_skipped():
    import executorch.backends.xnnpack._passes as xnnpack_passes
    from executorch.exir.pass_base import ExportPass

    class Doubling(ExportPass):  # rewrites relu -> relu * 2 through call_operator, in the retrace
        def call_operator(self, op, args, kwargs, meta):
            out = super().call_operator(op, args, kwargs, meta)
            if op is torch.ops.aten.relu.default:
                return super().call_operator(torch.ops.aten.mul.Tensor, (out, 2.0), {}, meta)
            return out

    class Relu(nn.Module):
        def forward(self, x):
            return torch.relu(x)

    ep = torch.export.export(Relu(), (torch.randn(4),))
    with pte.skip_unchanged_retraces():
        out = xnnpack_passes._transform(ep, Doubling())
    targets = [n.target for n in out.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.mul.Tensor in targets


def test_the_retrace_patch_is_undone_when_lowering_fails():
    import executorch.backends.xnnpack._passes as xnnpack_passes
    from executorch.exir.pass_base import _ExportPassBase

    call, transform = _ExportPassBase.call, xnnpack_passes._transform
    with pytest.raises(RuntimeError, match="boom"), pte.skip_unchanged_retraces():
        assert _ExportPassBase.call is not call and xnnpack_passes._transform is not transform
        raise RuntimeError("boom")
    assert _ExportPassBase.call is call and xnnpack_passes._transform is transform


def test_repeated_checks_are_skipped_with_the_same_program(monkeypatch):
    from executorch.exir.pass_manager import ExportedProgramPassManager

    real = ExportedProgramPassManager.__dict__["check"]

    def checks(skip: bool) -> tuple[bytes, int]:
        ran = []

        def counting(self, exported_program):
            ran.append(1)
            return real(self, exported_program)

        with monkeypatch.context() as m:
            m.setattr(ExportedProgramPassManager, "check", counting)
            if not skip:
                m.setattr(pte, "skip_repeated_checks", contextlib.nullcontext)
            data = _lowered(monkeypatch)
        return data, len(ran)

    skipped, ran_skipping = checks(skip=True)
    full, ran_full = checks(skip=False)
    assert skipped == full
    assert ran_skipping < ran_full // 2
    assert ExportedProgramPassManager.__dict__["check"] is real


def test_the_graph_key_sees_a_changed_op_or_argument():
    def traced(fn):
        return torch.fx.symbolic_trace(fn)

    base = traced(lambda x: torch.relu(x) + 1.0)
    assert pte._graph_key(base) == pte._graph_key(traced(lambda x: torch.relu(x) + 1.0))
    other_op = traced(lambda x: torch.relu(x) + 1.0)
    next(n for n in other_op.graph.nodes if n.target is torch.relu).target = torch.sigmoid  # name kept
    assert pte._graph_key(base) != pte._graph_key(other_op)
    assert pte._graph_key(base) != pte._graph_key(traced(lambda x: torch.relu(x) + 2.0))
    swapped = traced(lambda x: torch.relu(x) + 1.0)
    add = next(n for n in swapped.graph.nodes if n.op == "call_function" and n.target is not torch.relu)
    add.args = (add.args[1], add.args[0])  # the same nodes and constant, another order
    assert pte._graph_key(base) != pte._graph_key(swapped)
