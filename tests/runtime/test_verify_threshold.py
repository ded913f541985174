"""One table of default SQNR thresholds (edgeml.quantize.schemes) for export --verify, verify and the help."""
from __future__ import annotations

import json
import shutil

import pytest

from edgeml.cli import main
from edgeml.errors import ArtifactError, UsageError
from edgeml.export import DEFAULT_MIN_SQNR
from edgeml.manifest import read_manifest
from edgeml.quantize.schemes import SCHEME_INFO, default_min_sqnr, default_min_sqnr_text
from edgeml.runtime.verify import verify_artifact, verify_threshold


def test_default_min_sqnr_is_the_scheme_table():
    assert {name: default_min_sqnr(name) for name in SCHEME_INFO} == {
        "none": 60.0, "int8": 25.0, "int8-dynamic": 25.0, "8da4w": 12.0, "fp16": 30.0}
    assert DEFAULT_MIN_SQNR == {name: default_min_sqnr(name) for name in SCHEME_INFO}  # export's view of it
    with pytest.raises(UsageError, match="unknown quantization"):
        default_min_sqnr("int3")


def test_help_states_the_table(capsys, monkeypatch):
    text = default_min_sqnr_text()
    assert text == "60 dB fp32, 25 dB int8 and int8-dynamic, 12 dB 8da4w, 30 dB fp16"
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option, so the text is not wrapped
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert text in capsys.readouterr().out


def _with_scheme(artifact, folder, scheme: str):
    """A copy of ``artifact`` whose manifest records ``scheme`` (the program's bytes, and so its
    sha256, unchanged)."""
    folder.mkdir()
    copy = shutil.copy(artifact, folder / artifact.name)
    manifest = json.loads(artifact.with_suffix(".json").read_text())
    manifest["quantization"] = {**manifest["quantization"], "scheme": scheme}
    (folder / artifact.with_suffix(".json").name).write_text(json.dumps(manifest))
    return copy


def test_verify_threshold_of_a_manifest(scan_artifacts, tmp_path):
    for scheme, db in (("none", 60.0), ("int8", 25.0), ("int8-dynamic", 25.0), ("8da4w", 12.0), ("fp16", 30.0)):
        manifest = read_manifest(_with_scheme(scan_artifacts.good, tmp_path / scheme, scheme))
        assert verify_threshold(manifest) == db
        assert verify_threshold(manifest, 33) == 33.0


def test_verify_judges_8da4w_against_12_db(scan_artifacts, tmp_path):
    copy = _with_scheme(scan_artifacts.good, tmp_path / "8da4w", "8da4w")
    report = verify_artifact(copy, images=scan_artifacts.images)
    assert report.threshold_db == 12.0 and report.passed


def test_verify_unknown_scheme_says_what_to_do(scan_artifacts, tmp_path):
    copy = _with_scheme(scan_artifacts.good, tmp_path / "int3", "int3")
    with pytest.raises(ArtifactError, match="'int3'.*pass --min-sqnr"):
        verify_artifact(copy, images=scan_artifacts.images)
    assert verify_artifact(copy, images=scan_artifacts.images, min_sqnr=30).threshold_db == 30.0
