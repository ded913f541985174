"""GroupNorm and means in the forms XNNPACK delegates (edgeml.backends.xnnpack.passes.groupnorm,
.means), and the squeezes / identity expands that ``simplify_reshapes`` turns into views: the
function stays, and a small module with each pattern lowers with no portable op left."""
import pytest
import torch
from torch import nn

from edgeml.backends.xnnpack.passes.groupnorm import group_norm_as_means
from edgeml.backends.xnnpack.passes.means import mean_as_pooling


@pytest.mark.parametrize("shape,groups,affine", [((2, 12, 5, 7), 3, True), ((1, 8, 9, 9), 1, False),
                                                 ((2, 6, 10), 6, True), ((1, 4, 3, 4, 5), 2, True)])
def test_group_norm_as_means_is_group_norm(shape, groups, affine):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    c = shape[1]
    w, b = (torch.randn(c), torch.randn(c)) if affine else (None, None)
    n, hw = shape[0], x[0, 0].numel()
    y, mean, rstd = group_norm_as_means(x, w, b, n, c, hw, groups, 1e-5)
    ref, ref_mean, ref_rstd = torch.ops.aten.native_group_norm(x, w, b, n, c, hw, groups, 1e-5)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rstd, ref_rstd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,dim,keepdim", [((2, 3, 4, 5), (2, 3), False), ((2, 7, 6), 1, False),
                                               ((2, 7, 6), (-1,), True), ((3, 4, 5, 6), (1, 3), True),
                                               ((4, 5), None, False), ((2, 3, 4, 5, 6), (0, 2), False)])
def test_mean_as_pooling_is_mean(shape, dim, keepdim):
    torch.manual_seed(0)
    x = torch.randn(shape)
    y = mean_as_pooling(x, list(dim) if isinstance(dim, tuple) else ([dim] if isinstance(dim, int) else dim),
                        keepdim)
    torch.testing.assert_close(y, x.mean(dim, keepdim=keepdim) if dim is not None else x.mean(), rtol=1e-6,
                               atol=1e-6)


def test_the_pooling_xnnpack_takes_and_other_dtypes_are_left_alone():
    x = torch.randn(1, 4, 5, 6)
    assert mean_as_pooling(x, [2, 3], True) is NotImplemented
    assert mean_as_pooling(x, [-1, -2], True) is NotImplemented
    assert mean_as_pooling(x, [1], False, dtype=torch.float64) is NotImplemented


class _GroupNormRelu(nn.GroupNorm):
    """A GroupNorm subclass with its own forward (as transformers' BiT writes its norms)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


class _Patterns(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 2, 1)
        self.gn = nn.GroupNorm(4, 16)
        self.gn1 = _GroupNormRelu(1, 16)
        self.qkv = nn.Linear(16, 48)
        self.head = nn.Linear(16, 10)
        with torch.no_grad():
            for g in (self.gn, self.gn1):
                g.weight.normal_()
                g.bias.normal_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.gn1(self.gn(self.conv(x))).flatten(2).transpose(1, 2)  # (1, 64, 16) tokens
        q, k, v = self.qkv(t).reshape(1, 64, 3, 2, 8).permute(2, 0, 3, 1, 4)  # unbind: squeezes
        a = ((q @ k.transpose(-2, -1)) * 8 ** -0.5).softmax(-1)  # 4-D matmuls: expands
        t = (a @ v).transpose(1, 2).reshape(1, 64, 16)
        return self.head(t.mean(1))  # token pooling: a mean XNNPACK does not take as it is


def test_every_pattern_lowers_to_xnnpack_with_the_same_function():
    from edgeml.backends.xnnpack.lowering import lower_to_pte
    from edgeml.export import decompose_custom_ops
    from edgeml.runtime.runners import PteRunner  # noqa: F401 - the runtime imports

    torch.manual_seed(0)
    model = _Patterns().eval()
    x = torch.randn(1, 3, 16, 16)
    ep = torch.export.export(model, (x,))
    plain, before = lower_to_pte(torch.export.export(model, (x,)))
    assert {"aten_native_group_norm_default", "aten_mean_dim", "aten_expand_copy_default",
            "aten_squeeze_copy_dims"} <= set(before.portable_ops)
    data, after = lower_to_pte(decompose_custom_ops(ep, backend="xnnpack"))
    assert after.portable_ops == {} and after.compute_delegated == after.compute_total
    from executorch.runtime import Runtime

    y = Runtime.get().load_program(data).load_method("forward").execute([x])[0]
    with torch.no_grad():
        torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-5)
