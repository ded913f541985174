"""edgeml.export.passes.softmax_guard: an attention without a mask loses the fully-masked-row guard
of its decomposed softmax, the function stays; a masked attention keeps it."""
import torch
import torch.nn.functional as F
from torch import nn

from edgeml.export.passes.softmax_guard import drop_unmasked_softmax_guards

aten = torch.ops.aten
_GUARD = {aten.where.self, aten.any.dim, aten.eq.Scalar, aten.logical_not.default}


class _Attention(nn.Module):
    def __init__(self, masked: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        mask = torch.zeros(6, 6)
        mask[:, 3:] = -torch.inf  # keys 3.. masked out
        self.register_buffer("mask", mask)
        self.masked = masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).reshape(1, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask if self.masked else None)


def _decomposed(masked: bool):
    from edgeml.backends.xnnpack.lowering import xnnpack_decomposition_table

    torch.manual_seed(0)
    x = torch.randn(1, 6, 8)
    ep = torch.export.export(_Attention(masked).eval(), (x,))
    return ep.run_decompositions(xnnpack_decomposition_table(ep)), x


def _targets(ep) -> set:
    return {n.target for n in ep.graph.nodes if n.op == "call_function"}


def test_an_unmasked_attention_loses_its_guard_and_the_function_stays():
    ep, x = _decomposed(masked=False)
    assert _GUARD <= _targets(ep)
    with torch.no_grad():
        expected = ep.module()(x)
    assert drop_unmasked_softmax_guards(ep.graph_module) == 1
    assert not _GUARD & _targets(ep)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), expected, rtol=0, atol=0)


def test_a_masked_attention_keeps_its_guard():
    ep, _ = _decomposed(masked=True)
    assert _GUARD & _targets(ep)
    assert drop_unmasked_softmax_guards(ep.graph_module) == 0
    assert aten.where.self in _targets(ep)
