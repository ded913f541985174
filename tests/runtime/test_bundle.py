"""`export --bundle N` writes a .bpte that ExecuTorch's own bundled-program check passes on;
`verify X.bpte` runs it, catches wrong expected outputs and refuses a modified file."""
from __future__ import annotations

import json

import pytest
import torch

from edgeml.cli import main
from edgeml.errors import ArtifactError, UsageError
from edgeml.manifest import atomic_write_json, manifest_path, read_manifest, sha256_file
from edgeml.runtime.bundled import bundle_path, check_bundle, write_bundle


def test_bundle_round_trip(scan_artifacts, capsys):
    bpte = bundle_path(scan_artifacts.good)
    record = read_manifest(scan_artifacts.good).artifact["bundle"]
    assert bpte.is_file() and record["file"] == bpte.name and record["cases"] == 2
    assert record["sha256"] == sha256_file(bpte)
    report = check_bundle(bpte)
    assert report.passed and len(report.cases) == 2
    assert all(s > 100 for c in report.cases for s in c.sqnr_db)  # fp32 program vs eager outputs
    assert main(["verify", str(bpte)]) == 0
    out = capsys.readouterr().out
    assert "case 0: pass" in out and "case 1: pass" in out and "PASS" in out


def test_wrong_expected_outputs_fail(scan_artifacts, tmp_path, capsys):
    # The correct program bundled with the outputs of a wrong model: ExecuTorch's check fails.
    program = scan_artifacts.good.read_bytes()
    stem = tmp_path / scan_artifacts.good.stem
    (stem.with_suffix(".pte")).write_bytes(program)
    manifest = json.loads(manifest_path(scan_artifacts.good).read_text())

    def wrong_reference(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 10) + 0.5

    inputs = [torch.rand(1, 3, 32, 32) for _ in range(2)]
    manifest["artifact"]["bundle"] = write_bundle(stem.with_suffix(".bpte"), program, wrong_reference, inputs,
                                                  "none")
    atomic_write_json(stem.with_suffix(".json"), manifest)
    report = check_bundle(stem.with_suffix(".bpte"))
    assert not report.passed and all(not c.passed for c in report.cases)
    assert main(["verify", str(stem.with_suffix(".bpte")), "--json", str(tmp_path / "r.json")]) == 3
    assert "FAIL: cases [0, 1]" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


def test_modified_bundle_is_refused_before_loading(scan_artifacts, tmp_path):
    bpte = tmp_path / bundle_path(scan_artifacts.good).name
    data = bytearray(bundle_path(scan_artifacts.good).read_bytes())
    data[len(data) // 2] ^= 0xFF
    bpte.write_bytes(bytes(data))
    manifest_path(bpte).write_text(manifest_path(scan_artifacts.good).read_text())
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        check_bundle(bpte)


def test_bundle_options_are_checked(tmp_path):
    from edgeml.export import export

    with pytest.raises(UsageError, match="--format pte only"):
        export("mobilenetv2", format="onnx", resolution=64, bundle=2, output_dir=tmp_path)
    assert main(["verify", str(tmp_path / "x.bpte"), "--reference", "triton"]) != 0
