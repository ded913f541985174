"""The Android demo's Python-side inputs stay true to edgeml.

The JVM tests of android_demo (run by .ci/android.sh) compare the app's Java preprocessing with
``preprocess_reference.bin`` and parse the manifest fixtures under
``android_demo/app/src/test/resources``. These tests check that those committed files are what
edgeml's current code produces and accepts, so a change in ``edgeml.images``, ``edgeml.dynres`` or
the manifest schema fails here rather than silently leaving the app tested against stale data.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "android_demo" / "app" / "src" / "test" / "resources"
TOOLS = REPO / "android_demo" / "tools"
IMAGES = REPO.parent / "shared" / "images"


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference_tool():
    return _load_tool("make_preprocess_reference")


def test_committed_reference_matches_edgeml_preprocessing(reference_tool):
    if not IMAGES.is_dir():
        pytest.skip(f"{IMAGES} (the shared photos) is not beside the repository")
    committed_header, committed = reference_tool.read(RESOURCES / "preprocess_reference.bin")
    header, payload = reference_tool.build(IMAGES)
    fresh = np.frombuffer(payload, dtype="<f4")
    assert committed_header == header, "rerun android_demo/tools/make_preprocess_reference.py"
    assert committed.shape == fresh.shape
    # Same code on the same photos; allow only float noise across torch builds.
    assert float(np.max(np.abs(committed - fresh))) <= 1e-6


def test_reference_round_trips_and_covers_crop_and_tiles(tmp_path, reference_tool):
    header = {"format": reference_tool.FORMAT, "cases": [{"name": "x", "shape": [1, 3, 2, 2], "offset": 0}]}
    values = np.arange(12, dtype="<f4")
    reference_tool.write(tmp_path / "r.bin", header, values.tobytes())
    got_header, got = reference_tool.read(tmp_path / "r.bin")
    assert got_header == header
    np.testing.assert_array_equal(got, values)

    committed_header, committed = reference_tool.read(RESOURCES / "preprocess_reference.bin")
    kinds = [c["kind"] for c in committed_header["cases"]]
    assert kinds.count("crop") >= 3 and kinds.count("tiles") >= 1
    end = max(c["offset"] + int(np.prod(c["shape"])) for c in committed_header["cases"])
    assert end == committed.size


def test_reference_tile_case_uses_edgeml_grid(reference_tool):
    from edgeml.dynres import candidate_grids, select_tile_grid

    header, _ = reference_tool.read(RESOURCES / "preprocess_reference.bin")
    for case in header["cases"]:
        if case["kind"] != "tiles":
            continue
        t = case["tiling"]
        w, h = case["size"]
        grid = select_tile_grid(w, h, tile=t["tile"], grids=candidate_grids(t["max_grid"]),
                                policy=t["policy"], alpha=t["alpha"])
        assert list(grid) == t["grid"]
        m, n = grid
        assert case["shape"] == [m * n + 1, 3, t["tile"], t["tile"]]


FIXTURES = ["mobilenetv2_xnnpack_int8.json", "bluelm_tile_encoder_b16_xnnpack_fp32.json"]


@pytest.mark.parametrize("name", FIXTURES)
def test_manifest_fixtures_follow_the_manifest_schema(name):
    from edgeml.images import Preprocessing
    from edgeml.manifest import Manifest

    doc = json.loads((RESOURCES / "manifests" / name).read_text(encoding="utf-8"))
    manifest = Manifest.from_dict(doc)
    pre = dict(manifest.preprocessing)
    tiling = pre.pop("tiling", None)
    Preprocessing.from_dict(pre)  # the keys the app reads are exactly edgeml's
    stem = Path(manifest.artifact["file"]).stem
    assert name == f"{stem}.json"
    if tiling is not None:
        assert set(tiling) >= {"tile", "policy", "alpha", "max_grid", "batch"}
        assert manifest.inputs[0].shape[0] == tiling["batch"]
    else:
        assert manifest.outputs[0].kind == "logits"
        assert manifest.model["config"]["labels"] == "imagenet-1k"


def test_imagenet_labels_asset_has_one_name_per_class():
    labels = (REPO / "android_demo" / "app" / "src" / "main" / "assets" / "labels" / "imagenet-1k.txt")
    names = labels.read_text(encoding="utf-8").splitlines()
    assert len(names) == 1000 and all(names)
    assert names[0] == "tench" and names[281] == "tabby"
