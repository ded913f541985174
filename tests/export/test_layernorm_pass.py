"""lower_layernorms keeps the function (channel LayerNorm2d, token nn.LayerNorm, whole networks)
and its result lowers to XNNPACK with nothing left on portable kernels."""
import pytest
import torch
from torch import nn

import edgeml
from edgeml.backends.xnnpack.lowering import lower_to_pte
from edgeml.backends.xnnpack.passes.layernorm import (
    ConvMeanLayerNorm2d,
    LinearMeanLayerNorm,
    count_lowerable_layernorms,
    lower_layernorms,
)
from edgeml.models.fastvit import FastViT
from edgeml.models.layers.norm import LayerNorm2d


def _randomize_affine(model: nn.Module) -> nn.Module:
    # Non-trivial weight/bias so that a pass dropping or misplacing the affine part fails.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (LayerNorm2d, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
    return model


def _assert_same(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    assert a.shape == b.shape
    assert (a - b).abs().max() <= rel * max(1.0, b.abs().max().item())


# Offset and scaled inputs: a mean or variance taken over the wrong axis cannot pass.
def _channel_input() -> torch.Tensor:
    return torch.randn(2, 24, 7, 5) * torch.linspace(0.1, 3, 24).view(1, -1, 1, 1) + 2.0


@pytest.mark.parametrize("eps", [1e-5, 1e-6])
def test_channel_layernorm(eps):
    norm = _randomize_affine(LayerNorm2d(24, eps=eps))
    lowered = lower_layernorms(norm)
    assert isinstance(lowered, ConvMeanLayerNorm2d) and isinstance(norm, LayerNorm2d)
    x = _channel_input()
    with torch.no_grad():
        _assert_same(lowered(x), norm(x))
        # Same function as nn.LayerNorm over the NHWC view.
        ref = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (24,), norm.weight, norm.bias, eps)
        _assert_same(lowered(x), ref.permute(0, 3, 1, 2))


@pytest.mark.parametrize("affine", [True, False])
def test_token_layernorm(affine):
    norm = _randomize_affine(nn.LayerNorm(40, eps=1e-6, elementwise_affine=affine))
    lowered = lower_layernorms(norm)
    assert isinstance(lowered, LinearMeanLayerNorm) and type(norm) is nn.LayerNorm
    x = torch.randn(3, 17, 40) * 2 + torch.linspace(-3, 3, 40)
    with torch.no_grad():
        _assert_same(lowered(x), norm(x))


def test_layernorm_over_two_axes_is_left_alone():
    norm = nn.LayerNorm((4, 5))
    assert count_lowerable_layernorms(norm) == 0
    assert type(lower_layernorms(norm)) is nn.LayerNorm


def test_parameters_are_kept_and_input_untouched():
    model = nn.Sequential(_randomize_affine(LayerNorm2d(8)), nn.Conv2d(8, 8, 1))
    lowered = lower_layernorms(model)
    assert isinstance(model[0], LayerNorm2d), "the pass must not modify its input"
    torch.testing.assert_close(lowered[0].weight, model[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(lowered[0].bias, model[0].bias, rtol=0, atol=0)
    assert lowered[0].weight is not model[0].weight


def test_efficientmod_xxs_keeps_the_function():
    model = _randomize_affine(edgeml.create_model("efficientmod_xxs"))
    assert count_lowerable_layernorms(model) == 23  # 5 LayerNorm2d outside blocks + 12 in blocks + 6 token
    lowered = lower_layernorms(model)
    assert count_lowerable_layernorms(lowered) == 0
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        _assert_same(lowered(x), model(x))


def test_fastvit_keeps_the_function():
    # FastViTHD's layout (RepMixer x3, attention x2 with channel LayerNorm), a thousand times smaller.
    model = _randomize_affine(FastViT(
        (1, 1, 1, 2, 1), (32, 32, 64, 64, 64), ("repmixer",) * 3 + ("attention",) * 2,
        (False, False, False, True, True),
    ).eval())
    lowered = lower_layernorms(model)
    assert count_lowerable_layernorms(model) == 3 and count_lowerable_layernorms(lowered) == 0
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        _assert_same(lowered(x), model(x))


class _ChannelThenTokenNorms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm2d = nn.Conv2d(3, 32, 3, padding=1), LayerNorm2d(32)
        self.norm, self.fc = nn.LayerNorm(32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.norm2d(self.conv(x)).flatten(2).transpose(1, 2)))


def test_before_the_pass_the_norms_stay_portable_and_after_none_do():
    model = _randomize_affine(_ChannelThenTokenNorms()).eval()
    x = torch.randn(1, 3, 12, 12)
    _, before = lower_to_pte(torch.export.export(model, (x,)))
    # What the pass is for (ExecuTorch 1.5's XNNPACK partitioner): both channel means and the
    # token LayerNorm stay on portable kernels.
    assert before.portable_ops == {"aten_mean_dim": 2, "aten_native_layer_norm_default": 1}
    lowered = lower_layernorms(model)
    _, after = lower_to_pte(torch.export.export(lowered, (x,)))
    assert after.portable_ops == {} and after.compute_share == 1.0
    with torch.no_grad():
        _assert_same(lowered(x), model(x))


def test_two_stage_group_sizes():
    from edgeml.backends.xnnpack.passes.layernorm import two_stage_group

    assert two_stage_group(768) == 24  # |24^2 - 768| = 192 < |32^2 - 768| = 256
    assert two_stage_group(64) == 8
    assert two_stage_group(96) == 8    # 8^2 is 32 below 96, 12^2 48 above
    assert two_stage_group(13) is None  # a prime: no two-stage form


def _count(graph, target) -> int:
    return sum(n.target == target for n in graph.nodes)


@pytest.mark.parametrize("form", ["module", "decomposition"])
def test_fp16_token_layernorm_averages_in_two_stages(form):
    """fp16 programs take each LayerNorm average as two short products (module doc: an fp16 sum
    of C small terms loses what fp32 keeps on ARM); fp32 ones keep one product per average. Same
    function either way, to fp16's precision."""
    from edgeml.backends.xnnpack.passes.layernorm import layer_norm_as_linears

    norm = _randomize_affine(nn.LayerNorm(96, eps=1e-6))
    x = torch.randn(2, 7, 96) * 3 + torch.linspace(-2, 2, 96)
    with torch.no_grad():
        ref = norm(x)
        if form == "module":
            lowered = lower_layernorms(norm)
            fp16 = lowered.half()(x.half())
            graphs = {dt: torch.export.export(lower_layernorms(norm).to(dt), (x.to(dt),)).graph
                      for dt in (torch.float32, torch.float16)}
        else:
            fp16 = layer_norm_as_linears(x.half(), [96], norm.weight.half(), norm.bias.half(), 1e-6)[0]

            class F(nn.Module):
                def forward(self, t, w, b):
                    return layer_norm_as_linears(t, [96], w, b, 1e-6)[0]

            graphs = {dt: torch.export.export(F(), (x.to(dt), norm.weight.to(dt), norm.bias.to(dt))).graph
                      for dt in (torch.float32, torch.float16)}
    assert _count(graphs[torch.float32], torch.ops.aten.linear.default) == 2
    assert _count(graphs[torch.float16], torch.ops.aten.linear.default) == 4
    err = (fp16.float() - ref).pow(2).sum() / ref.pow(2).sum()
    assert 10 * torch.log10(1 / err) > 50


def test_fp16_channel_layernorm_averages_in_two_stages():
    norm = _randomize_affine(LayerNorm2d(24))
    x = _channel_input()
    lowered = lower_layernorms(norm)
    with torch.no_grad():
        ref = norm(x)
        fp16 = lower_layernorms(norm).half()(x.half())
        g16 = torch.export.export(lower_layernorms(norm).half(), (x.half(),)).graph
        g32 = torch.export.export(lowered, (x,)).graph
    assert _count(g32, torch.ops.aten.conv2d.default) == 2
    assert _count(g16, torch.ops.aten.conv2d.default) == 4
    err = (fp16.float() - ref).pow(2).sum() / ref.pow(2).sum()
    assert 10 * torch.log10(1 / err) > 50


class _Norms(nn.Module):
    """A channel LayerNorm2d, a token nn.LayerNorm, and F.layer_norm called directly (the
    decomposition's path), between convolutions and linears."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 48, 3, padding=1)
        self.norm2d = LayerNorm2d(48)
        self.tokens = nn.LayerNorm(48)
        self.fc = nn.Linear(48, 48)
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(48))

    def forward(self, x):
        y = self.norm2d(self.conv(x))
        t = self.tokens(y.flatten(2).transpose(1, 2))
        return nn.functional.layer_norm(self.fc(t), (48,), self.weight, None, 1e-6)


def test_fp16_two_stage_norms_run_in_xnnpack():
    """The two-stage averages of an fp16 program are delegated like the rest: only the program's
    input and output casts stay on portable kernels, and the function is kept to fp16 precision."""
    from executorch.runtime import Runtime

    from edgeml.backends import CompileSpec
    from edgeml.backends.xnnpack import XnnpackBackend
    from edgeml.quantize.schemes import get_scheme

    torch.manual_seed(0)
    net = _randomize_affine(_Norms()).eval()
    x = torch.randn(1, 3, 8, 8) + 0.5
    backend = XnnpackBackend()
    prepared = backend.prepare(net, (x,))
    data, delegation = backend.compile(prepared, (x,), CompileSpec(scheme=get_scheme("fp16"))).build()
    assert delegation["compute_share"] == 1.0
    assert delegation["portable_ops"] == {"dim_order_ops__to_dim_order_copy_default": 2}
    y = Runtime.get().load_program(data).load_method("forward").execute([x])[0]
    with torch.no_grad():
        ref = net(x)
    assert 10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum()) > 45
