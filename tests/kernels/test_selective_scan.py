"""edgeml.kernels.selective_scan: chunked form and registered op against the sequential loop.

Error metric as in flash-linear-attention's tests: RMS(out - ref) / RMS(ref). Both forms run in
fp32; they differ only by reassociation (log2(chunk) pairwise combines plus one cross-chunk
sum), which costs a few ulps (eps = 1.2e-7) per level. We measured <= 3.4e-7 over these cases,
so 2e-6 (6x margin) holds while any indexing or decay bug (off-by-one step, missing decay, wrong
group) shows up as an error of order 1e-2..1.
"""
import pytest
import torch
import torch.nn.functional as F

from edgeml.kernels import (
    selective_scan,
    selective_scan_chunked,
    selective_scan_naive,
    use_backend,
)
from edgeml.kernels.selective_scan import (
    selective_scan_decomposition,
    selective_scan_decomposition_onnx,
    softplus_exportable,
)

FP32_TOL = 2e-6
# The chunked forms: a pairwise tree inside chunks (eager CPU) and the matmul (SSD) form (export).
FORMS = ["tree", "matmul"]


def rel_rms(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def make_inputs(b, d, n, l, *, bc="shared", groups=2, decay="mixed", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    u = rnd(b, d, l)
    # Mamba parameterization: A = -exp(A_log) < 0, delta = softplus(raw + bias) > 0.
    if decay == "weak":  # decay per step close to 1: long memory
        A = -torch.rand(d, n, generator=g) * 0.05
        delta = rnd(b, d, l) * 0.1 - 3.0
    elif decay == "strong":  # exp(delta * A) ~ exp(-50): state forgets at once
        A = -torch.exp(torch.rand(d, n, generator=g) * 2 + 2)
        delta = rnd(b, d, l) + 2.0
    else:
        A = -torch.exp(rnd(d, n))
        delta = rnd(b, d, l)
    if bc == "shared":
        B, C = rnd(b, n, l), rnd(b, n, l)
    elif bc == "grouped":
        B, C = rnd(b, groups, n, l), rnd(b, groups, n, l)
    else:  # time-invariant
        B, C = rnd(d, n), rnd(d, n)
    D = rnd(d)
    z = rnd(b, d, l)
    delta_bias = rnd(d) * 0.5
    return dict(u=u.to(dtype), delta=delta.to(dtype), A=A, B=B.to(dtype), C=C.to(dtype),
                D=D, z=z.to(dtype), delta_bias=delta_bias)


CASES = [
    # (b, d, n, l, bc)
    (1, 4, 1, 1, "shared"),  # length 1
    (2, 6, 1, 37, "shared"),  # not a multiple of the chunk, batch > 1
    (1, 5, 4, 64, "shared"),  # exactly one chunk
    (2, 8, 4, 131, "grouped"),  # grouped B/C, several chunks plus a remainder
    (1, 3, 16, 200, "shared"),
    (2, 4, 16, 70, "invariant"),  # time-invariant B/C (d, n)
    (1, 8, 1, 513, "grouped"),
]


@pytest.mark.parametrize("b,d,n,l,bc", CASES)
@pytest.mark.parametrize("decay", ["weak", "strong", "mixed"])
@pytest.mark.parametrize("form", FORMS)
def test_chunked_matches_loop_all_options(b, d, n, l, bc, decay, form):
    x = make_inputs(b, d, n, l, bc=bc, decay=decay)
    ref = selective_scan_naive(**x, delta_softplus=True)
    out = selective_scan_chunked(**x, delta_softplus=True, form=form)
    assert out.shape == (b, d, l) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert rel_rms(out, ref) < FP32_TOL


@pytest.mark.parametrize("chunk_size", [2, 4, 8, 16, 128])
@pytest.mark.parametrize("form", FORMS)
def test_chunk_sizes_agree(chunk_size, form):
    x = make_inputs(2, 4, 4, 75, bc="grouped")
    ref = selective_scan_naive(**x, delta_softplus=True)
    out = selective_scan_chunked(**x, delta_softplus=True, chunk_size=chunk_size, form=form)
    assert rel_rms(out, ref) < FP32_TOL


def test_matmul_form_takes_any_chunk_size_and_export_uses_it():
    x = make_inputs(2, 4, 1, 75, bc="grouped")
    ref = selective_scan_naive(**x, delta_softplus=True)
    assert rel_rms(selective_scan_chunked(**x, delta_softplus=True, form="matmul", chunk_size=12), ref) < FP32_TOL
    assert rel_rms(selective_scan_decomposition(**x, delta_softplus=True), ref) < FP32_TOL
    with pytest.raises(ValueError, match="form"):
        selective_scan_chunked(**x, form="sequential")


def test_transposed_decay_matrix_is_the_decay_matrix_transposed():
    from edgeml.kernels._segsum import decay_matrix, decay_matrix_transposed

    g = -torch.rand(3, 5, 20).pow(3) * 10
    torch.testing.assert_close(decay_matrix_transposed(g), decay_matrix(g).transpose(-1, -2))
    # strict: the decay strictly between j and i, for i > j only
    strict = decay_matrix_transposed(g, strict=True)
    assert torch.equal(strict.diagonal(dim1=-2, dim2=-1), torch.zeros(3, 5, 20))
    torch.testing.assert_close(strict[..., 2, 7], torch.exp(g[..., 3:7].sum(-1)))


def test_chunk_size_must_be_power_of_two():
    x = make_inputs(1, 2, 1, 10)
    with pytest.raises(ValueError, match="power of two"):
        selective_scan_chunked(**x, chunk_size=24)


@pytest.mark.parametrize("opts", [
    dict(),
    dict(D=True),
    dict(z=True),
    dict(delta_bias=True),
    dict(delta_softplus=True),
    dict(D=True, z=True, delta_bias=True, delta_softplus=True),
])
def test_optional_arguments(opts):
    x = make_inputs(2, 6, 4, 50)
    kwargs = {k: x[k] for k in ("D", "z", "delta_bias") if opts.get(k)}
    softplus = opts.get("delta_softplus", False)
    if not softplus:  # without softplus, keep delta >= 0 so the decay stays <= 1
        x["delta"] = x["delta"].abs()
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"])
    ref = selective_scan_naive(*args, **kwargs, delta_softplus=softplus)
    out = selective_scan_chunked(*args, **kwargs, delta_softplus=softplus)
    assert rel_rms(out, ref) < FP32_TOL


def test_naive_follows_the_recurrence_by_hand():
    # One channel, n = 1: check the reference itself against the formula, step by step.
    u = torch.tensor([[[1.0, 2.0, -1.0]]])
    delta = torch.tensor([[[0.5, 1.0, 2.0]]])
    A = torch.tensor([[-1.0]])
    B = torch.tensor([[[1.0, 0.5, 2.0]]])
    C = torch.tensor([[[2.0, 1.0, -1.0]]])
    D = torch.tensor([0.5])
    h, ys = 0.0, []
    for t in range(3):
        dt = delta[0, 0, t].item()
        h = torch.exp(torch.tensor(dt * -1.0)).item() * h + dt * B[0, 0, t].item() * u[0, 0, t].item()
        ys.append(C[0, 0, t].item() * h + 0.5 * u[0, 0, t].item())
    out = selective_scan_naive(u, delta, A, B, C, D)
    torch.testing.assert_close(out[0, 0], torch.tensor(ys), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", FORMS)
def test_long_sequence_strong_decay_stays_finite(form):
    # delta * A ~ -1e4 per step: every per-token decay underflows to 0 and chunk log decays
    # reach ~ -4e7; exp of a positive number anywhere would give inf, inf * 0 would give nan.
    b, d, n, l = 1, 2, 1, 4096
    x = make_inputs(b, d, n, l, decay="strong")
    x["A"] = torch.full((d, n), -1e3)
    x["delta"] = torch.full((b, d, l), 10.0)
    ref = selective_scan_naive(**x)
    out = selective_scan_chunked(**x, form=form)
    assert torch.isfinite(out).all()
    assert rel_rms(out, ref) < FP32_TOL


@pytest.mark.parametrize("form", FORMS)
def test_long_sequence_no_decay_accumulates(form):
    # delta * A = 0: the state is a plain running sum over 4096 steps (the hardest case for
    # reassociation, since nothing is forgotten).
    b, d, n, l = 1, 2, 1, 4096
    x = make_inputs(b, d, n, l)
    x["A"] = torch.zeros(d, n)
    ref = selective_scan_naive(**x)
    out = selective_scan_chunked(**x, form=form)
    dt = x["delta"] + x["delta_bias"][:, None]
    expected = torch.cumsum(dt * x["u"] * x["B"], -1) * x["C"] + x["u"] * x["D"][:, None]
    expected = expected * F.silu(x["z"])
    assert rel_rms(ref, expected) < 1e-5
    assert rel_rms(out, expected) < 1e-5


def test_reversed_direction_matches_backward_recurrence():
    # MobileMamba scans the flipped sequence: flip, scan, flip back must equal the recurrence
    # run from the last token to the first, written out here with no flips.
    b, d, n, l = 2, 4, 1, 45
    x = make_inputs(b, d, n, l, groups=2, bc="grouped")
    dt = F.softplus(x["delta"] + x["delta_bias"][:, None])
    Bc = x["B"].repeat_interleave(d // 2, dim=1)  # (b, d, n, l)
    Cc = x["C"].repeat_interleave(d // 2, dim=1)
    h = torch.zeros(b, d, n)
    ys = [None] * l
    for t in reversed(range(l)):
        h = torch.exp(dt[..., t, None] * x["A"]) * h + (dt[..., t] * x["u"][..., t])[..., None] * Bc[..., t]
        ys[t] = (h * Cc[..., t]).sum(-1)
    expected = (torch.stack(ys, -1) + x["u"] * x["D"][:, None]) * F.silu(x["z"])

    flip = {k: x[k].flip(-1) for k in ("u", "delta", "B", "C", "z")}
    out = selective_scan(flip["u"], flip["delta"], x["A"], flip["B"], flip["C"], x["D"], flip["z"],
                         x["delta_bias"], True).flip(-1)
    assert rel_rms(out, expected) < FP32_TOL


def test_bf16_inputs_keep_dtype_and_fp32_state():
    x = make_inputs(2, 4, 4, 100)
    x16 = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    out = selective_scan(**x16, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    # Reference on the same bf16-rounded inputs in fp32: only the output rounding differs
    # (bf16 has 8 mantissa bits, relative rounding <= 2^-9 = 2e-3).
    ref = selective_scan_naive(**{k: v.float() for k, v in x16.items()}, delta_softplus=True)
    assert rel_rms(out.float(), ref) < 4e-3


def test_registered_op_dispatches_to_each_backend():
    x = make_inputs(2, 4, 4, 33, bc="grouped")
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    ref = selective_scan_naive(*args)
    default = torch.ops.edgeml.selective_scan(*args)
    with use_backend("naive"):
        naive = torch.ops.edgeml.selective_scan(*args)
    with use_backend("chunked"):
        chunked = selective_scan(*args)
    assert torch.equal(naive, ref)
    assert torch.equal(chunked, default)
    assert rel_rms(default, ref) < FP32_TOL
    with pytest.raises(ValueError, match="unknown kernel backend"):
        with use_backend("cuda-graphs"):
            pass


def test_opcheck_schema_fake_and_dispatch():
    x = make_inputs(1, 4, 2, 10, bc="grouped")
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    torch.library.opcheck(torch.ops.edgeml.selective_scan.default, args,
                          test_utils=("test_schema", "test_faketensor"))
    args_none = (x["u"], x["delta"], x["A"], x["B"], x["C"], None, None, None, False)
    torch.library.opcheck(torch.ops.edgeml.selective_scan.default, args_none,
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("bad", ["A", "B", "delta"])
def test_shape_errors_say_what_is_expected(bad):
    x = make_inputs(1, 4, 2, 10, bc="grouped", groups=2)
    if bad == "A":
        x["A"] = torch.randn(3, 2)
    elif bad == "B":
        x["B"] = torch.randn(1, 3, 2, 10)  # 3 groups do not divide d = 4
    else:
        x["delta"] = torch.randn(1, 4, 9)
    with pytest.raises(ValueError, match=r"must (both )?be"):
        selective_scan_chunked(**x)


def test_exportable_softplus_matches_torch():
    # Dense sweep plus extremes: relative error within a few ulp where softplus(x) > 1e-7, and
    # absolute error below 6e-8 in the deep negative tail, where 1 + exp(x) rounds to 1.
    x = torch.cat([torch.linspace(-100, 100, 20001), torch.tensor([0.0, 20.0, 88.0, -88.0, 1e30, -1e30])])
    ref = F.softplus(x.double())
    out = softplus_exportable(x).double()
    assert torch.isfinite(out).all()
    big = ref > 1e-7
    assert ((out - ref).abs() / ref)[big].max() < 5e-7
    assert (out - ref)[~big].abs().max() < 6e-8


def test_decomposition_form_matches_loop():
    x = make_inputs(2, 8, 4, 131, bc="grouped")
    ref = selective_scan_naive(**x, delta_softplus=True)
    out = selective_scan_decomposition(**x, delta_softplus=True)
    assert rel_rms(out, ref) < FP32_TOL


# ----------------------------------------------------------------------------- bidirectional
def _flipped_reference(x: dict, shared_u: bool = False) -> torch.Tensor:
    """The bidirectional scan written with flips: the first half of the channels as is, the
    second half scanned on its reversed sequences and flipped back (what SS2D used to do)."""
    d = x["delta"].shape[1]
    h = d // 2
    u = torch.cat([x["u"], x["u"]], 1) if shared_u else x["u"]

    def half(t, i):
        return None if t is None else (t[:, h * i:h * (i + 1)] if t.dim() == 3 else t[h * i:h * (i + 1)])

    def bc(X, i):
        if X.dim() == 2:
            return X[h * i:h * (i + 1)]
        return X if X.dim() == 3 else X[:, X.shape[1] // 2 * i:X.shape[1] // 2 * (i + 1)]

    def flip(t):
        return t if t is None or t.dim() < 3 else t.flip(-1)

    kw = dict(delta_softplus=True)
    fwd = selective_scan_naive(half(u, 0), half(x["delta"], 0), half(x["A"], 0), bc(x["B"], 0), bc(x["C"], 0),
                               half(x.get("D"), 0), half(x.get("z"), 0), half(x.get("delta_bias"), 0), **kw)
    bwd = selective_scan_naive(flip(half(u, 1)), flip(half(x["delta"], 1)), half(x["A"], 1), flip(bc(x["B"], 1)),
                               flip(bc(x["C"], 1)), half(x.get("D"), 1), flip(half(x.get("z"), 1)),
                               half(x.get("delta_bias"), 1), **kw)
    return torch.cat([fwd, bwd.flip(-1)], 1)


@pytest.mark.parametrize("b, d, n, l, bc, decay", [
    (1, 8, 1, 75, "grouped", "mixed"),  # MobileMamba's shape: n = 1, two groups, padding
    (2, 6, 4, 50, "shared", "mixed"),
    (3, 4, 2, 1000, "grouped", "weak"),  # two matmul levels, long memory
    (2, 8, 3, 9, "invariant", "mixed"),
    (1, 4, 1, 64, "grouped", "strong"),  # a multiple of the chunk at both levels
    (1, 2, 1, 1, "shared", "mixed"),
])
@pytest.mark.parametrize("shared_u", [False, True])
def test_bidirectional_matches_the_flipped_scan(b, d, n, l, bc, decay, shared_u):
    x = make_inputs(b, d, n, l, bc=bc, decay=decay)
    if shared_u:  # both halves read the same tokens: u has d / 2 channels
        x["u"] = x["u"][:, : d // 2]
    ref = _flipped_reference(x, shared_u)
    kw = dict(delta_softplus=True, bidirectional=True)
    assert rel_rms(selective_scan_naive(**x, **kw), ref) < 1e-7
    for form in FORMS:
        for chunk_size in (2, 8, 16):
            assert rel_rms(selective_scan_chunked(**x, **kw, form=form, chunk_size=chunk_size), ref) < FP32_TOL
    assert rel_rms(selective_scan_decomposition(**x, **kw), ref) < FP32_TOL
    assert rel_rms(selective_scan_decomposition_onnx(**x, **kw), ref) < FP32_TOL
    assert rel_rms(selective_scan(**x, **kw), ref) < FP32_TOL
    # The first half is the one-directional scan of its channels.
    if not shared_u and bc != "shared":
        half = {k: (v[:, : d // 2] if v.dim() == 3 else v[: d // 2]) for k, v in x.items() if k not in ("B", "C")}
        B, C = ((X[:, : X.shape[1] // 2] if X.dim() == 4 else X[: d // 2]) for X in (x["B"], x["C"]))
        fwd = selective_scan_naive(**half, B=B, C=C, delta_softplus=True)
        assert rel_rms(selective_scan_chunked(**x, **kw, form="matmul")[:, : d // 2], fwd) < FP32_TOL


def test_reversed_decay_matrix_is_the_flipped_one():
    from edgeml.kernels._segsum import decay_matrix_transposed

    g = -torch.rand(2, 3, 5, 12).pow(3) * 10
    both = decay_matrix_transposed(g, reverse=(False, True))
    torch.testing.assert_close(both[0], decay_matrix_transposed(g[0]))
    # Reversed: the forward matrix of the reversed sequence, read with both indices reversed,
    # where the decay from j back to i sums g over [i, j): g shifted by one against the forward.
    flipped = decay_matrix_transposed(g[1].flip(-1)).flip(-1, -2)
    torch.testing.assert_close(both[1], flipped)
    strict = decay_matrix_transposed(g, strict=True, reverse=(False, True))
    torch.testing.assert_close(strict[1], decay_matrix_transposed(g[1].flip(-1), strict=True).flip(-1, -2))


def test_bidirectional_shape_errors():
    x = make_inputs(1, 6, 1, 10, bc="grouped", groups=3)  # 3 groups: no two halves
    with pytest.raises(ValueError, match="grouped B in two halves"):
        selective_scan_chunked(**x, bidirectional=True)
    x = make_inputs(1, 6, 1, 10, bc="shared")
    x["u"] = x["u"][:, :3]
    with pytest.raises(ValueError, match=r"may be \(b, d/2, l\) in a bidirectional"):
        selective_scan_chunked(**x)  # half the channels of u only make sense both ways
    x = make_inputs(1, 5, 1, 10, bc="shared")
    with pytest.raises(ValueError, match="d = 5 is odd"):
        selective_scan_naive(**x, bidirectional=True)


def test_opcheck_bidirectional_with_shared_u():
    x = make_inputs(1, 4, 1, 10, bc="grouped")
    args = (x["u"][:, :2], x["delta"], x["A"], x["B"], x["C"], x["D"], None, x["delta_bias"], True, True)
    torch.library.opcheck(torch.ops.edgeml.selective_scan.default, args,
                          test_utils=("test_schema", "test_faketensor"))
    assert torch.ops.edgeml.selective_scan(*args).shape == x["delta"].shape
