"""edgeml.kernels.linear_attention: chunked form and registered op against the references.

Error metric as in flash-linear-attention's tests: RMS(out - ref) / RMS(ref). Everything runs in
fp32; the chunked form reorders sums (matmuls over chunks, a chunk-to-chunk state matrix), so
a few ulps (eps = 1.2e-7) times sqrt(terms per output) are expected. We measured <= 8.5e-7 over
these cases; 5e-6 (6x margin) holds while a masking or decay bug gives errors of order 1e-2..1.
"""
import pytest
import torch

from edgeml.kernels import (
    decomposition_table,
    linear_attention,
    linear_attention_chunked,
    linear_attention_naive,
    linear_attention_quadratic,
    use_backend,
)
from edgeml.kernels.linear_attention import apply_rope, rotate_pairs

FP32_TOL = 5e-6


def rel_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def make_inputs(b, h, t, dk, dv, *, decay=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Non-negative features, as ReLU / ELU+1 feature maps give.
    q = torch.rand(b, h, t, dk, generator=g)
    k = torch.rand(b, h, t, dk, generator=g)
    v = torch.randn(b, h, t, dv, generator=g)
    if decay is None:
        return q, k, v, None
    if decay == "weak":  # per-token decay ~ 0.99
        log_decay = -0.01 * torch.rand(b, h, t, generator=g)
    elif decay == "strong":  # ~ exp(-20) per token: each output sees mostly its own token
        log_decay = -20.0 - 10 * torch.rand(b, h, t, generator=g)
    else:  # Lightning-2 style: constant per head, ALiBi-like slopes
        slopes = torch.tensor([2.0 ** (-8 * (i + 1) / h) for i in range(h)])
        log_decay = (-slopes)[None, :, None].expand(b, h, t).clone()
    return q, k, v, log_decay


SHAPES = [
    # (b, h, t, dk, dv)
    (1, 1, 1, 4, 4),  # length 1
    (2, 3, 37, 8, 16),  # shorter than one chunk, batch > 1
    (1, 2, 64, 16, 8),  # exactly one chunk
    (2, 2, 130, 16, 16),  # two chunks plus a remainder
    (1, 2, 200, 32, 32),
]


@pytest.mark.parametrize("b,h,t,dk,dv", SHAPES)
def test_non_causal_matches_attention_matrix(b, h, t, dk, dv):
    q, k, v, _ = make_inputs(b, h, t, dk, dv)
    ref = linear_attention_naive(q, k, v, scale=dk**-0.5)
    out = linear_attention_chunked(q, k, v, scale=dk**-0.5)
    assert out.shape == (b, h, t, dv)
    assert rel_rms(out, ref) < FP32_TOL


@pytest.mark.parametrize("b,h,t,dk,dv", SHAPES)
@pytest.mark.parametrize("decay", [None, "weak", "strong", "per_head"])
def test_causal_chunked_matches_recurrence(b, h, t, dk, dv, decay):
    q, k, v, g = make_inputs(b, h, t, dk, dv, decay=decay)
    ref = linear_attention_naive(q, k, v, causal=True, log_decay=g, scale=0.5)
    out = linear_attention_chunked(q, k, v, causal=True, log_decay=g, scale=0.5)
    assert torch.isfinite(out).all()
    assert rel_rms(out, ref) < FP32_TOL
    quad = linear_attention_quadratic(q, k, v, causal=True, log_decay=g, scale=0.5)
    assert rel_rms(quad, ref) < FP32_TOL


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 128])
def test_chunk_sizes_agree(chunk_size):
    q, k, v, g = make_inputs(2, 2, 100, 8, 8, decay="weak")
    ref = linear_attention_naive(q, k, v, causal=True, log_decay=g)
    out = linear_attention_chunked(q, k, v, causal=True, log_decay=g, chunk_size=chunk_size)
    assert rel_rms(out, ref) < FP32_TOL


def test_recurrence_by_hand():
    # One head, dk = dv = 1: o_t = q_t sum_{s<=t} exp(g_{s+1} + ... + g_t) k_s v_s.
    q = torch.tensor([1.0, 2.0, 0.5]).view(1, 1, 3, 1)
    k = torch.tensor([1.0, 0.5, 2.0]).view(1, 1, 3, 1)
    v = torch.tensor([3.0, -1.0, 1.0]).view(1, 1, 3, 1)
    g = torch.tensor([-0.1, -1.0, -2.0]).view(1, 1, 3)
    e = torch.exp
    expected = torch.tensor([
        1.0 * 3.0,
        2.0 * (e(torch.tensor(-1.0)) * 3.0 + 0.5 * -1.0),
        0.5 * (e(torch.tensor(-3.0)) * 3.0 + e(torch.tensor(-2.0)) * -0.5 + 2.0),
    ])
    out = linear_attention_naive(q, k, v, causal=True, log_decay=g)
    torch.testing.assert_close(out.flatten(), expected, rtol=1e-6, atol=1e-6)
    nc = linear_attention_naive(q, k, v)  # non-causal normalized
    w = q.flatten()[:, None] * k.flatten()[None, :]
    torch.testing.assert_close(nc.flatten(), (w @ v.flatten()) / (w.sum(-1) + 1e-6))


def test_long_sequence_strong_decay_stays_finite():
    # log decay -100 per token: a chunk sums to -6400 and 64 chunks to ~ -4e5. Any exp of a
    # positive exponent (e.g. exp(-cumsum) factorizations) would overflow to inf and give nan.
    q, k, v, _ = make_inputs(1, 2, 4096, 4, 4)
    g = torch.full((1, 2, 4096), -100.0)
    out = linear_attention_chunked(q, k, v, causal=True, log_decay=g)
    assert torch.isfinite(out).all()
    # With that decay only the own token survives: o_t = (q_t . k_t) v_t.
    expected = (q * k).sum(-1, keepdim=True) * v
    assert rel_rms(out, expected) < FP32_TOL


def test_long_sequence_no_decay_matches_quadratic():
    q, k, v, _ = make_inputs(1, 1, 2048, 8, 8)
    ref = linear_attention_quadratic(q, k, v, causal=True)
    out = linear_attention_chunked(q, k, v, causal=True)
    assert rel_rms(out, ref) < FP32_TOL


def test_zero_features_give_zero_not_nan():
    # A query whose features are all zero: numerator and denominator are 0, eps keeps it 0.
    q, k, v, _ = make_inputs(1, 1, 10, 4, 4)
    q[0, 0, 3] = 0
    out = linear_attention_chunked(q, k, v)
    assert torch.isfinite(out).all() and torch.equal(out[0, 0, 3], torch.zeros(4))


def test_bf16_inputs_keep_dtype():
    q, k, v, g = make_inputs(2, 2, 70, 16, 16, decay="weak")
    q16, k16, v16 = q.bfloat16(), k.bfloat16(), v.bfloat16()
    for causal in (False, True):
        dec = g if causal else None
        out = linear_attention(q16, k16, v16, causal=causal, log_decay=dec)
        assert out.dtype == torch.bfloat16
        ref = linear_attention_naive(q16.float(), k16.float(), v16.float(), causal=causal, log_decay=dec)
        assert rel_rms(out.float(), ref) < 4e-3  # bf16 output rounding, 2^-9 relative


def test_registered_op_dispatches_to_each_backend():
    q, k, v, g = make_inputs(1, 2, 40, 8, 8, decay="per_head")
    ref = linear_attention_naive(q, k, v, causal=True, log_decay=g, scale=0.3)
    with use_backend("naive"):
        naive = linear_attention(q, k, v, causal=True, log_decay=g, scale=0.3)
    chunked = torch.ops.edgeml.linear_attention(q, k, v, True, g, 0.3, 1e-6)
    assert torch.equal(naive, ref)
    assert rel_rms(chunked, ref) < FP32_TOL


def test_opcheck_schema_and_fake():
    q, k, v, g = make_inputs(1, 2, 20, 4, 8, decay="weak")
    op = torch.ops.edgeml.linear_attention.default
    utils = ("test_schema", "test_faketensor")
    torch.library.opcheck(op, (q, k, v, True, g, 0.5, 1e-6), test_utils=utils)
    torch.library.opcheck(op, (q, k, v, False, None, 1.0, 1e-6), test_utils=utils)


def test_errors_say_what_is_expected():
    q, k, v, g = make_inputs(1, 2, 20, 4, 8, decay="weak")
    with pytest.raises(ValueError, match="causal=False"):
        linear_attention_chunked(q, k, v, log_decay=g)
    with pytest.raises(ValueError, match=r"log_decay must be \(b, h, t\)"):
        linear_attention_chunked(q, k, v, causal=True, log_decay=g[..., :5])
    with pytest.raises(ValueError, match="same shape"):
        linear_attention_chunked(q, k[..., :2], v)


def rope_tables(t: int, dk: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(t, dk, generator=g) * t
    return theta.cos(), theta.sin()


@pytest.mark.parametrize("b,h,t,dk,dv", SHAPES[1:])
def test_rope_non_causal_matches_attention_matrices(b, h, t, dk, dv):
    q, k, v, _ = make_inputs(b, h, t, dk, dv)
    cos, sin = rope_tables(t, dk)
    kw = dict(scale=dk**-0.5, rope_cos=cos, rope_sin=sin)
    ref = linear_attention_naive(q, k, v, **kw)
    assert rel_rms(ref, linear_attention_naive(q, k, v, scale=dk**-0.5)) > 0.1  # the tables matter
    assert rel_rms(linear_attention_chunked(q, k, v, **kw), ref) < FP32_TOL


def test_rope_rotates_the_numerator_only_by_hand():
    # t = 2, dk = 2, one pair: rope(x)_t = R(theta_t) x_t, a plane rotation.
    q = torch.tensor([[1.0, 2.0], [0.5, 1.0]]).view(1, 1, 2, 2)
    k = torch.tensor([[2.0, 1.0], [1.0, 3.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[1.0], [-2.0]]).view(1, 1, 2, 1)
    theta = torch.tensor([[0.3, 0.3], [1.1, 1.1]])

    def rot(x, a):  # (-x1, x0) convention: [x0 cos - x1 sin, x1 cos + x0 sin]
        c, s = torch.cos(a), torch.sin(a)
        return torch.stack([x[0] * c - x[1] * s, x[1] * c + x[0] * s])

    qs, ks, vs = q.view(2, 2), k.view(2, 2), v.view(2)
    kr = [rot(ks[j], theta[j, 0]) for j in range(2)]
    expected = torch.stack([
        sum(rot(qs[i], theta[i, 0]) @ kr[j] * vs[j] for j in range(2)) / (qs[i] @ ks.sum(0) + 1e-6)
        for i in range(2)
    ])
    for form in (linear_attention_naive, linear_attention_chunked, linear_attention):
        out = form(q, k, v, rope_cos=theta.cos(), rope_sin=theta.sin())
        torch.testing.assert_close(out.flatten(), expected, rtol=1e-6, atol=1e-6)


def test_rope_and_per_token_key_weights_commute():
    # RALA rescales keys by alpha_j before the op; rope(alpha k) = alpha rope(k) exactly in the maths.
    q, k, v, _ = make_inputs(2, 2, 50, 8, 8)
    cos, sin = rope_tables(50, 8)
    alpha = torch.rand(2, 2, 50, 1) + 0.1
    out = linear_attention_chunked(q, k * alpha, v, rope_cos=cos, rope_sin=sin)
    num = apply_rope(q, cos, sin) @ (apply_rope(k, cos, sin) * alpha).transpose(-1, -2) @ v
    den = q @ (k * alpha).sum(-2, keepdim=True).transpose(-1, -2)
    assert rel_rms(out, num / (den + 1e-6)) < FP32_TOL


def test_rotate_pairs_is_the_signed_pair_swap():
    x = torch.arange(1.0, 7.0).view(1, 6)
    assert rotate_pairs(x).tolist() == [[-2.0, 1.0, -4.0, 3.0, -6.0, 5.0]]


def test_decomposition_of_the_exported_op_matches_naive():
    # What export does: capture the op, replace it by the decomposition table's form.
    class Attend(torch.nn.Module):
        def forward(self, q, k, v, cos, sin):
            return linear_attention(q, k, v, scale=0.25, rope_cos=cos, rope_sin=sin)

    q, k, v, _ = make_inputs(2, 2, 40, 8, 4)
    cos, sin = rope_tables(40, 8)
    ep = torch.export.export(Attend(), (q, k, v, cos, sin))
    op = torch.ops.edgeml.linear_attention.default
    assert any(n.target is op for n in ep.graph.nodes)
    decomposed = ep.run_decompositions(decomposition_table())
    assert not any(n.target is op for n in decomposed.graph.nodes)
    ref = linear_attention_naive(q, k, v, scale=0.25, rope_cos=cos, rope_sin=sin)
    assert rel_rms(decomposed.module()(q, k, v, cos, sin), ref) < FP32_TOL


def test_rope_errors_say_what_is_expected():
    q, k, v, g = make_inputs(1, 2, 20, 4, 8, decay="weak")
    cos, sin = rope_tables(20, 4)
    with pytest.raises(ValueError, match="causal=False"):
        linear_attention_chunked(q, k, v, causal=True, rope_cos=cos, rope_sin=sin)
    with pytest.raises(ValueError, match="go together"):
        linear_attention_chunked(q, k, v, rope_cos=cos)
    with pytest.raises(ValueError, match=r"rope_sin must be \(t, dk\)"):
        linear_attention_chunked(q, k, v, rope_cos=cos, rope_sin=sin[:5])
    with pytest.raises(TypeError, match="unknown linear_attention option"):
        linear_attention_chunked(q, k, v, rope=cos)
    torch.library.opcheck(torch.ops.edgeml.linear_attention.default, (q, k, v, False, None, 1.0, 1e-6, cos, sin),
                          test_utils=("test_schema", "test_faketensor"))
