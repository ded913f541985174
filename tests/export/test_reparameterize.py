"""The reparameterization pass keeps the function: every block kind on its own, and a whole
FastViT, with random non-identity BN statistics and layer scales so that a wrong merge fails.
(The pass on the real FastViTHD against its golden is in tests/models/test_fastvit.py.)"""
import pytest
import torch
from torch import fx, nn

from edgeml.export.passes.reparameterize import (
    fold_conv_bn,
    fold_sequential_batchnorms,
    reparameterize_model,
)
from edgeml.models.fastvit import FastViT
from edgeml.models.layers.reparam import (
    MobileOneBlock,
    ReparamLargeKernelConv,
    ReparamModule,
    RepCPE,
    RepMixer,
    conv_bn,
)


def _randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Every float tensor random: BN statistics far from (0, 1), layer scales far from 1e-5."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("bn.weight") or name.endswith("rbr_skip.weight"):
                t.copy_(1 + 0.3 * torch.randn(t.shape, generator=g))
            elif t.is_floating_point():
                t.copy_(0.3 * torch.randn(t.shape, generator=g))
    return model.eval()


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def _assert_same_function(model: nn.Module, x: torch.Tensor) -> nn.Module:
    with torch.no_grad():
        ref = model(x)
        fused = reparameterize_model(model)
        out = fused(x)
    assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())
    return fused


BLOCKS = {
    # MobileOne: full conv with 1x1 scale branch; skip + scale + 3 conv branches (depthwise);
    # stride 2 (no skip); 1x1 with skip (no scale); grouped channel multiplier (conv_exp-like) + SE.
    "mobileone_full": lambda: MobileOneBlock(8, 16, 3, padding=1),
    "mobileone_dw_skip_3branches": lambda: MobileOneBlock(8, 8, 3, padding=1, groups=8, num_conv_branches=3),
    "mobileone_stride2": lambda: MobileOneBlock(8, 8, 3, stride=2, padding=1, groups=8),
    "mobileone_1x1_skip": lambda: MobileOneBlock(8, 8, 1),
    "mobileone_grouped_se": lambda: MobileOneBlock(8, 16, 3, padding=1, groups=8, use_se=True),
    "mobileone_skip_grouped": lambda: MobileOneBlock(8, 8, 3, padding=1, groups=2),
    "large_kernel": lambda: ReparamLargeKernelConv(8, 16, 7, stride=2, groups=8, small_kernel=3),
    "large_kernel_no_small": lambda: ReparamLargeKernelConv(8, 8, 5, stride=1, groups=8, small_kernel=None),
    "repmixer": lambda: RepMixer(8, 3),
    "repcpe": lambda: RepCPE(8, 7),
}


@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_merge_keeps_the_function(name):
    block = _randomize(BLOCKS[name]())
    assert not block.inference_mode
    fused = _assert_same_function(block, torch.randn(2, 8, 13, 11))
    assert fused.inference_mode and _count(fused, nn.BatchNorm2d) == 0
    assert not block.inference_mode, "the pass must not modify its input"


def test_randomized_state_matters():
    # The merge tests above could not pass with a merge that ignores a branch or the BN statistics.
    block = _randomize(RepMixer(8, 3))
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        ref = block(x)
        block.mixer.rbr_skip.running_var.mul_(4)
        assert (block(x) - ref).abs().max() > 1e-2
        block.mixer.rbr_skip.running_var.div_(4)
        block.layer_scale.mul_(2)
        assert (block(x) - ref).abs().max() > 1e-2


def test_fold_conv_bn_with_and_without_conv_bias():
    for bias in (False, True):
        seq = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=bias), nn.BatchNorm2d(6), nn.ReLU())
        _randomize(seq)
        x = torch.randn(1, 4, 7, 7)
        with torch.no_grad():
            ref = seq(x)
            folded = fold_conv_bn(seq[0], seq[1])
            torch.testing.assert_close(torch.relu(folded(x)), ref, rtol=1e-5, atol=1e-5)
            assert fold_sequential_batchnorms(seq) == 1
            assert isinstance(seq[1], nn.Identity)
            torch.testing.assert_close(seq(x), ref, rtol=1e-5, atol=1e-5)


def test_bn_not_after_a_conv_is_left_alone():
    seq = _randomize(nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)))
    assert fold_sequential_batchnorms(seq) == 0 and isinstance(seq[0], nn.BatchNorm2d)


def test_whole_fastvit_reparameterizes_to_the_same_function_without_batchnorm():
    model = FastViT(
        (1, 2, 1, 1, 1), (32, 32, 64, 64, 64), ("repmixer",) * 3 + ("attention",) * 2,
        (False, False, False, True, True), inference_mode=False,
    )
    _randomize(model)
    n_reparam, n_bn = _count(model, ReparamModule), _count(model, nn.BatchNorm2d)
    fused = _assert_same_function(model, torch.rand(1, 3, 128, 128))
    assert fused.form == "inference" and _count(fused, nn.BatchNorm2d) == 0
    assert not fused.training
    # Pure: the input is unchanged.
    assert model.form == "training"
    assert (_count(model, ReparamModule), _count(model, nn.BatchNorm2d)) == (n_reparam, n_bn)
    # Idempotent: a second application changes nothing.
    again = reparameterize_model(fused).state_dict()
    assert all(torch.equal(t, again[k]) for k, t in fused.state_dict().items())


def test_conv_bn_helper_has_original_key_names():
    assert set(conv_bn(4, 4, 3).state_dict()) >= {"conv.weight", "bn.weight", "bn.running_var"}


def test_graph_modules_are_refused():
    with pytest.raises(TypeError, match="before torch.export"):
        reparameterize_model(fx.symbolic_trace(nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))))
