"""EfficientMod's XNNPACK export form (``ModulationMlp.use_export_form(backend="xnnpack")``) keeps
the function and removes the concat of a tensor with itself, which XNNPACK refuses; the weights
and the MAC count are unchanged, and other backends keep the block as it is."""
import pytest
import torch
from torch import nn

import edgeml
from edgeml.backends.xnnpack.lowering import lower_to_pte
from edgeml.export.passes.export_form import to_export_form
from edgeml.models.efficientmod import ModulationMlp


def split_context_tiling(model: nn.Module) -> nn.Module:
    return to_export_form(model, backend="xnnpack")


def count_tiled_modulations(model: nn.Module) -> int:
    return sum(type(m) is ModulationMlp and m.ratio > 1 and isinstance(m.fc1, nn.Conv2d) for m in model.modules())


def _randomize(model: nn.Module) -> nn.Module:
    # All weights and biases random (the zoo init zeroes biases): a wrong chunk order fails.
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def _macs_of_1x1(model: nn.Module) -> int:
    return sum(m.in_channels * m.out_channels for m in model.modules()
               if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))


@pytest.mark.parametrize("ratio", [2, 4, 6])
def test_chunked_mlp_is_the_same_function(ratio):
    mlp = _randomize(ModulationMlp(8, ratio, 7))
    chunked = split_context_tiling(mlp)
    assert isinstance(chunked.fc1, nn.ModuleList) and len(chunked.fc1) == ratio
    assert isinstance(mlp.fc1, nn.Conv2d), "the pass must not modify its input"
    assert to_export_form(mlp, backend="ort") is mlp or isinstance(to_export_form(mlp, backend="ort").fc1, nn.Conv2d)
    assert _macs_of_1x1(chunked) == _macs_of_1x1(mlp)
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        ref, out = mlp(x), chunked(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_ratio_one_is_left_alone():
    mlp = ModulationMlp(8, 1, 7)
    assert count_tiled_modulations(mlp) == 0 and isinstance(split_context_tiling(mlp).fc1, nn.Conv2d)


def test_efficientmod_xxs_keeps_the_function():
    model = _randomize(edgeml.create_model("efficientmod_xxs"))
    assert count_tiled_modulations(model) == 6  # the odd blocks of 2/2/6/2
    split = split_context_tiling(model)
    assert count_tiled_modulations(split) == 0
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = model(x), split(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_tile_is_portable_before_and_delegated_after():
    mlp = _randomize(ModulationMlp(16, 6, 7))  # 6 > 5 inputs: ExecuTorch splits the concat in two
    x = torch.randn(1, 16, 14, 14)
    _, before = lower_to_pte(torch.export.export(mlp, (x,)))
    assert before.portable_ops == {"aten_cat_default": 1}  # what the pass is for (XNNPACK 1.5)
    _, after = lower_to_pte(torch.export.export(split_context_tiling(mlp), (x,)))
    assert after.portable_ops == {} and after.compute_share == 1.0


def test_prepare_for_export_rewrites_for_pte_only():
    from edgeml.backends.xnnpack.passes.layernorm import count_lowerable_layernorms
    from edgeml.export import prepare_for_export

    model = edgeml.create_model("efficientmod_xxs")
    x = torch.rand(1, 3, 64, 64)
    pte = prepare_for_export(model, (x,), format="pte")
    assert count_tiled_modulations(pte) == 0 and count_lowerable_layernorms(pte) == 0
    # ONNX Runtime takes LayerNorm and a repeated concat as they are: nothing is rewritten.
    onnx = prepare_for_export(model, (x,), format="onnx")
    assert count_tiled_modulations(onnx) == 6 and count_lowerable_layernorms(onnx) == 23
    with torch.no_grad():
        ref = model(x)
        for prepared in (pte, onnx):
            assert (prepared(x) - ref).abs().max() <= 1e-5 * ref.abs().max()
