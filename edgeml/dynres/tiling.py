"""Tile-grid selection and tiling for BlueLM-V-style dynamic resolution.

Follows BlueLM-V-3B (arXiv 2411.10640, Alg. 1 "relaxed aspect-ratio matching") and the two public
baselines it compares with: LLaVA-NeXT's ``select_best_resolution`` (anyres) and InternVL's
``dynamic_preprocess`` / ``find_closest_aspect_ratio``. Written from the paper and from reading
those functions; no code is taken from them.

A grid is ``(m, n)``: ``m`` tiles across, ``n`` tiles down, so a candidate covers
``W = tile * m`` by ``H = tile * n`` pixels. For an image of ``w0`` x ``h0`` pixels::

    scale     = min(W / w0, H / h0)                       # IEEE double
    effective = min(floor(w0 * scale) * floor(h0 * scale), w0 * h0)
    wasted    = W * H - effective

Policies (``best`` starts at 0, ``least`` at +infinity; an accepted candidate sets both):

* ``llava_next``: candidates in LLaVA-NeXT's ascending order (``m`` outer, ``n`` inner:
  1x1, 1x2, ..., 3x3); accept if ``effective > best``, or ``effective == best`` and
  ``wasted < least``.
* ``relaxed`` (BlueLM): candidates from the largest grid to the smallest, ordered by tile count
  ``m * n`` descending, then ``m`` descending, then ``n`` descending (3x3, 3x2, 2x3, 2x2, 3x1,
  1x3, 2x1, 1x2, 1x1). The paper only says "descending, 3:3 to 1:1"; this is our exact choice.
  Accept if ``effective - best > alpha * best``, or ``best - effective < alpha * best`` and
  ``wasted < least``. Enumerating downwards makes the smaller grid win a near tie. If no
  candidate is accepted (only possible when every effective resolution is 0, i.e. an image so
  thin that it rounds to zero pixels in every candidate), the grid with the fewest tiles (the
  last one enumerated) is returned.
* ``internvl``: candidates sorted by tile count ascending, then ``m`` ascending; pick the grid
  whose aspect ratio ``m / n`` is closest to ``w0 / h0``; on an exact tie take the later
  (larger) grid when ``w0 * h0 > 0.5 * tile * tile * m * n``. Its default candidates are
  InternVL's: every ``(m, n)`` with ``1 <= m * n <= max_tiles`` (6 by default), not ``m, n <= 3``.

The comparisons are written so that a Java implementation doing the same double arithmetic gets
the same grids (see ``edgeml.dynres.cases`` for the cases the Android app checks).

Tiling (``tile_image``): the image is resized keeping its aspect ratio to fit the ``W`` x ``H``
canvas, centred, padded with ``pad_value`` and cut into the ``m * n`` tiles in row-major order
(left to right, then top to bottom); a global thumbnail, the whole image stretched to
``tile`` x ``tile`` as LLaVA-NeXT and InternVL do (BlueLM does not say), comes last, so an image
gives ``m * n + 1`` tiles. Resizing uses the filter of ``edgeml.images`` (bilinear with
antialiasing on float32 pixels), then rounds half up to uint8.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgeml.errors import ImageError, UsageError
from edgeml.images import load_image, to_rgb8

POLICIES = ("relaxed", "llava_next", "internvl")
DEFAULT_TILE = 384
DEFAULT_MAX_GRID = 3
DEFAULT_ALPHA = 0.1
DEFAULT_INTERNVL_MAX_TILES = 6

Grid = tuple[int, int]
ImageLike = np.ndarray | Image.Image | str | Path


def candidate_grids(max_grid: int = DEFAULT_MAX_GRID) -> list[Grid]:
    """Every ``(m, n)`` with ``1 <= m, n <= max_grid``, in LLaVA-NeXT's order (m outer)."""
    _check_positive_int("max_grid", max_grid)
    return [(m, n) for m in range(1, max_grid + 1) for n in range(1, max_grid + 1)]


def internvl_grids(max_tiles: int = DEFAULT_INTERNVL_MAX_TILES, min_tiles: int = 1) -> list[Grid]:
    """InternVL's candidates: every ``(m, n)`` with ``min_tiles <= m * n <= max_tiles``."""
    _check_positive_int("max_tiles", max_tiles)
    _check_positive_int("min_tiles", min_tiles)
    if min_tiles > max_tiles:
        raise UsageError(f"min_tiles ({min_tiles}) is larger than max_tiles ({max_tiles})")
    grids = [(m, n) for m in range(1, max_tiles + 1) for n in range(1, max_tiles + 1)
             if min_tiles <= m * n <= max_tiles]
    return sorted(grids, key=lambda g: (g[0] * g[1], g[0]))


def resolution_fit(width: int, height: int, grid: Grid, tile: int = DEFAULT_TILE) -> tuple[int, int]:
    """``(effective, wasted)`` pixels of fitting a ``width`` x ``height`` image into ``grid``."""
    m, n = grid
    canvas_w, canvas_h = tile * m, tile * n
    scale = min(canvas_w / width, canvas_h / height)
    effective = min(int(width * scale) * int(height * scale), width * height)
    return effective, canvas_w * canvas_h - effective


def enumeration_order(grids: Iterable[Grid], policy: str) -> list[Grid]:
    """The candidates in the order ``policy`` visits them (duplicates removed)."""
    unique = sorted({(int(m), int(n)) for m, n in grids})
    if policy == "llava_next":
        return unique
    if policy == "relaxed":
        return sorted(unique, key=lambda g: (-g[0] * g[1], -g[0], -g[1]))
    if policy == "internvl":
        return sorted(unique, key=lambda g: (g[0] * g[1], g[0]))
    raise UsageError(f"unknown tiling policy {policy!r}; choose one of {', '.join(POLICIES)}")


def select_tile_grid(
    width: int,
    height: int,
    *,
    tile: int = DEFAULT_TILE,
    grids: Sequence[Grid] | None = None,
    policy: str = "relaxed",
    alpha: float = DEFAULT_ALPHA,
    max_tiles: int | None = None,
) -> Grid:
    """The ``(m, n)`` grid (tiles across, tiles down) for an image, by ``policy``.

    ``grids`` defaults to every ``(m, n)`` with ``m, n <= 3`` for ``relaxed`` and ``llava_next``
    and to InternVL's ``m * n <= max_tiles`` (default 6) for ``internvl``. ``max_tiles``, when
    given, also drops candidates with more tiles from an explicit or default list.
    """
    _check_positive_int("width", width)
    _check_positive_int("height", height)
    _check_positive_int("tile", tile)
    if policy not in POLICIES:
        raise UsageError(f"unknown tiling policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise UsageError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if max_tiles is not None:
        _check_positive_int("max_tiles", max_tiles)
    if grids is None:
        if policy == "internvl":
            grids = internvl_grids(max_tiles or DEFAULT_INTERNVL_MAX_TILES)
        else:
            grids = candidate_grids(DEFAULT_MAX_GRID)
    for g in grids:
        if len(g) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in g):
            raise UsageError(f"a grid is two positive integers (m, n), got {g!r}")
    if max_tiles is not None:
        grids = [g for g in grids if g[0] * g[1] <= max_tiles]
    order = enumeration_order(grids, policy)
    if not order:
        raise UsageError("no candidate grid left (check grids and max_tiles)")
    if policy == "llava_next":
        return _select_llava_next(width, height, order, tile)
    if policy == "relaxed":
        return _select_relaxed(width, height, order, tile, float(alpha))
    return _select_internvl(width, height, order, tile)


def _select_llava_next(width: int, height: int, order: list[Grid], tile: int) -> Grid:
    best, least, fit = 0, math.inf, order[0]
    for grid in order:
        effective, wasted = resolution_fit(width, height, grid, tile)
        if effective > best or (effective == best and wasted < least):
            best, least, fit = effective, wasted, grid
    return fit


def _select_relaxed(width: int, height: int, order: list[Grid], tile: int, alpha: float) -> Grid:
    best, least, fit = 0, math.inf, order[-1]
    for grid in order:
        effective, wasted = resolution_fit(width, height, grid, tile)
        gain = effective - best  # exact integer, compared with a double like Java's long -> double
        if gain > alpha * best or (-gain < alpha * best and wasted < least):
            best, least, fit = effective, wasted, grid
    return fit


def _select_internvl(width: int, height: int, order: list[Grid], tile: int) -> Grid:
    aspect = width / height
    area = width * height
    best_diff, fit = math.inf, order[0]
    for m, n in order:
        diff = abs(aspect - m / n)
        if diff < best_diff:
            best_diff, fit = diff, (m, n)
        elif diff == best_diff and area > 0.5 * tile * tile * m * n:
            fit = (m, n)
    return fit


@dataclass(frozen=True)
class TiledImage:
    """An image cut into a grid of tiles plus a global thumbnail."""

    grid: Grid
    tile: int
    tiles: np.ndarray  # (m * n, tile, tile, 3) uint8, row-major
    thumbnail: np.ndarray | None  # (tile, tile, 3) uint8
    content_box: tuple[int, int, int, int]  # (left, top, width, height) of the image in the canvas
    source_size: tuple[int, int]  # (width, height) of the original image

    @property
    def num_tiles(self) -> int:
        """Local tiles plus the thumbnail (BlueLM: m * n + 1)."""
        return len(self.tiles) + (self.thumbnail is not None)

    def all_tiles(self) -> np.ndarray:
        """(num_tiles, tile, tile, 3) uint8: the local tiles, then the thumbnail."""
        if self.thumbnail is None:
            return self.tiles
        return np.concatenate([self.tiles, self.thumbnail[None]], axis=0)

    def canvas(self) -> np.ndarray:
        """The padded (tile * n, tile * m, 3) canvas reassembled from the tiles."""
        m, n = self.grid
        t = self.tile
        return self.tiles.reshape(n, m, t, t, 3).transpose(0, 2, 1, 3, 4).reshape(n * t, m * t, 3)

    def to_tensor(self, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """(num_tiles, 3, tile, tile) float32, scaled by 1/255 and normalized."""
        x = torch.from_numpy(np.ascontiguousarray(self.all_tiles())).permute(0, 3, 1, 2).float()
        mean_t = torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1)
        std_t = torch.tensor([float(v) for v in std]).view(1, 3, 1, 1)
        return ((x / 255.0 - mean_t) / std_t).contiguous()


def as_rgb8(image: ImageLike) -> np.ndarray:
    """A path, a PIL image or an array -> (H, W, 3) uint8 RGB (ImageError if it is none)."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return to_rgb8(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(
                f"expected an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}; "
                "load files with edgeml.images.load_image"
            )
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ImageError(f"image has no pixels (shape {image.shape})")
        return image
    raise ImageError(f"cannot tile a {type(image).__name__}; pass a path, a PIL image or an array")


def tile_image(
    image: ImageLike,
    grid: Grid,
    tile: int = DEFAULT_TILE,
    *,
    pad_value: int = 0,
    thumbnail: bool = True,
) -> TiledImage:
    """Resize keeping the aspect ratio, pad to the grid's canvas, cut tiles, add the thumbnail."""
    rgb = as_rgb8(image)
    _check_positive_int("tile", tile)
    m, n = grid
    _check_positive_int("grid columns", m)
    _check_positive_int("grid rows", n)
    if not 0 <= pad_value <= 255:
        raise UsageError(f"pad_value must be in 0..255, got {pad_value}")
    h0, w0 = rgb.shape[:2]
    canvas_w, canvas_h = tile * m, tile * n
    scale = min(canvas_w / w0, canvas_h / h0)
    new_w = min(max(int(math.floor(w0 * scale + 0.5)), 1), canvas_w)
    new_h = min(max(int(math.floor(h0 * scale + 0.5)), 1), canvas_h)
    left, top = (canvas_w - new_w) // 2, (canvas_h - new_h) // 2
    canvas = np.full((canvas_h, canvas_w, 3), pad_value, dtype=np.uint8)
    canvas[top:top + new_h, left:left + new_w] = resize_rgb8(rgb, new_w, new_h)
    tiles = canvas.reshape(n, tile, m, tile, 3).transpose(0, 2, 1, 3, 4).reshape(m * n, tile, tile, 3)
    thumb = resize_rgb8(rgb, tile, tile) if thumbnail else None
    return TiledImage(grid=(m, n), tile=tile, tiles=np.ascontiguousarray(tiles), thumbnail=thumb,
                      content_box=(left, top, new_w, new_h), source_size=(w0, h0))


def resize_rgb8(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 with edgeml's resize filter, rounded half up."""
    if rgb.shape[:2] == (height, width):
        return rgb.copy()
    # np.require copies read-only arrays (PIL-backed), which torch.from_numpy warns about.
    x = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    y = torch.floor(y + 0.5).clamp_(0, 255).to(torch.uint8)
    return y[0].permute(1, 2, 0).contiguous().numpy()


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
