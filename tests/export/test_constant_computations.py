"""edgeml.export.passes.constants: a weight computed from parameters only (weight standardization)
and a mask computed from ``arange`` become constants, the function stays, and XNNPACK then takes
the convolution and the masked product."""
import torch
import torch.nn.functional as F
from torch import nn

from edgeml.export.passes.constants import constant_computations, fold_constant_computations


class _StandardizedConv(nn.Conv2d):
    """Weight standardization as BiT writes it: the kernel normalized with batch_norm on every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True,
                         momentum=0.0, eps=1e-8).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = _StandardizedConv(3, 8, 3, padding=1)
        self.g = nn.Parameter(torch.rand(4) + 0.5)
        self.v = nn.Parameter(torch.randn(4, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean((2, 3))
        w = self.g[:, None] * self.v / self.v.norm(dim=1, keepdim=True)  # weight normalization
        return F.linear(y, w) + x.mean()  # the input also reaches an op that is not a weight


def test_computed_weights_fold_to_constants_and_the_function_stays():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(_Net().eval(), (x,)).run_decompositions({})
    assert len(constant_computations(ep)) > 2
    folded = fold_constant_computations(ep)
    assert constant_computations(folded) == []
    targets = {n.target for n in folded.graph.nodes if n.op == "call_function"}
    assert torch.ops.aten._native_batch_norm_legit.no_stats not in targets
    assert torch.ops.aten.linalg_vector_norm.default not in targets
    with torch.no_grad():
        torch.testing.assert_close(folded.module()(x), ep.module()(x),
                                   rtol=1e-5, atol=1e-5)


def test_a_graph_with_nothing_but_views_of_parameters_is_returned_as_it_is():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.conv(x)) * self.scale.view(1, 4, 1, 1)

    ep = torch.export.export(Scaled(), (torch.randn(1, 3, 8, 8),))
    assert [n.target for n in constant_computations(ep)] == [torch.ops.aten.view.default]
    assert fold_constant_computations(ep) is ep


class _Masked(nn.Module):
    """A banded mask from ``arange`` and comparisons, made contiguous after a permute (a ``clone``
    with a memory format, which ExecuTorch 1.5.1's fold took for a non-constant), and a bias
    looked up in a table and permuted (a constant whose strides are not the standard ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(15, 2))
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (3, 2, 8, 8)
        i = torch.arange(8)
        rel = (i[:, None] - i[None, :]).permute(1, 0).contiguous()
        mask = torch.zeros(8, 8).masked_fill(rel.abs() > 2, -100.0)
        bias = self.table[rel + 7].permute(2, 0, 1)[None]  # (1, 2, 8, 8)
        return self.proj(x + mask + bias)


def test_masks_and_lookups_fold_and_lower_to_xnnpack_with_the_same_function():
    from executorch.runtime import Runtime

    from edgeml.backends.xnnpack.lowering import lower_to_pte
    from edgeml.export import decompose_custom_ops

    torch.manual_seed(0)
    model, x = _Masked().eval(), torch.randn(3, 2, 8, 8)
    # As the XNNPACK backend captures: core ATen first (``contiguous`` becomes that ``clone``).
    ep = fold_constant_computations(decompose_custom_ops(torch.export.export(model, (x,)), backend="xnnpack"))
    targets = {n.target for n in ep.graph.nodes if n.op == "call_function"}
    assert targets == {torch.ops.aten.add.Tensor, torch.ops.aten.linear.default}
    data, delegation = lower_to_pte(ep)
    assert delegation.portable_ops == {}
    y = Runtime.get().load_program(data).load_method("forward").execute([x])[0]
    with torch.no_grad():
        torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-5)


def test_xnnpack_takes_every_convolution_once_the_weight_is_folded():
    from edgeml.backends.xnnpack.lowering import lower_to_pte

    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    ep = fold_constant_computations(torch.export.export(_Net().eval(), (x,)))
    _, delegation = lower_to_pte(ep)
    assert delegation.compute_delegated == delegation.compute_total == 2


def test_an_integer_constant_operand_of_float_arithmetic_becomes_a_float_constant():
    """SigLIP2's pooling: activations times an int64 mask made in ``forward``. Without the cast the
    promotion is a ``_to_copy`` ExecuTorch adds after the fold, on the portable kernels."""
    from executorch.runtime import Runtime

    from edgeml.backends.xnnpack.lowering import lower_to_pte

    class MaskedMean(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = (torch.arange(6) < 4).long()[None, :, None]  # (1, 6, 1): four valid tokens
            return (x * m).sum(1) / m.sum(1)

    from edgeml.export import fold_constants

    model, x = MaskedMean().eval(), torch.randn(1, 6, 8)
    _, before = lower_to_pte(fold_constants(torch.export.export(model, (x,))))  # the fold alone
    assert "dim_order_ops__to_dim_order_copy_default" in before.portable_ops
    ep = torch.export.export(model, (x,))
    ep = fold_constant_computations(ep)
    assert not [n for n in ep.graph.nodes if n.target is torch.ops.aten._to_copy.default]
    data, after = lower_to_pte(ep)
    assert "dim_order_ops__to_dim_order_copy_default" not in after.portable_ops
    y = Runtime.get().load_program(data).load_method("forward").execute([x])[0]
    torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-6)
