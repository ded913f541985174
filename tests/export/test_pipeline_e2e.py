"""End to end for mobilenetv2_ulsam: the four artifacts export, verify above threshold and profile."""
import json

import pytest

from edgeml.cli import main
from edgeml.export import DEFAULT_MIN_SQNR, export
from edgeml.manifest import read_manifest, sha256_file
from edgeml.profile.host import profile_artifact
from edgeml.runtime.verify import verify_artifact

CASES = [("pte", "none"), ("pte", "int8"), ("onnx", "none"), ("onnx", "int8")]


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    return {case: export("mobilenetv2_ulsam", format=case[0], quantize=case[1], output_dir=out) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_artifact_and_manifest(artifacts, case):
    art = artifacts[case]
    fmt, quant = case
    tag = {"none": "fp32", "int8": "int8"}[quant]
    backend = {"pte": "xnnpack", "onnx": "ort"}[fmt]
    assert art.path.name == f"mobilenetv2_ulsam_{backend}_{tag}.{fmt}"
    m = read_manifest(art.path)
    assert m.artifact["sha256"] == sha256_file(art.path)
    assert m.artifact["size_bytes"] == art.path.stat().st_size
    assert 0 < m.artifact["export_seconds"] <= art.export_seconds + 0.05  # recorded to 0.1 s, before the write
    assert m.inputs[0].shape == [1, 3, 224, 224] and m.outputs[0].shape == [1, 1000]
    assert m.preprocessing["crop"] == 224 and m.model["weights"] == {"source": "random-init", "seed": 0}
    assert m.quantization["scheme"] == quant
    assert m.parity["worst_sqnr_db"] >= DEFAULT_MIN_SQNR[quant]
    assert set(m.tools) >= {"torch", "executorch", "onnxruntime"}
    if fmt == "pte":
        # Every convolution and linear runs in XNNPACK.
        assert m.delegation["compute_share"] == 1.0 and m.delegation["compute_total"] > 50
    if quant == "int8":
        fp32 = artifacts[(fmt, "none")]
        assert art.path.stat().st_size < 0.35 * fp32.path.stat().st_size


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_verify_above_threshold(artifacts, case):
    report = verify_artifact(artifacts[case].path)
    assert report.passed, report.parity["outputs"]
    logits = report.parity["outputs"]["logits"]
    if case[1] == "none":
        assert logits["sqnr_db"] >= 60 and logits["top1_agreement"] == 1.0
    else:
        assert 25 <= logits["sqnr_db"] < 60  # int8 changes something, but not much
        assert logits["cosine"] > 0.99


@pytest.mark.parametrize("case", [("pte", "int8"), ("onnx", "none")], ids=lambda c: f"{c[0]}-{c[1]}")
def test_profile(artifacts, case):
    report = profile_artifact(artifacts[case].path, runs=5, warmup=1, threads=1, per_op_runs=2,
                              memory=case[0] == "pte")
    s = report.stats
    assert len(report.latency_ms) == 5 and 0 < s["min"] <= s["p50"] <= s["p90"] <= s["max"]
    assert report.per_op and all(o.total_ms >= 0 and o.calls >= 1 for o in report.per_op)
    names = {o.name for o in report.per_op}
    if case[0] == "pte":
        assert any("Convolution" in n for n in names) and all(o.delegated for o in report.per_op)
        assert report.peak_rss_mb > 0 and report.rss_increase_mb > 0
    else:
        assert {"Conv", "Gemm"} & names
    metrics = {m["metric"] for m in report.benchmark_metrics()}
    assert "avg_inference_latency(ms)" in metrics


def test_cli_verify_and_profile(artifacts, tmp_path, capsys):
    pte = artifacts[("pte", "none")].path
    assert main(["verify", str(pte), "--json", str(tmp_path / "v.json")]) == 0
    assert "PASS" in capsys.readouterr().out
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is True
    # An impossible threshold fails with exit code 3.
    assert main(["verify", str(pte), "--min-sqnr", "400"]) == 3
    assert "FAIL" in capsys.readouterr().out
    assert main(["profile", str(pte), "--runs", "3", "--warmup", "1", "--per-op",
                 "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "p50" in out and "Convolution" in out
    assert len(json.loads((tmp_path / "p.json").read_text())["latency_ms"]) == 3
