"""Reading images and turning them into model inputs, exactly as the manifest describes.

The preprocessing is specified so that another implementation (the Android app's Java code)
can reproduce it to 1e-5 after normalization:

1. decode, then convert to 8-bit RGB (grayscale is replicated, alpha is composited on black,
   palettes are expanded, 16-bit samples are scaled by 255/65535 and rounded);
2. resize with a separable triangle (bilinear) filter whose support widens by the
   downscaling factor (``torch.nn.functional.interpolate(mode="bilinear", antialias=True,
   align_corners=False)`` on float32 pixel values); the shorter side becomes
   ``resize_shorter`` and the longer side ``floor(long * resize_shorter / short + 0.5)``;
3. center crop to ``crop`` x ``crop``, offsets ``(size - crop) // 2``;
4. scale by 1/255, subtract mean, divide by std; NCHW float32.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from edgeml.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SAMPLE_IMAGES = Path(__file__).resolve().parent / "data" / "images"

# Guard against decompression bombs without rejecting large phone screenshots.
Image.MAX_IMAGE_PIXELS = 200_000_000


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file into an (H, W, 3) uint8 RGB array, or raise ImageError."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"image {path} does not exist or is not a file")
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path} is not a readable image ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(np.floor(a * (255.0 / top) + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        g = np.clip(np.floor(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float64)
        rgb = rgba[..., :3] * (rgba[..., 3:4] / 255.0)
        return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder (not recursive), sorted; ImageError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ImageError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def sample_images() -> list[Path]:
    """The small real photos shipped with edgeml (default calibration and verification set)."""
    return list_images(SAMPLE_IMAGES)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model's input tensor (recorded in the manifest)."""

    resize_shorter: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear-antialias"
    color: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0

    @classmethod
    def for_resolution(cls, resolution: int, mean: Sequence[float], std: Sequence[float],
                       crop_fraction: float = 1.0) -> Preprocessing:
        # crop_fraction 1.0 keeps as much of the image as possible; 0.875 is the timm/ImageNet
        # evaluation convention (resize 256, crop 224).
        return cls(resize_shorter=int(math.floor(resolution / crop_fraction + 0.5)), crop=resolution,
                   mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """From a manifest's ``preprocessing`` (its other keys, ``tiling`` and ``source``, describe
        the record rather than the transform and are ignored here)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, crop, crop) float32."""
        h, w = rgb.shape[:2]
        short, long_ = (w, h) if w <= h else (h, w)
        new_long = int(math.floor(long_ * self.resize_shorter / short + 0.5))
        new_w, new_h = (self.resize_shorter, new_long) if w <= h else (new_long, self.resize_shorter)
        x = torch.from_numpy(np.require(rgb, requirements=("C", "W"))).permute(2, 0, 1)[None].float()
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        if new_h < self.crop or new_w < self.crop:
            raise ImageError(f"image resized to {new_w}x{new_h} is smaller than the {self.crop} crop")
        top, left = (new_h - self.crop) // 2, (new_w - self.crop) // 2
        x = x[:, :, top:top + self.crop, left:left + self.crop]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x * self.scale - mean) / std).contiguous()


def iter_batches(
    paths: Sequence[Path], pre: Preprocessing, batch: int = 1
) -> Iterator[tuple[list[Path], torch.Tensor]]:
    """Yield (paths, NCHW batch) over image files."""
    for i in range(0, len(paths), batch):
        chunk = list(paths[i:i + batch])
        yield chunk, torch.cat([pre(load_image(p)) for p in chunk])
