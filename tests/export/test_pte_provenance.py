"""shared_provenance: the .pte lowering shares provenance records instead of deep-copying them,
with the same program bytes and the same provenance, and leaves torch as it found it."""
import contextlib

import pytest
import torch
from torch import nn
from torch.fx import traceback as fx_traceback

import edgeml.export.pte as pte


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = y + self.dw(y)
        # A flip stays on portable kernels: two partitions, so the per-partition passes run twice.
        y = y.flip(-1) * torch.sigmoid(y)
        return self.fc(y.mean((2, 3)))


def _lowered(monkeypatch: pytest.MonkeyPatch, share: bool) -> bytes:
    torch.manual_seed(0)
    model = _Net().eval()
    exported = torch.export.export(model, (torch.randn(1, 3, 12, 12),))
    with monkeypatch.context() as m:
        if not share:
            m.setattr(pte, "shared_provenance", contextlib.nullcontext)
        data, summary = pte.lower_to_pte(exported)
    assert summary.compute_share == 1.0
    return data


def test_the_program_is_byte_identical_with_and_without_sharing(monkeypatch):
    init = fx_traceback.NodeSource.__init__
    assert _lowered(monkeypatch, share=True) == _lowered(monkeypatch, share=False)
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
