"""edgeml/data/zoo_status.json: what real exports proved per zoo model, read by `edgeml list` and the
README table. The committed file must agree with the registry and the scheme table; models without
a record read "not measured"."""
from __future__ import annotations

import datetime
import json

import pytest

import edgeml.zoo_status as zs
from edgeml.cli import main
from edgeml.manifest import Manifest, TensorSpec
from edgeml.models import get_model_config, list_models
from edgeml.quantize.schemes import SCHEME_INFO, default_min_sqnr


@pytest.fixture(scope="module")
def committed():
    path = zs.status_path()
    assert path.is_file(), f"{path} is missing: run benchmarks/zoo_status.py"
    return zs.load_status(path)


def test_every_record_is_a_measurement_judged_by_the_scheme_table(committed):
    zoo = set(list_models())
    assert committed["models"], "no model measured"
    for name, entry in committed["models"].items():
        assert name in zoo, f"{name} is not a zoo model (renamed or removed?): rerun benchmarks/zoo_status.py"
        assert entry["params"] > 0
        for kind, record in entry["results"].items():
            fmt, _, label = kind.partition(" ")
            scheme = "none" if label == "fp32" else label
            assert scheme in SCHEME_INFO and fmt in SCHEME_INFO[scheme].formats, kind
            datetime.date.fromisoformat(record["measured"])
            assert record["machine"] and record["commit"]
            if record.get("error"):
                assert record["verified"] is False and record["sqnr_db"] is None
                continue
            assert record["threshold_db"] == default_min_sqnr(scheme), (name, kind)
            assert record["verified"] == (record["sqnr_db"] >= record["threshold_db"]), (name, kind)
            assert record["images"] >= 1 and len(record["sha256"]) == 64 and record["artifact"].endswith(f".{fmt}")
            cfg = get_model_config(name)
            assert record["input"] == [1, cfg.in_chans, cfg.resolution, cfg.resolution], (name, kind)


def test_every_format_the_registry_claims_is_measured_and_verified(committed):
    # ModelConfig.formats lists what a family's end-to-end tests export; the status file must back it.
    for name in list_models():
        results = zs.model_status(name, committed)
        for fmt in get_model_config(name).formats:
            record = results.get(zs.kind_name(fmt, "none"))
            assert record is not None, f"{name} claims {fmt} but has no fp32 {fmt} record in {zs.STATUS_FILE}"
            assert record["verified"], (name, fmt, record)


def _status(**models) -> dict:
    return {"format_version": zs.FORMAT_VERSION, "models": models}


def _record(sqnr: float, scheme: str = "none", **extra) -> dict:
    threshold = default_min_sqnr(scheme)
    return {"sqnr_db": sqnr, "threshold_db": threshold, "verified": sqnr >= threshold, "fp32_layers": 0,
            "measured": "2026-12-06", "machine": "test", "commit": "abc", **extra}


def test_summaries_and_models_without_a_record():
    status = _status(mobilenetv2={"params": 3504872, "results": {
        "pte fp32": _record(122.3), "pte int8": _record(30.2, "int8"), "onnx int8": _record(10.9, "int8"),
        "pte 8da4w": _record(13.0, "8da4w", fp32_layers=2)}})
    assert zs.verified_summary(zs.model_status("mobilenetv2", status)) == (
        "pte fp32 122.3 dB, pte int8 30.2 dB, onnx int8 10.9 dB < 25, pte 8da4w 13.0 dB (+2 fp32)")
    assert zs.model_status("ravlt_l", status) == {}
    assert zs.verified_summary({}) == "not measured"
    assert zs.describe_record({"error": "cannot lower", "verified": False, "sqnr_db": None}) == "export fails"


def test_markdown_table(monkeypatch):
    status = _status(mobilenetv2={"params": 3504872, "results": {
        "pte fp32": _record(122.3, measured="2026-12-05"), "onnx int8": _record(10.9, "int8"),
        "pte int8-dynamic": _record(31.0, "int8-dynamic")}})
    table = zs.zoo_markdown_table(["mobilenetv2", "mobilenetv1"], status=status).splitlines()
    assert table[0] == ("| model | params | input | output | `.pte` fp32 | `.pte` int8 | `.onnx` fp32 | `.onnx` int8 "
                        "| other | measured |")
    assert table[2] == ("| `mobilenetv2` | 3.50M | 224 | logits | 122.3 dB | not measured | not measured | "
                        "10.9 dB < 25 | pte int8-dynamic 31.0 dB | 2026-12-05 – 2026-12-06 |")
    # A model without an entry (a family added after the last run) is listed, not measured.
    assert table[3] == ("| `mobilenetv1` | 4.23M | 224 | logits | not measured | not measured | not measured | "
                        "not measured | – | not measured |")


def test_record_from_manifest():
    manifest = Manifest(
        artifact={"file": "m_xnnpack_int8.pte", "format": "pte", "sha256": "0" * 64, "size_bytes": 2_500_000},
        model={"name": "mobilenetv2", "weights": {"source": "random-init", "seed": 0}},
        inputs=[TensorSpec("image", [1, 3, 224, 224])], outputs=[], preprocessing=None,
        quantization={"scheme": "int8", "fp32_layers": ["features.0.0", "classifier.1"]},
        parity={"images": ["a.jpg", "b.jpg"], "worst_sqnr_db": 26.123, "threshold_db": 25.0},
        tools={"torch": "2.13.0"})
    kind, record = zs.record_from_manifest(manifest, export_seconds=12.34, measured="2026-12-06", machine="m",
                                           commit="abc")
    assert kind == "pte int8"
    assert record["sqnr_db"] == 26.12 and record["threshold_db"] == 25.0 and record["verified"]
    assert record["fp32_layers"] == 2 and record["images"] == 2 and record["weights"] == "random-init seed 0"
    assert record["size_mb"] == 2.5 and record["export_s"] == 12.3 and record["tools"] == {"torch": "2.13.0"}
    status = _status()
    zs.merge_record(status, "mobilenetv2", "pte int8", record, params=5)
    zs.merge_record(status, "mobilenetv2", "pte fp32", _record(120.0), params=5)
    assert list(status["models"]["mobilenetv2"]["results"]) == ["pte fp32", "pte int8"]


def test_edgeml_list_reads_the_status(tmp_path, monkeypatch, capsys):
    path = tmp_path / zs.STATUS_FILE
    path.write_text(json.dumps(_status(mobilenetv2={"params": 3504872, "results": {
        "pte fp32": _record(122.3), "onnx int8": _record(10.9, "int8")}})))
    monkeypatch.setattr(zs, "status_path", lambda: path)
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert lines["mobilenetv2"].endswith("pte fp32 122.3 dB, onnx int8 10.9 dB < 25")
    assert lines["mobilenetv1"].endswith("not measured")
    assert set(list_models()) <= set(lines)
    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mobilenetv2"]["formats"] == ["pte"]  # the onnx record is below its threshold
    assert rows["mobilenetv2"]["measured"]["onnx int8"]["verified"] is False
    assert rows["mobilenetv1"]["formats"] == [] and rows["mobilenetv1"]["measured"] == {}
