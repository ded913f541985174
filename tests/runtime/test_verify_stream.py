"""verify: a wrong custom-op decomposition fails clearly; images stream in batches with a per-image
distribution and the worst images named; the triton reference runs in the Triton interpreter."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeml.cli import main
from edgeml.runtime.verify import format_report, verify_artifact

HERE = Path(__file__).resolve().parent


def test_wrong_decomposition_is_caught(scan_artifacts, capsys):
    good = verify_artifact(scan_artifacts.good, images=scan_artifacts.images)
    wrong = verify_artifact(scan_artifacts.wrong, images=scan_artifacts.images)
    assert good.passed and good.parity["worst_sqnr_db"] > 100
    assert not wrong.passed
    assert wrong.parity["worst_sqnr_db"] < 45  # far below the 60 dB fp32 threshold, not marginal
    text = format_report(wrong)
    assert "FAIL: worst SQNR" in text and "< 60 dB threshold" in text
    worst = wrong.parity["worst_images"][0]
    assert f"{worst['image']} ({min(worst['sqnr_db']):.1f} dB)" in text
    # The CLI says the same, with exit code 3.
    assert main(["verify", str(scan_artifacts.wrong), "--images", str(scan_artifacts.images)]) == 3
    out = capsys.readouterr().out
    assert "FAIL" in out and "worst images:" in out


def test_streaming_distribution_and_batches(scan_artifacts, tmp_path):
    seen = []
    one = verify_artifact(scan_artifacts.wrong, images=scan_artifacts.images, on_image=lambda: seen.append(1))
    five = verify_artifact(scan_artifacts.wrong, images=scan_artifacts.images, batch=5)
    assert len(seen) == 12 and len(one.parity["per_image"]) == 12
    names = sorted(p.name for p in scan_artifacts.images.iterdir())
    assert one.parity["images"] == names and five.parity["images"] == names
    # Batching the reference changes nothing but summation order: the same per-image figures.
    for a, b in zip(one.parity["per_image"], five.parity["per_image"]):
        assert a["image"] == b["image"]
        assert a["sqnr_db"][0] == pytest.approx(b["sqnr_db"][0], abs=0.01)
    m = one.parity["outputs"]["logits"]
    values = sorted(p["sqnr_db"][0] for p in one.parity["per_image"])
    assert m["image_sqnr_db"]["min"] == pytest.approx(values[0])
    assert m["image_sqnr_db"]["min"] <= m["image_sqnr_db"]["p5"] <= m["image_sqnr_db"]["median"]
    assert m["image_sqnr_db"]["median"] == pytest.approx((values[5] + values[6]) / 2)
    assert m["image_cosine"]["min"] <= m["image_cosine"]["median"] <= 1.0
    worst = one.parity["worst_images"]
    assert [w["sqnr_db"][0] for w in worst] == pytest.approx(values[:5])
    # Whole-set SQNR from running sums equals the pooled definition: between the per-image extremes.
    assert values[0] <= m["sqnr_db"] <= values[-1]
    report = tmp_path / "r.json"
    assert main(["verify", str(scan_artifacts.good), "--images", str(scan_artifacts.images), "--batch", "4",
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["passed"] and len(data["per_image"]) == 12 and "eager" in data["reference"]


TRITON_SCRIPT = """
import json, os, sys
sys.path.insert(0, {here!r})
import scan_tiny
scan_tiny.register()
assert "TRITON_INTERPRET" not in os.environ
from edgeml.cli import main
codes = [main(["verify", {good!r}, "--reference", "triton", "--images", {images!r}, "--batch", "2",
               "--json", {out!r} + "/good.json"]),
         main(["verify", {wrong!r}, "--reference", "triton", "--images", {images!r},
               "--json", {out!r} + "/wrong.json"])]
print(json.dumps({{"codes": codes, "interpret": os.environ.get("TRITON_INTERPRET"),
                   "kernel_loaded": "edgeml.kernels._triton_selective_scan" in sys.modules}}))
"""


def test_triton_reference_in_interpreter(scan_artifacts, tmp_path):
    pytest.importorskip("triton")
    # A fresh process, as from the shell: the CLI itself turns the interpreter on (no GPU here).
    few = tmp_path / "few"  # the interpreter is slow: three images are enough here
    few.mkdir()
    for src in sorted(scan_artifacts.images.iterdir())[:3]:
        shutil.copy(src, few / src.name)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    script = TRITON_SCRIPT.format(here=str(HERE), good=str(scan_artifacts.good), wrong=str(scan_artifacts.wrong),
                                  images=str(few), out=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 3], "interpret": "1", "kernel_loaded": True}
    good = json.loads((tmp_path / "good.json").read_text())
    wrong = json.loads((tmp_path / "wrong.json").read_text())
    assert "Triton kernels in the interpreter" in good["reference"]
    assert "1 edgeml op calls per forward pass" in good["reference"]
    # The Triton reference agrees with the correct .pte to fp32 accuracy and catches the wrong one.
    assert good["worst_sqnr_db"] > 90 and len(good["per_image"]) == 3
    assert wrong["worst_sqnr_db"] < 45 and not wrong["passed"]
