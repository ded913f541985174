"""XNNPACK's large-depthwise pass: a k x k depthwise convolution (25 < k * k, k <= 12) as a centre
band plus dilated pairs of rows, each within XNNPACK's 25-tap depthwise kernels."""
import pytest
import torch
from torch import nn

from edgeml.backends.xnnpack.passes.depthwise import (
    XNNPACK_DWCONV_MAX_TAPS,
    SplitDepthwiseConv2d,
    split_large_depthwise,
    splittable,
)


@pytest.mark.parametrize("k", [7, 9, 11])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("multiplier", [1, 2])
def test_the_split_computes_the_convolution(k, stride, multiplier):
    torch.manual_seed(k * 10 + stride + multiplier)
    conv = nn.Conv2d(6, 6 * multiplier, k, stride, k // 2, groups=6)
    split = SplitDepthwiseConv2d(conv)
    x = torch.randn(2, 6, 23, 18)  # odd and even sizes, not multiples of the stride
    torch.testing.assert_close(split(x), conv(x), rtol=1e-5, atol=1e-5)
    parts = [m for m in split.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.kernel_size[0] * m.kernel_size[1] <= XNNPACK_DWCONV_MAX_TAPS for m in parts)
    # every kernel row is in exactly one part
    assert sum(m.kernel_size[0] for m in parts) == k
    assert [m.bias is not None for m in parts] == [True] + [False] * (len(parts) - 1)


def test_seven_by_seven_is_a_band_and_two_pairs():
    split = SplitDepthwiseConv2d(nn.Conv2d(8, 8, 7, padding=3, groups=8))
    assert [(n, m.kernel_size, m.dilation) for n, m in split.named_children()] == [
        ("band", (3, 7), (1, 1)), ("rows2", (2, 7), (4, 1)), ("rows3", (2, 7), (6, 1))]


@pytest.mark.parametrize("conv", [
    nn.Conv2d(8, 8, 5, padding=2, groups=8),  # 25 taps: XNNPACK's kernels take it
    nn.Conv2d(8, 8, 13, padding=6, groups=8),  # a pair of 13-wide rows is 26 taps
    nn.Conv2d(8, 8, 7, padding=3, groups=4),  # grouped, not depthwise
    nn.Conv2d(8, 8, 7, padding=3),  # dense
    nn.Conv2d(8, 8, 6, padding=3, groups=8),  # even
    nn.Conv2d(8, 8, 7, padding=2, groups=8),  # not "same"
    nn.Conv2d(8, 8, 7, padding=6, dilation=2, groups=8),  # dilated
    nn.Conv2d(8, 8, (7, 5), padding=(3, 2), groups=8),  # not square
    nn.Conv2d(8, 8, 7, padding=3, groups=8, padding_mode="reflect"),
])
def test_other_convolutions_are_left_alone(conv):
    assert not splittable(conv)
    model = nn.Sequential(conv)
    assert split_large_depthwise(model) == 0 and model[0] is conv


def test_the_pass_replaces_in_place_and_keeps_the_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GELU(),
                          nn.Sequential(nn.Conv2d(16, 16, 7, padding=3, groups=16)), nn.Conv2d(16, 4, 1)).eval()
    x = torch.randn(1, 3, 20, 20)
    before = model(x)
    assert split_large_depthwise(model) == 1
    assert isinstance(model[2][0], SplitDepthwiseConv2d)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_the_pte_has_no_large_depthwise_kernel_and_the_same_outputs(tmp_path):
    from edgeml.export import export

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1)
            self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
            self.head = nn.Conv2d(16, 8, 1)

        def forward(self, x):
            return self.head(self.dw(self.stem(x)))

    torch.manual_seed(0)
    artifact = export(Net().eval(), input_shape=(1, 3, 32, 32), output_dir=tmp_path)
    assert artifact.manifest.delegation["compute_share"] == 1.0
    assert artifact.manifest.delegation["compute_total"] == 5  # stem, 3 parts, head
    assert artifact.manifest.parity["worst_sqnr_db"] > 100


def test_keep_fp32_by_the_convolutions_name_keeps_all_its_parts():
    from edgeml.backends.xnnpack.quantizer import Pt2eSession
    from edgeml.quantize.schemes import get_scheme

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 7, padding=3, groups=16),
                          nn.Conv2d(16, 4, 1)).eval()
    split_large_depthwise(model)
    x = torch.randn(1, 3, 16, 16)
    session = Pt2eSession(model, (x,), get_scheme("int8"), "minmax", [x])
    parts = [n for n in session.names if n.startswith(("1.", "1:"))]
    assert {"1.band", "1.rows2", "1.rows3"} <= set(parts) and any(":add" in n for n in parts)
    assert session.check_names(["1"]) == parts
