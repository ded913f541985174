"""The device-outputs file format (writer, reader, refusals) and `verify --device-outputs`."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from edgeml.cli import main
from edgeml.errors import ArtifactError, UsageError
from edgeml.images import Preprocessing, list_images, load_image
from edgeml.manifest import read_manifest
from edgeml.runtime.device_outputs import MAGIC, read_device_outputs, write_device_outputs
from edgeml.runtime.runners import make_runner, open_artifact
from edgeml.runtime.verify import verify_artifact


def test_format_is_the_documented_bytes(tmp_path):
    path = tmp_path / "out.bin"
    logits = np.arange(6, dtype=np.float32).reshape(2, 3) - 1.5
    write_device_outputs(path, artifact_file="m.pte", artifact_sha256="ab" * 32, images=["a.jpg", "b.png"],
                         outputs={"logits": logits}, device="Pixel 8")
    raw = path.read_bytes()
    assert raw[:8] == b"EDGEOUT1"
    (n,) = struct.unpack("<I", raw[8:12])
    header = json.loads(raw[12:12 + n])
    assert header == {"format": "edgeml-device-outputs", "version": 1,
                      "artifact": {"file": "m.pte", "sha256": "ab" * 32}, "images": ["a.jpg", "b.png"],
                      "outputs": [{"name": "logits", "shape": [2, 3], "dtype": "float32"}], "device": "Pixel 8"}
    # The data is little-endian float32, C order, right after the header, nothing after it.
    assert raw[12 + n:] == b"".join(struct.pack("<f", v) for v in logits.flatten())
    back = read_device_outputs(path)
    assert back.images == ["a.jpg", "b.png"] and back.device == "Pixel 8"
    np.testing.assert_array_equal(back.outputs["logits"], logits)
    np.testing.assert_array_equal(back.rows(1)["logits"], logits[1:2])


@pytest.mark.parametrize("damage, message", [
    (lambda raw: b"EDGEOUT2" + raw[8:], "does not start with EDGEOUT1"),
    (lambda raw: raw[:-4], "truncated"),
    (lambda raw: raw + b"\0\0\0\0", "bytes after the last output"),
    (lambda raw: raw[:8] + struct.pack("<I", 1 << 30) + raw[12:], "truncated or corrupt"),
])
def test_malformed_files_are_refused(tmp_path, damage, message):
    path = tmp_path / "out.bin"
    write_device_outputs(path, artifact_file="m.pte", artifact_sha256="0" * 64, images=["a.jpg"],
                         outputs={"logits": np.ones((1, 4), np.float32)})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ArtifactError, match=message):
        read_device_outputs(path)


def test_header_must_describe_the_data(tmp_path):
    head = json.dumps({"format": "edgeml-device-outputs", "version": 1, "artifact": {"file": "m", "sha256": "0"},
                       "images": ["a.jpg", "b.jpg"], "outputs": [{"name": "x", "shape": [3, 2],
                                                                  "dtype": "float32"}]}).encode()
    path = tmp_path / "bad.bin"
    path.write_bytes(MAGIC + struct.pack("<I", len(head)) + head + bytes(24))
    with pytest.raises(ArtifactError, match="first axis must be the 2 images"):
        read_device_outputs(path)
    with pytest.raises(ValueError, match="first axis"):
        write_device_outputs(tmp_path / "w.bin", artifact_file="m", artifact_sha256="0", images=["a"],
                             outputs={"x": np.zeros((2, 3), np.float32)})


def _phone_outputs(artifact, images, path, *, perturb: float = 0.0) -> None:
    """What the app does: run the program on each image (batch 1) and write the rows it got."""
    opened = open_artifact(artifact)
    manifest = opened.manifest
    pre = Preprocessing.from_dict(manifest.preprocessing)
    runner = make_runner(opened)
    rows = [runner.run([pre(load_image(p))])[0].numpy() for p in images]
    logits = np.concatenate(rows)
    logits = logits + perturb * np.abs(logits).max() * np.random.default_rng(0).standard_normal(logits.shape)
    write_device_outputs(path, artifact_file=opened.path.name, artifact_sha256=manifest.artifact["sha256"],
                         images=[p.name for p in images], outputs={manifest.outputs[0].name: logits},
                         device="test phone")


def test_verify_device_outputs(scan_artifacts, tmp_path, capsys):
    images = list_images(scan_artifacts.images)[::2]  # the phone ran 6 of the 12, in its own order
    images = images[::-1]
    path = tmp_path / "phone.bin"
    _phone_outputs(scan_artifacts.good, images, path)
    here = verify_artifact(scan_artifacts.good, images=scan_artifacts.images)
    report = verify_artifact(scan_artifacts.good, images=scan_artifacts.images, device_outputs=path)
    assert report.passed
    assert report.parity["runtime"] == f"outputs from test phone ({scan_artifacts.good.name})"
    assert report.parity["images"] == [p.name for p in images]
    # Same program, same images: the same per-image SQNR as running the artifact here.
    by_name = {p["image"]: p["sqnr_db"][0] for p in here.parity["per_image"]}
    for p in report.parity["per_image"]:
        assert p["sqnr_db"][0] == pytest.approx(by_name[p["image"]], abs=1e-6)
    # A phone whose outputs are off by ~1% of the peak fails, through the CLI as well.
    bad = tmp_path / "noisy.bin"
    _phone_outputs(scan_artifacts.good, images, bad, perturb=0.01)
    assert main(["verify", str(scan_artifacts.good), "--images", str(scan_artifacts.images),
                 "--device-outputs", str(bad)]) == 3
    out = capsys.readouterr().out
    assert "outputs from test phone" in out and "FAIL" in out


def test_device_outputs_must_match_the_build_and_images(scan_artifacts, tmp_path):
    images = list_images(scan_artifacts.images)[:2]
    other = tmp_path / "other.bin"
    _phone_outputs(scan_artifacts.wrong, images, other)  # written by the other build
    with pytest.raises(ArtifactError, match="another build"):
        verify_artifact(scan_artifacts.good, images=scan_artifacts.images, device_outputs=other)
    missing = tmp_path / "missing.bin"
    sha = read_manifest(scan_artifacts.good).artifact["sha256"]
    write_device_outputs(missing, artifact_file=scan_artifacts.good.name, artifact_sha256=sha,
                         images=["not_there.jpg"], outputs={"logits": torch.zeros(1, 10).numpy()})
    with pytest.raises(UsageError, match="not_there.jpg"):
        verify_artifact(scan_artifacts.good, images=scan_artifacts.images, device_outputs=missing)
