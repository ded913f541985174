"""quantize-report end to end: the runtime figure, the ranking, the JSON, for .pte (8da4w) and .onnx (int8)."""
import json
import math

from edgeml.cli import main
from edgeml.quantize.report import format_report, quantize_report

MODEL, RES = "mobilenetv2", 64


def test_report_pte_8da4w_api():
    stages, layers = [], []
    report = quantize_report(MODEL, format="pte", scheme="8da4w", resolution=RES, progress=stages.append,
                             on_layer=lambda done, total: layers.append((done, total)))
    assert stages == ["build", "passes", "quantize", "lower", "parity", "layers"] and layers == [(1, 1)]
    assert report.runtime.startswith("ExecuTorch") and report.images and len(report.images) == 6
    assert [r.name for r in report.layers] == ["classifier.1"] and report.layers[0].noise_share == 1.0
    # int4 weights in one layer: a real but bounded loss, the same in the runtime and in simulation
    assert 10 < report.sqnr_db < 40 and abs(report.sqnr_db - report.simulated.sqnr_db) < 1.0
    assert abs(report.layers[0].sqnr_db - report.simulated.sqnr_db) < 1e-6  # the only layer is all of it
    d = json.loads(json.dumps(report.to_dict()))
    assert d["scheme"] == "8da4w" and d["group_size"] == 32 and d["calibration"]["images"] == 0
    text = format_report(report)
    assert "classifier.1" in text and "ExecuTorch" in text and "group size 32" in text


def test_report_onnx_int8_cli(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["quantize-report", MODEL, "--format", "onnx", "--resolution", str(RES), "--observer", "minmax",
                 "--calibration-images", "2", "--target", "30", "--top", "5", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    d = json.loads(out.read_text())
    layers = d["layers"]
    assert len(layers) > 60 and [r["rank"] for r in layers] == list(range(1, len(layers) + 1))
    assert [r["sqnr_db"] for r in layers] == sorted(r["sqnr_db"] for r in layers)
    assert math.isclose(sum(r["noise_share"] for r in layers), 1.0, rel_tol=1e-3)
    e2e = d["end_to_end"]
    assert e2e["runtime"].startswith("ONNX Runtime") and 15 < e2e["sqnr_db"] < 30 and e2e["top1_agreement"] >= 0.5
    # for ONNX the simulation is ONNX Runtime running the QDQ model: the same figure
    assert abs(e2e["sqnr_db"] - d["end_to_end_simulated"]["sqnr_db"]) < 1e-3
    assert d["calibration"] == {"images": 2, "source": "edgeml sample images"} and d["observer"] == "minmax"
    plan = d["plan"]
    k = len(plan["fp32_layers"])
    assert 0 < k < len(layers) and plan["fp32_layers"] == [r["name"] for r in layers[:k]]
    assert plan["simulated_db"] + plan["runtime_minus_simulation_db"] >= 30
    # the printout: end-to-end line, the five worst layers in order, the plan
    assert f"SQNR {e2e['sqnr_db']:.1f} dB" in text and "ONNX Runtime" in text
    rows = [line.split() for line in text.splitlines() if line.startswith("  ") and line.split()[0].isdigit()]
    assert [r[1] for r in rows] == [r["name"] for r in layers[:5]]
    assert f"{len(layers) - 5} more" in text and f"keep {k} layer(s) in fp32" in text


def test_report_pte_measures_the_graph_export_lowers():
    # The .pte report quantizes what `edgeml export` lowers: LayerNorms as averaging convs, whose
    # statistics and normalization stay fp32 (5 groups for each of efficientmod_xxs's 23 norms: the
    # two means, the square, var + eps, the product with 1 / std) and are not ranked as layers.
    report = quantize_report("efficientmod_xxs", format="pte", scheme="int8", resolution=64, observer="minmax",
                             calibration_images=1)
    assert report.extra["norm_statistics_fp32"] == 115
    assert not [r.name for r in report.layers if ".norm:" in r.name and r.op in ("conv2d", "linear")]
    assert "115 LayerNorm statistics and normalization ops" in format_report(report, top=3)
