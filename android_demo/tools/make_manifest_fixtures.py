"""Write the manifest fixtures the Android app's JVM tests parse, built with edgeml's own classes.

    python android_demo/tools/make_manifest_fixtures.py [--out android_demo/app/src/test/resources/manifests]

The fixtures are what ``edgeml export`` writes for a classifier (mobilenetv2, static int8) and for
the BlueLM tile encoder (batch 4, relaxed tiling), built from the zoo's ModelConfig,
``Preprocessing`` and ``Manifest`` so they follow the real schema. The artifact fields (sha256,
size, delegation, parity) are placeholders since no program is exported here;
tests/test_android_preprocess.py checks that every fixture still loads with
``edgeml.manifest.Manifest.from_dict``, so a schema change shows up as a failing test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "android_demo" / "app" / "src" / "test" / "resources" / "manifests"


def fixtures() -> dict[str, dict]:
    from edgeml.images import Preprocessing
    from edgeml.manifest import FORMAT_VERSION, Manifest, TensorSpec
    from edgeml.models import get_model_config

    tools = {"python": "3.11", "edgeml": "0.1.0", "torch": "2.13.0", "executorch": "1.5.1"}
    out = {}

    cls_cfg = get_model_config("mobilenetv2")
    pre = Preprocessing.for_resolution(cls_cfg.resolution, cls_cfg.mean, cls_cfg.std, crop_fraction=0.875)
    res = cls_cfg.resolution
    out["mobilenetv2_xnnpack_int8.json"] = Manifest(
        artifact={"file": "mobilenetv2_xnnpack_int8.pte", "format": "pte", "backend": "xnnpack",
                  "sha256": "0" * 64, "size_bytes": 3_612_345},
        model={"name": cls_cfg.name, "config": cls_cfg.to_dict()},
        inputs=[TensorSpec(name="image", shape=[1, 3, res, res])],
        outputs=[TensorSpec(name="logits", shape=[1, cls_cfg.num_classes], layout="", kind="logits")],
        preprocessing=pre.to_dict(),
        quantization={"scheme": "int8_static_per_channel",
                      "calibration": {"images": 6, "source": "edgeml samples"}, "fp32_layers": []},
        delegation={"backend": "xnnpack", "delegated_nodes": 60, "total_nodes": 62, "share": 0.968,
                    "portable_ops": {"aten.mean.dim": 1}},
        parity={"reference": "pytorch-eager", "runtime": "executorch", "images": 6, "threshold_db": 20.0,
                "outputs": {"logits": {"sqnr_db": 31.2, "cosine": 0.9996, "max_abs": 0.41,
                                       "top1_agreement": 1.0}}},
        tools=tools, created="2026-01-01T00:00:00+00:00", format_version=FORMAT_VERSION,
    ).to_dict()

    enc_cfg = get_model_config("bluelm_tile_encoder_b16")
    tile = enc_cfg.resolution
    pre = Preprocessing.for_resolution(tile, enc_cfg.mean, enc_cfg.std).to_dict()
    pre["tiling"] = {"tile": tile, "policy": "relaxed", "alpha": 0.1, "max_grid": 3, "batch": 4}
    out["bluelm_tile_encoder_b16_xnnpack_fp32.json"] = Manifest(
        artifact={"file": "bluelm_tile_encoder_b16_xnnpack_fp32.pte", "format": "pte", "backend": "xnnpack",
                  "sha256": "0" * 64, "size_bytes": 360_000_000},
        model={"name": enc_cfg.name, "config": enc_cfg.to_dict()},
        inputs=[TensorSpec(name="tiles", shape=[4, 3, tile, tile])],
        outputs=[TensorSpec(name="tokens", shape=[4, 144, 2048], layout="", kind="tokens")],
        preprocessing=pre,
        quantization={"scheme": "fp32", "calibration": {}, "fp32_layers": []},
        delegation={}, parity={}, tools=tools, created="2026-01-01T00:00:00+00:00",
        format_version=FORMAT_VERSION,
    ).to_dict()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, doc in fixtures().items():
        (args.out / name).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
