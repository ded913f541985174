"""Artifacts of the tiny selective-scan model, exported once per session for the runtime tests.

``scan_artifacts`` holds a correct .pte (with a 2-case bundled program beside it), one lowered
with a scan that runs backwards (a wrong decomposition), and a folder of 12 images.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import scan_tiny


@dataclass
class ScanArtifacts:
    good: Path
    wrong: Path
    images: Path


@pytest.fixture(scope="session")
def scan_artifacts(tmp_path_factory: pytest.TempPathFactory) -> ScanArtifacts:
    from edgeml.export import export
    from edgeml.images import sample_images

    scan_tiny.register()
    root = tmp_path_factory.mktemp("scan")
    good = export(scan_tiny.NAME, output_dir=root / "good", bundle=2).path
    with scan_tiny.wrong_decomposition():
        wrong = export(scan_tiny.NAME, output_dir=root / "wrong").path
    images = root / "images"
    images.mkdir()
    samples = sample_images()
    for i in range(12):  # more images than one batch, with names the report must carry
        src = samples[i % len(samples)]
        shutil.copy(src, images / f"img{i:02d}_{src.name}")
    return ScanArtifacts(good, wrong, images)
