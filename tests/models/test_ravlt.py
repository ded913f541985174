"""RAVLT: the golden from the original code (qhfan/RALA), the published configurations, strict
official-key loading with the RoPE constants rebuilt, and the attention on edgeml::linear_attention."""
import pytest
import torch
import torch.nn.functional as F
from goldens import load_golden

import edgeml
from edgeml.errors import CheckpointError, InputShapeError
from edgeml.kernels import linear_attention, linear_attention_naive, use_backend
from edgeml.models._registry import count_model_params
from edgeml.models.ravlt import SPECS, RavltAttention, RoPE, elu_plus_one, ravlt_b, ravlt_t


@pytest.fixture(scope="module")
def golden():
    return load_golden("ravlt_t")


def test_reproduces_original(golden):
    zoo = golden.info["zoo"]
    model = edgeml.create_model(zoo["name"], checkpoint=golden.state_dict(), **zoo["kwargs"])
    assert sum(p.numel() for p in model.parameters()) == golden.info["params"]
    with torch.no_grad():
        y = model(golden.input)
    # measured 4.4e-7
    assert golden.relative_error(y) <= 1e-4


def test_published_sizes_and_layer_scales():
    # Parameter counts of the original builders (paper: 15M, 26M, 48M, 95M).
    sizes = {name: round(count_model_params(name) / 1e6, 2) for name in SPECS}
    assert sizes == {"ravlt_t": 14.9, "ravlt_s": 25.59, "ravlt_b": 48.24, "ravlt_l": 95.24}
    assert SPECS["ravlt_b"].layer_scales == (1, 1, 1e-6, 1e-6) and SPECS["ravlt_l"].layer_scales == (1e-6,) * 4
    with torch.device("meta"):
        b = ravlt_b()
    kinds = [blk.attn.kind for layer in b.layers for blk in layer.blocks]
    assert kinds == ["linear"] * (4 + 6) + ["softmax"] * (12 + 6)
    assert [layer.blocks[0].attn.head_dim for layer in b.layers] == [96, 96, 64, 64]
    assert b.layers[0].blocks[0].ffn.fc1.out_channels == int(3.5 * 96)
    assert b.proj.out_channels == b.norm.num_features == 1024


def test_strict_load_ignores_rope_constants_only(golden):
    state = golden.state_dict()
    assert any(k.endswith("RoPE.angle") for k in state)
    model = edgeml.create_model("ravlt_t", checkpoint=state)
    assert not any(k.endswith("angle") for k in model.state_dict())
    # The zeros of the golden's angle keys were not loaded: the model's own constants are used.
    assert model.layers[0].RoPE.angle[2] == pytest.approx(10000 ** (-1 / 15))
    missing = dict(state)
    del missing["layers.0.blocks.0.gamma_1"]
    with pytest.raises(CheckpointError, match="1 missing"):
        edgeml.create_model("ravlt_t", checkpoint=missing)
    wrong = dict(state)
    wrong["layers.0.RoPE.angle"] = torch.zeros(16)  # another head width: not silently dropped
    with pytest.raises(CheckpointError, match="unexpected"):
        edgeml.create_model("ravlt_t", checkpoint=wrong)


def test_rope_tables_follow_the_feature_map():
    rope = RoPE(16)
    cos, sin = rope(3, 5)
    assert cos.shape == sin.shape == (15, 16)
    angle = rope.angle  # (8,): pairs share an angle
    assert torch.equal(angle[::2], angle[1::2])
    token = 2 * 5 + 3  # row 2, column 3
    torch.testing.assert_close(sin[token, :8], torch.sin(2 * angle))
    torch.testing.assert_close(cos[token, 8:], torch.cos(3 * angle))


def _original_rala(attn: RavltAttention, x, cos, sin):
    """The original's GateLinearAttentionNoSilu maths, written out (k scaled by alpha * N, means)."""
    b, c, h, w = x.shape
    n, d, t = attn.num_heads, attn.head_dim, h * w
    qkvo = attn.qkvo(x)
    q, k, v, o = qkvo.split(c, dim=1)
    lepe = attn.lepe(v)
    q, k, v = (z.reshape(b, n, d, t).transpose(-1, -2) for z in (q, k, v))
    q, k = F.elu(q) + 1, F.elu(k) + 1
    alpha = torch.softmax(attn.scale * q.mean(-2, keepdim=True) @ k.transpose(-1, -2), -1).transpose(-1, -2)
    k = k * alpha * t

    def rot(z):
        return z * cos + torch.stack([-z[..., 1::2], z[..., ::2]], -1).flatten(-2) * sin

    z = 1 / (q @ k.mean(-2, keepdim=True).transpose(-1, -2) + 1e-6)
    kv = (rot(k).transpose(-1, -2) * t**-0.5) @ (v * t**-0.5)
    res = (rot(q) @ kv * z).transpose(-1, -2).reshape(b, c, h, w)
    return attn.proj((res + lepe) * o)


@pytest.mark.parametrize("backend", ["chunked", "naive"])
def test_rala_block_through_the_op_matches_the_original_maths(backend):
    torch.manual_seed(0)
    attn = RavltAttention(32, 2, "linear").eval()
    x = torch.randn(2, 32, 6, 5)
    rope = RoPE(16)
    cos, sin = rope(6, 5)
    with torch.no_grad(), use_backend(backend):
        ref = _original_rala(attn, x, cos, sin)
        out = attn(x, (cos, sin, rope.rotation))
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_linear_stages_call_the_op_and_the_switch_replaces_it(monkeypatch):
    import edgeml.models.ravlt as ravlt

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return linear_attention(*args, **kwargs)

    monkeypatch.setattr(ravlt, "linear_attention", counting)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ravlt.ravlt_t().eval()(x)
        assert calls == [(1, 1, 256, 64)] * 2 + [(1, 2, 64, 64)] * 2  # stages 1-2, (b, heads, t, d)
        ravlt.ravlt_t(attention=("softmax",) * 4).eval()(x)
    assert len(calls) == 4


def test_elu_plus_one_is_elu_plus_one():
    x = torch.linspace(-30, 30, 10001)
    torch.testing.assert_close(elu_plus_one(x), F.elu(x) + 1, rtol=0, atol=2e-7)


def test_any_multiple_of_32():
    model = ravlt_t().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 160)).shape == (1, 1000)
    with pytest.raises(InputShapeError, match="multiple of 32"):
        edgeml.create_model("ravlt_t", resolution=100)


def test_op_on_model_sized_heads_matches_naive():
    # One head of stage 1 at 224: t = 3136 tokens of width 64, with RALA's rotary tables.
    g = torch.Generator().manual_seed(1)
    q, k = torch.rand(1, 1, 3136, 64, generator=g), torch.rand(1, 1, 3136, 64, generator=g)
    v = torch.randn(1, 1, 3136, 64, generator=g)
    cos, sin = RoPE(64)(56, 56)
    ref = linear_attention_naive(q, k, v, rope_cos=cos, rope_sin=sin)
    with use_backend("chunked"):
        out = torch.ops.edgeml.linear_attention(q, k, v, False, None, 1.0, 1e-6, cos, sin)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_export_form_splits_the_qkvo_conv_and_keeps_the_function():
    from edgeml.export.passes.export_form import to_export_form

    torch.manual_seed(0)
    model = ravlt_t().eval()
    form = to_export_form(model)
    attn = form.layers[0].blocks[0].attn
    assert isinstance(attn.qkvo, torch.nn.ModuleList) and len(attn.qkvo) == 4
    assert isinstance(model.layers[0].blocks[0].attn.qkvo, torch.nn.Conv2d)  # the input is left alone
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(form(x), model(x), rtol=1e-5, atol=1e-6)
    graph = torch.export.export(form, (x,)).graph
    assert not any(n.target in (torch.ops.aten.slice.Tensor, torch.ops.aten.narrow.default) for n in graph.nodes)
