"""export --min-sqnr with a quantized scheme: the fewest, most sensitive layers stay fp32 until the
runtime's SQNR reaches the target; or it says why not and writes nothing. Plus the other schemes' exports."""
import json

import pytest

from edgeml.cli import main
from edgeml.export import export
from edgeml.manifest import read_manifest
from edgeml.runtime.verify import verify_artifact

MODEL, RES = "mobilenetv2", "64"
TARGET = 30.0  # int8 at 64 px with minmax on 2 images measures ~25.7 dB (.pte) and ~24 dB (.onnx)
ONNX = ["export", MODEL, "--format", "onnx", "--quantize", "int8", "--resolution", RES, "--observer", "minmax",
        "--calibration-images", "2"]


def _one_line_error(capsys, code, expected_code):
    assert code == expected_code
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and "error:" in lines[0], err
    return lines[0]


def _check_mixed(quant: dict, parity: dict, target: float) -> list[dict]:
    mixed = quant["mixed_precision"]
    kept = mixed["fp32_layers"]
    assert quant["fp32_layers"] == [k["name"] for k in kept] and kept
    assert quant["layers"]["quantized"] == quant["layers"]["total"] - len(kept) == mixed["quantized_layers"]
    # every layer quantized misses the target; with the kept ones in fp32 the runtime reaches it
    assert mixed["all_layers_quantized_db"] < target <= mixed["measured_db"]
    assert mixed["measured_db"] == pytest.approx(parity["worst_sqnr_db"], abs=1e-6)
    assert parity["threshold_db"] == target and mixed["attempts"][-1]["measured_db"] == mixed["measured_db"]
    # most sensitive first: each kept layer alone does more damage than the next
    alone = [k["sqnr_db_alone"] for k in kept]
    assert alone == sorted(alone)
    return kept


def test_pte_mixed_precision_reaches_the_target(tmp_path):
    art = export(MODEL, quantize="int8", resolution=int(RES), calibration_images=2, observer="minmax",
                 min_sqnr=TARGET, fp32_fallback=True, output_dir=tmp_path)
    m = read_manifest(art.path)
    kept = _check_mixed(m.quantization, m.parity, TARGET)
    assert len(kept) < m.quantization["layers"]["total"] // 3  # a few layers, not the model
    assert m.quantization["calibration"] == {"images": 2, "observer": "minmax", "source": "edgeml sample images"}
    assert m.delegation["compute_share"] == 1.0  # fp32 and int8 layers alike run in XNNPACK
    report = verify_artifact(art.path, min_sqnr=TARGET)  # an independent run agrees
    assert report.passed and report.parity["worst_sqnr_db"] == pytest.approx(m.parity["worst_sqnr_db"], abs=1e-3)


def test_onnx_mixed_precision_cli(tmp_path, capsys):
    assert main([*ONNX, "--min-sqnr", str(TARGET), "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "mobilenetv2_r64_ort_int8.json").read_text())
    kept = _check_mixed(m["quantization"], m["parity"], TARGET)
    assert f"in fp32: {kept[0]['name']}" in out and "mixed precision:" in out and "verify: PASS" in out


def test_keep_fp32_by_name(tmp_path):
    assert main([*ONNX, "--keep-fp32", "features.0.0,classifier.1", "--output-dir", str(tmp_path)]) == 0
    q = json.loads((tmp_path / "mobilenetv2_r64_ort_int8.json").read_text())["quantization"]
    assert q["fp32_layers"] == ["features.0.0", "classifier.1"] and "mixed_precision" not in q
    assert q["layers"]["quantized"] == q["layers"]["total"] - 2


def test_keep_fp32_from_a_file_or_an_earlier_manifest(tmp_path, capsys):
    names = tmp_path / "layers.txt"
    names.write_text("# kept in fp32\nfeatures.0.0\nclassifier.1,features.0.0\n")
    first, second = tmp_path / "a", tmp_path / "b"
    assert main([*ONNX, "--keep-fp32", f"@{names}", "--output-dir", str(first)]) == 0
    manifest = first / "mobilenetv2_r64_ort_int8.json"
    assert json.loads(manifest.read_text())["quantization"]["fp32_layers"] == ["features.0.0", "classifier.1"]
    # The list an earlier export recorded (e.g. searched at a low resolution), plus one more layer.
    assert main([*ONNX, "--keep-fp32", f"@{manifest},features.1.conv.0.0", "--output-dir", str(second)]) == 0
    q = json.loads((second / "mobilenetv2_r64_ort_int8.json").read_text())["quantization"]
    assert q["fp32_layers"] == ["features.0.0", "classifier.1", "features.1.conv.0.0"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*ONNX, "--keep-fp32", f"@{tmp_path / 'missing.txt'}", "--output-dir", str(second)])
    assert e.value.code == 2 and "cannot read layer names from" in capsys.readouterr().err
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": 99}))
    with pytest.raises(SystemExit) as e:
        main([*ONNX, "--keep-fp32", f"@{future}", "--output-dir", str(second)])
    assert e.value.code == 2 and "format_version 99 is not supported" in capsys.readouterr().err


def test_unreachable_targets_say_why_and_write_nothing(tmp_path, capsys):
    line = _one_line_error(capsys, main([*ONNX, "--min-sqnr", "90", "--output-dir", str(tmp_path)]), 3)
    assert "90 dB cannot be reached by keeping layers in fp32" in line and "export without --quantize" in line
    assert "all but one of the 63 layers whose quantization changes the output" in line  # not the ReduceMean
    # --max-fp32-layers 0 is plain int8 with a threshold
    line = _one_line_error(capsys, main([*ONNX, "--min-sqnr", str(TARGET), "--max-fp32-layers", "0",
                                         "--output-dir", str(tmp_path)]), 3)
    assert f"below the {TARGET:g} dB threshold" in line
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("scheme", ["int8-dynamic", "8da4w"])
def test_pte_dynamic_and_8da4w_export(tmp_path, scheme):
    art = export(MODEL, quantize=scheme, resolution=int(RES), output_dir=tmp_path)
    tag = {"int8-dynamic": "int8dyn", "8da4w": "8da4w"}[scheme]
    assert art.path.name == f"mobilenetv2_r64_xnnpack_{tag}.pte"
    m = read_manifest(art.path)
    q = m.quantization
    assert q["scheme"] == scheme and q["calibration"]["images"] == 0 and q["fp32_layers"] == []
    assert m.delegation["compute_share"] == 1.0
    if scheme == "8da4w":
        assert q["group_size"] == 32 and q["layers"] == {"quantized": 1, "total": 1}
        assert 10 < m.parity["worst_sqnr_db"] < 40
    else:
        assert q["layers"]["total"] == 36 and m.parity["worst_sqnr_db"] > 20  # 35 dense convs + the classifier
    assert verify_artifact(art.path, min_sqnr=10).passed
