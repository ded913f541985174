"""Triton-kernel cases, run by test_triton_interpret.py in a subprocess with TRITON_INTERPRET=1.

Triton decides between compiling and interpreting when a ``@triton.jit`` function is defined,
including its own standard library (tl.sum, tl.cumsum, ...) at ``import triton``. A pytest
process may already have imported triton without the variable (through another package), so
the interpreter runs in a fresh process that sets it first. This module imports no Triton at
import time; ``python triton_cases.py`` prints one JSON object: case id -> measured figures.
"""
import json
import os
import sys
from pathlib import Path

# (b, d, n, l, bc, decay, options): options are "all" (D, z, delta_bias, softplus) or "none".
SELECTIVE_SCAN_CASES = {
    "ss-len1": (1, 4, 1, 1, "shared", "mixed", "all"),
    "ss-n1-ragged-strong": (2, 6, 1, 37, "shared", "strong", "all"),
    "ss-n4-grouped-weak": (2, 8, 4, 67, "grouped", "weak", "all"),
    "ss-n16-invariant": (1, 4, 16, 40, "invariant", "mixed", "all"),
    "ss-n1-grouped-long-strong": (1, 4, 1, 300, "grouped", "strong", "all"),
    "ss-no-options": (2, 4, 2, 50, "shared", "mixed", "none"),
}
# (b, h, t, dk, dv, causal, decay)
LINEAR_ATTENTION_CASES = {
    "la-len1-causal": (1, 1, 1, 4, 4, True, "weak"),
    "la-ragged-causal-nodecay": (2, 3, 37, 8, 16, True, None),
    "la-ragged-causal-strong": (2, 3, 37, 8, 16, True, "strong"),
    "la-2chunks-causal-perhead": (2, 2, 130, 16, 16, True, "per_head"),
    "la-odd-dims-causal-weak": (1, 2, 70, 12, 20, True, "weak"),
    "la-ragged-noncausal": (2, 3, 37, 8, 16, False, None),
    "la-2chunks-noncausal": (1, 2, 130, 32, 8, False, None),
}
# Non-causal with rotary tables on the numerator (RALA): (b, h, t, dk, dv, layout); layout "heads"
# passes q, k, v as transposed views of a channel-first (b, h, d, t) tensor, as RAVLT does.
LINEAR_ATTENTION_ROPE_CASES = {
    "la-rope-ragged": (2, 3, 37, 8, 16, "contiguous"),
    "la-rope-2chunks-odd-dv": (1, 2, 130, 32, 20, "contiguous"),
    "la-rope-channel-first-views": (1, 2, 70, 16, 16, "heads"),
}
CASE_IDS = sorted(SELECTIVE_SCAN_CASES) + sorted(LINEAR_ATTENTION_CASES) + sorted(LINEAR_ATTENTION_ROPE_CASES) + [
    "ss-op-backend-triton",
    "ss-op-backend-triton-bidirectional",
    "la-op-backend-triton",
    "la-long-strong-decay-finite",
]


def run_all() -> dict[str, dict]:
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import test_linear_attention as la_tests
    import test_selective_scan as ss_tests
    import torch

    from edgeml.kernels import (
        linear_attention,
        linear_attention_naive,
        selective_scan,
        selective_scan_naive,
        use_backend,
    )
    from edgeml.kernels._triton_linear_attention import linear_attention_triton
    from edgeml.kernels._triton_selective_scan import selective_scan_triton

    torch.set_num_threads(1)
    results = {}

    def record(case_id, out, ref):
        results[case_id] = {
            "rel_rms": ss_tests.rel_rms(out, ref),
            "finite": bool(torch.isfinite(out).all()),
            "shape_ok": tuple(out.shape) == tuple(ref.shape) and out.dtype == ref.dtype,
        }

    for case_id, (b, d, n, l, bc, decay, opts) in SELECTIVE_SCAN_CASES.items():
        x = ss_tests.make_inputs(b, d, n, l, bc=bc, decay=decay)
        if opts == "none":
            args = dict(u=x["u"], delta=x["delta"].abs(), A=x["A"], B=x["B"], C=x["C"])
        else:
            args = dict(x, delta_softplus=True)
        # block_l = 16 so that even short cases cross tile boundaries with a ragged tail.
        record(case_id, selective_scan_triton(**args, block_l=16), selective_scan_naive(**args))

    for case_id, (b, h, t, dk, dv, causal, decay) in LINEAR_ATTENTION_CASES.items():
        q, k, v, g = la_tests.make_inputs(b, h, t, dk, dv, decay=decay)
        kw = dict(causal=causal, log_decay=g, scale=dk**-0.5)
        record(case_id, linear_attention_triton(q, k, v, **kw, block_t=32), linear_attention_naive(q, k, v, **kw))

    for case_id, (b, h, t, dk, dv, layout) in LINEAR_ATTENTION_ROPE_CASES.items():
        q, k, v, _ = la_tests.make_inputs(b, h, t, dk, dv)
        if layout == "heads":
            q, k, v = (x.transpose(-1, -2).contiguous().transpose(-1, -2) for x in (q, k, v))
        cos, sin = la_tests.rope_tables(t, dk)
        kw = dict(scale=dk**-0.5, rope_cos=cos, rope_sin=sin)
        record(case_id, linear_attention_triton(q, k, v, **kw, block_t=32), linear_attention_naive(q, k, v, **kw))

    # The registered CPU kernel dispatches to Triton (interpreted) under use_backend("triton").
    x = ss_tests.make_inputs(2, 4, 2, 45, bc="grouped")
    with use_backend("triton"):
        out = selective_scan(**x, delta_softplus=True)
    record("ss-op-backend-triton", out, selective_scan_naive(**x, delta_softplus=True))
    # Bidirectional, u shared by both halves (MobileMamba's SS2D): Triton runs the second half flipped.
    x["u"] = x["u"][:, :2]
    with use_backend("triton"):
        out = selective_scan(**x, delta_softplus=True, bidirectional=True)
    ref = selective_scan_naive(**x, delta_softplus=True, bidirectional=True)
    record("ss-op-backend-triton-bidirectional", out, ref)
    q, k, v, g = la_tests.make_inputs(1, 2, 50, 8, 8, decay="per_head")
    with use_backend("triton"):
        out = linear_attention(q, k, v, causal=True, log_decay=g)
    record("la-op-backend-triton", out, linear_attention_naive(q, k, v, causal=True, log_decay=g))

    # -100 per token: only the own token survives; any positive exponent would overflow.
    q, k, v, _ = la_tests.make_inputs(1, 1, 1024, 4, 4)
    g = torch.full((1, 1, 1024), -100.0)
    out = linear_attention_triton(q, k, v, causal=True, log_decay=g)
    record("la-long-strong-decay-finite", out, (q * k).sum(-1, keepdim=True) * v)
    return results


if __name__ == "__main__":
    print(json.dumps(run_all()))
