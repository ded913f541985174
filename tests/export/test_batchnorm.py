import pytest
import torch
from torch import nn

import edgeml
from edgeml.export.passes.batchnorm import count_batchnorms, fold_batchnorm


def _randomize_bn(model: nn.Module) -> None:
    # Non-trivial statistics, so a wrong fold cannot pass by accident.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=g))


@pytest.mark.parametrize("name", ["mobilenetv2_ulsam", "mobilenetv1_ulsam"])
def test_fold_batchnorm_keeps_the_function_and_removes_every_bn(name):
    model = edgeml.create_model(name)
    _randomize_bn(model)
    x = torch.randn(2, 3, 96, 96)
    folded = fold_batchnorm(model, (x,))
    assert count_batchnorms(model) > 0, "input must not be modified"
    assert count_batchnorms(folded) == 0
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


class _BNLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(8)
        self.lin = nn.Linear(8, 3)

    def forward(self, x):
        return self.lin(self.bn(x))


class _SharedBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_a, self.conv_b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv_a(x)) + self.bn(self.conv_b(x))


class _LinearFlattenBN(nn.Module):
    """A linear over tokens whose BatchNorm1d normalizes its features with the tokens as rows."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 6)
        self.bn = nn.BatchNorm1d(6)

    def forward(self, x):  # (B, T, 8)
        y = self.lin(x)
        return self.bn(y.flatten(0, 1)).reshape_as(y)


class _LinearTransposeBN(nn.Module):
    """BatchNorm1d over the tokens of a linear's output (N, C, L): not the linear's features."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 6)
        self.bn = nn.BatchNorm1d(5)

    def forward(self, x):  # (B, 5, 8)
        return self.bn(self.lin(x))


@pytest.mark.parametrize("module, shape, folded", [
    (_BNLinear, (4, 8), True),  # BN -> linear
    (_LinearFlattenBN, (2, 5, 8), True),  # linear -> flatten(0, 1) -> BN over the features
    (_SharedBN, (1, 3, 8, 8), False),  # one BN after two convs
    (_LinearTransposeBN, (2, 5, 8), False),  # BN over the tokens, not the linear's features
])
def test_small_fold_patterns(module, shape, folded):
    m = module().eval()
    _randomize_bn(m)
    x = torch.randn(*shape)
    out = fold_batchnorm(m, (x,))
    assert isinstance(out.bn, nn.Identity) is folded
    if folded:
        torch.testing.assert_close(out(x), m(x), rtol=1e-5, atol=1e-6)
    else:  # left as it was: the same ops, the same values
        torch.testing.assert_close(out(x), m(x), rtol=0, atol=0)
