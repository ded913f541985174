"""Write the reference tensors that the Android app's JVM tests compare their Java preprocessing with.

    python android_demo/tools/make_preprocess_reference.py \
        --images ../shared/images --out android_demo/app/src/test/resources/preprocess_reference.bin

Every tensor is computed by edgeml itself (``edgeml.images.load_image`` + ``Preprocessing``, and
``edgeml.dynres.tile_image`` + ``TiledImage.to_tensor`` for the tile case) from real photos, so the
Java port (``org.edgeml.demo.core.Preprocessing`` / ``Tiler``) is checked against the code that
defines the contract, not against a copy of it.

File format (all integers little-endian)::

    bytes 0..7    magic b"EDGEMLPR"
    bytes 8..11   uint32 N, the length of the header
    next N bytes  UTF-8 JSON header:
                    {"format": "edgeml-preprocess-reference/1",
                     "generator": "android_demo/tools/make_preprocess_reference.py",
                     "cases": [{"name", "kind": "crop" | "tiles", "image": file name in the image folder,
                                "sha256": of that file, "size": [w, h],
                                "preprocessing": Preprocessing.to_dict()      (kind "crop")
                                "tiling": {"tile", "policy", "alpha", "max_grid", "grid": [m, n],
                                           "mean", "std", "pad_value", "thumbnail"}   (kind "tiles")
                                "shape": [N, 3, H, W], "offset": index of the first float32}, ...]}
    then          float32 little-endian values, NCHW, of every case, at its offset (in values)
                  from the start of this block
"""
from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from pathlib import Path

import numpy as np

MAGIC = b"EDGEMLPR"
FORMAT = "edgeml-preprocess-reference/1"
GENERATOR = "android_demo/tools/make_preprocess_reference.py"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_IMAGES = REPO.parent / "shared" / "images"
DEFAULT_OUT = REPO / "android_demo" / "app" / "src" / "test" / "resources" / "preprocess_reference.bin"

# (name, image, resize_shorter, crop, mean, std): a downscale with ImageNet statistics on a
# landscape photo, a stronger downscale with SigLIP statistics, and an upscale of a grayscale page.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
CROP_CASES = (
    ("motorcycle_imagenet_256_224", "motorcycle_left.png", 256, 224, IMAGENET_MEAN, IMAGENET_STD),
    ("chelsea_siglip_160_128", "chelsea.png", 160, 128, SIGLIP_MEAN, SIGLIP_STD),
    ("page_gray_upscale_256", "page.png", 256, 256, IMAGENET_MEAN, IMAGENET_STD),
)
# A small tile so the file stays small; the selection and tiling code paths are those of 384.
TILE_CASES = (("coffee_relaxed_tile64", "coffee.png", 64, "relaxed", 0.1, 3),)


def build(images: Path) -> tuple[dict, bytes]:
    from edgeml.images import Preprocessing, load_image

    cases, blocks, offset = [], [], 0
    for name, file, resize_shorter, crop, mean, std in CROP_CASES:
        path = images / file
        pre = Preprocessing(resize_shorter=resize_shorter, crop=crop, mean=mean, std=std)
        rgb = load_image(path)
        x = pre(rgb).numpy().astype("<f4")
        cases.append({"name": name, "kind": "crop", "image": file, "sha256": _sha256(path),
                      "size": [int(rgb.shape[1]), int(rgb.shape[0])], "preprocessing": pre.to_dict(),
                      "shape": list(x.shape), "offset": offset})
        blocks.append(x.tobytes())
        offset += x.size
    for name, file, tile, policy, alpha, max_grid in TILE_CASES:
        from edgeml.dynres import candidate_grids, select_tile_grid, tile_image

        path = images / file
        rgb = load_image(path)
        h, w = rgb.shape[:2]
        grid = select_tile_grid(w, h, tile=tile, grids=candidate_grids(max_grid), policy=policy, alpha=alpha)
        tiled = tile_image(rgb, grid, tile, pad_value=0, thumbnail=True)
        x = tiled.to_tensor(SIGLIP_MEAN, SIGLIP_STD).numpy().astype("<f4")
        cases.append({"name": name, "kind": "tiles", "image": file, "sha256": _sha256(path),
                      "size": [int(w), int(h)],
                      "tiling": {"tile": tile, "policy": policy, "alpha": alpha, "max_grid": max_grid,
                                 "grid": list(grid), "mean": list(SIGLIP_MEAN), "std": list(SIGLIP_STD),
                                 "pad_value": 0, "thumbnail": True},
                      "shape": list(x.shape), "offset": offset})
        blocks.append(x.tobytes())
        offset += x.size
    header = {"format": FORMAT, "generator": GENERATOR, "cases": cases}
    return header, b"".join(blocks)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(path: Path, header: dict, payload: bytes) -> None:
    head = json.dumps(header, indent=1).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(MAGIC + struct.pack("<I", len(head)) + head + payload)
    tmp.replace(path)


def read(path: Path) -> tuple[dict, np.ndarray]:
    """Header and the float32 payload of a reference file (used by tests/test_android_preprocess.py)."""
    data = path.read_bytes()
    if data[:8] != MAGIC:
        raise ValueError(f"{path} is not an edgeml preprocessing reference (bad magic)")
    (n,) = struct.unpack("<I", data[8:12])
    header = json.loads(data[12:12 + n].decode("utf-8"))
    return header, np.frombuffer(data[12 + n:], dtype="<f4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder with the photos")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reference file to write")
    args = parser.parse_args(argv)
    missing = [f for _, f, *_ in CROP_CASES + TILE_CASES if not (args.images / f).is_file()]
    if missing:
        print(f"error: {args.images} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    header, payload = build(args.images)
    write(args.out, header, payload)
    print(f"wrote {len(header['cases'])} cases, {len(payload) // 4} float32 values, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
