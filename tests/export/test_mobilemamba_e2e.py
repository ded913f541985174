"""End to end for MobileMamba T2: BN folding, .pte fp32 / int8 and .onnx fp32, and int8
with the fp32 fallback that takes it past the verify threshold.

The other five variants and the chunked-vs-loop comparison are in ``benchmarks/mobilemamba.py``
(they take minutes; tests stay within the CI budget).
"""
import pytest
import torch

import edgeml
from edgeml.export import DEFAULT_MIN_SQNR, decompose_custom_ops, export, prepare_for_export
from edgeml.export.passes.batchnorm import count_batchnorms, fold_batchnorm
from edgeml.manifest import read_manifest, sha256_file
from edgeml.runtime.verify import verify_artifact

CASES = [("pte", "none"), ("pte", "int8"), ("onnx", "none")]
SCAN = "selective_scan"


def _call_targets(graph) -> list[str]:
    return [str(n.target) for n in graph.nodes if n.op == "call_function"]


class _Artifacts(dict):
    """Exports a case on first use, once per module, so that ``-k`` runs only the exports it needs."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def __missing__(self, case):
        self[case] = export("mobilemamba_t2", format=case[0], quantize=case[1], output_dir=self.out)
        return self[case]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return _Artifacts(tmp_path_factory.mktemp("mobilemamba"))


def test_fold_batchnorm_removes_every_bn_and_keeps_the_function():
    model = edgeml.create_model("mobilemamba_t2")
    # Non-trivial statistics, so that a wrong fold cannot pass by accident.
    g = torch.Generator().manual_seed(3)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.running_mean.copy_(0.3 * torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=g))
        bn.weight.data.copy_(1 + 0.2 * torch.randn(bn.num_features, generator=g))
        bn.bias.data.copy_(0.2 * torch.randn(bn.num_features, generator=g))
    # Conv2d_BN (stem, FFNs, PatchMerging, MRFFI, SS2D in/out proj), the local DW Conv-BN
    # pairs, and the head's BN_Linear (a BatchNorm1d that folds forward into the Linear).
    assert len(bns) > 70 and any(isinstance(m, torch.nn.BatchNorm1d) for m in bns)
    x = torch.randn(2, 3, 64, 64)  # 16/4/1 tokens: every branch of the model runs
    folded = fold_batchnorm(model, (x,))
    assert count_batchnorms(model) == len(bns), "the input model must not be modified"
    assert count_batchnorms(folded) == 0
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_quantizer_leaves_the_scan_fp32():
    # PT2E quantizes before the custom op is decomposed: the scan stays one fp32 node, fed by
    # dequantized tensors, and none of its chunked internals get Q/DQ pairs.
    from edgeml.quantize import quantize_pt2e

    model = edgeml.create_model("mobilemamba_t2")
    x = torch.randn(1, 3, 64, 64)
    converted = quantize_pt2e(prepare_for_export(model, (x,)), (x,), [x])
    scans = [n for n in converted.graph.nodes if n.op == "call_function" and SCAN in str(n.target)]
    assert len(scans) == 5
    for node in scans:
        for arg in node.all_input_nodes:
            assert "quantize_per" not in str(arg.target) or "dequantize" in str(arg.target)
    targets = _call_targets(converted.graph)
    assert any("quantize_per_tensor" in t for t in targets)  # it did quantize the convs
    exported = decompose_custom_ops(torch.export.export(converted, (x,)))
    after = _call_targets(exported.graph)
    assert not any(SCAN in t for t in after)
    n_q = sum("quantize_per_tensor" in t and "dequantize" not in t for t in targets)
    assert sum("quantize_per_tensor" in t and "dequantize" not in t for t in after) == n_q


# Measured (PT2E int8 simulated in PyTorch, T2 random init, the 6 sample images at 192): the cause
# of the former 8.2-9.7 dB was the random network's chaos (now damped by
# MobileMamba.finish_random_init, see RESIDUAL_BRANCH_SCALE); after it int8 simulates at 23.6 dB
# (worst image 22.8), still below 25 dB, with the remaining error in the plain CNN layers (stem,
# head), not the scan. The int8 .pte loads and runs (ExecuTorch runtime: 23.1 dB, worst image
# 21.9); the route past 25 dB is --min-sqnr 25. strict: a fix makes this fail.
INT8_BELOW_THRESHOLD = [
    pytest.mark.xfail(strict=True, reason="T2 int8 on random init: worst image 21.9 dB in ExecuTorch (< 25 dB)"),
    # A known-failing int8 export costs minutes of the CI budget; it runs with --runslow.
    pytest.mark.slow(reason="MobileMamba int8 export, below threshold on random init"),
]


@pytest.mark.parametrize("case", [c if c[1] == "none" else pytest.param(c, marks=INT8_BELOW_THRESHOLD)
                                  for c in CASES], ids=lambda c: f"{c[0]}-{c[1]}")
def test_artifact_verifies(artifacts, case):
    fmt, quant = case
    art = artifacts[case]
    backend = {"pte": "xnnpack", "onnx": "ort"}[fmt]
    tag = {"none": "fp32", "int8": "int8"}[quant]
    assert art.path.name == f"mobilemamba_t2_{backend}_{tag}.{fmt}"
    m = read_manifest(art.path)
    assert m.artifact["sha256"] == sha256_file(art.path)
    assert m.inputs[0].shape == [1, 3, 192, 192] and m.outputs[0].shape == [1, 1000]
    assert m.parity["worst_sqnr_db"] >= DEFAULT_MIN_SQNR[quant]
    report = verify_artifact(art.path)
    assert report.passed, report.parity["outputs"]
    logits = report.parity["outputs"]["logits"]
    if quant == "none":
        assert logits["sqnr_db"] >= 60 and logits["top1_agreement"] == 1.0
    else:
        assert 25 <= logits["sqnr_db"] < 60 and logits["cosine"] > 0.99
    if fmt == "pte":
        d = m.delegation
        # Every convolution, linear and matmul runs in XNNPACK, the scan's included.
        assert d["compute_share"] == 1.0 and d["compute_total"] > 50
        # The scan's decomposition is delegated whole; only SS2D's token-order flips (XNNPACK has
        # no reverse) and the layout copies at their partition boundaries run on portable kernels.
        assert set(d["portable_ops"]) <= {"aten_flip_default", "dim_order_ops__to_dim_order_copy_default"}, \
            d["portable_ops"]
        assert d["share"] > 0.95


def test_int8_with_fp32_fallback_passes_the_threshold(tmp_path):
    # What a user runs to get past 25 dB on T2 (edgeml export --quantize int8 --min-sqnr 25):
    # measured 25.3 dB worst image with 13 of 222 layers in fp32, 11.2 MB (~3.5 min here).
    art = export("mobilemamba_t2", format="pte", quantize="int8", output_dir=tmp_path,
                 fp32_fallback=True, min_sqnr=25.0)
    m = read_manifest(art.path)
    q = m.quantization
    assert m.parity["worst_sqnr_db"] >= 25.0
    assert 0 < len(q["fp32_layers"]) < q["layers"]["total"] // 4, q["fp32_layers"]
    assert q["mixed_precision"]["all_layers_quantized_db"] < 25.0  # every layer in int8 was below it
    report = verify_artifact(art.path)
    assert report.passed and report.parity["outputs"]["logits"]["sqnr_db"] >= 25.0
    # Still mostly int8: well under half the fp32 program (35.4 MB).
    assert art.size_bytes < 0.4 * 35.4e6
