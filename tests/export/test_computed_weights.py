"""edgeml.export.passes.computed_weights: a weight computed from parameters only (weight
standardization) becomes a constant, the function stays, and XNNPACK then takes the convolution."""
import torch
import torch.nn.functional as F
from torch import nn

from edgeml.export.passes.computed_weights import computed_weights, fold_computed_weights


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
    assert len(computed_weights(ep)) == 2
    folded = fold_computed_weights(ep)
    assert computed_weights(folded) == []
    targets = {n.target for n in folded.graph.nodes if n.op == "call_function"}
    assert torch.ops.aten._native_batch_norm_legit.no_stats not in targets
    assert torch.ops.aten.linalg_vector_norm.default not in targets
    with torch.no_grad():
        torch.testing.assert_close(folded.module()(x), ep.module()(x),
                                   rtol=1e-5, atol=1e-5)


def test_a_graph_whose_weights_are_parameters_is_returned_as_it_is():
    ep = torch.export.export(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (torch.randn(1, 3, 8, 8),))
    assert fold_computed_weights(ep) is ep


def test_xnnpack_takes_every_convolution_once_the_weight_is_folded():
    from edgeml.backends.xnnpack.lowering import lower_to_pte

    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    ep = fold_computed_weights(torch.export.export(_Net().eval(), (x,)))
    _, delegation = lower_to_pte(ep)
    assert delegation.compute_delegated == delegation.compute_total == 2
