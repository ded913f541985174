"""Running an image's tiles through a tile encoder in fixed-size batches, as BlueLM-V does.

BlueLM-V-3B (arXiv 2411.10640, §system design) encodes tiles on the phone's NPU in a fixed batch
of 4, with a batch-1 program for the remainder: a 2:4 image (8 tiles + 1 thumbnail) runs as
4 + 4 + 1. ``plan_batches`` computes that split; ``encode_image`` runs the whole host front end
(grid, tiles, normalization, batches) through any callable, e.g. an eager module or an
ExecuTorch/ONNX Runtime session wrapped in a function, and reports the latency of each batch.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgeml.dynres.tiling import (
    DEFAULT_ALPHA,
    DEFAULT_TILE,
    Grid,
    ImageLike,
    TiledImage,
    as_rgb8,
    select_tile_grid,
    tile_image,
)
from edgeml.errors import UsageError
from edgeml.models._registry import SIGLIP_MEAN, SIGLIP_STD


def plan_batches(n_tiles: int, batch: int = 4, *, sizes: Sequence[int] | None = None) -> list[int]:
    """Split ``n_tiles`` into encoder batches.

    Without ``sizes`` (a program with a dynamic batch dimension): full batches of ``batch`` and
    one smaller remainder, e.g. ``plan_batches(9) == [4, 4, 1]`` and ``plan_batches(7) == [4, 3]``.
    With ``sizes`` (the batch sizes of the fixed-batch programs that exist, e.g. ``(4, 1)``):
    the fewest batches, larger first, whose sizes sum to ``n_tiles``, e.g. 7 -> [4, 1, 1, 1];
    UsageError if the sizes cannot add up to it.
    """
    if isinstance(n_tiles, bool) or not isinstance(n_tiles, int) or n_tiles < 0:
        raise UsageError(f"n_tiles must be an integer >= 0, got {n_tiles!r}")
    if sizes is None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UsageError(f"batch must be a positive integer, got {batch!r}")
        full, rest = divmod(n_tiles, batch)
        return [batch] * full + ([rest] if rest else [])
    usable = sorted({int(s) for s in sizes}, reverse=True)
    if not usable or usable[-1] < 1:
        raise UsageError(f"batch sizes must be positive integers, got {list(sizes)!r}")
    # Fewest batches (coin change); n_tiles is a handful of tiles, so the table is tiny.
    fewest: list[list[int] | None] = [[]] + [None] * n_tiles
    for total in range(1, n_tiles + 1):
        for size in usable:
            prev = fewest[total - size] if size <= total else None
            if prev is not None and (fewest[total] is None or len(prev) + 1 < len(fewest[total])):
                fewest[total] = prev + [size]
    plan = fewest[n_tiles]
    if plan is None:
        raise UsageError(f"{n_tiles} tiles cannot be split into batches of sizes {usable}; "
                         "export a batch-1 program for the remainder")
    return sorted(plan, reverse=True)


@dataclass
class EncodedImage:
    """What the front end produced for one image."""

    grid: Grid
    tiled: TiledImage
    tokens: torch.Tensor  # (num_tiles, tokens_per_tile, width): the local tiles, then the thumbnail
    batches: list[int]
    latencies_s: list[float]  # wall time of each batch through the runner

    @property
    def num_tiles(self) -> int:
        return self.tiled.num_tiles


def encode_image(
    image: ImageLike,
    runner: Callable[[torch.Tensor], Any],
    *,
    tile: int = DEFAULT_TILE,
    policy: str = "relaxed",
    alpha: float = DEFAULT_ALPHA,
    grids: Sequence[Grid] | None = None,
    max_tiles: int | None = None,
    batch: int = 4,
    sizes: Sequence[int] | None = None,
    mean: Sequence[float] = SIGLIP_MEAN,
    std: Sequence[float] = SIGLIP_STD,
    thumbnail: bool = True,
) -> EncodedImage:
    """Select the grid, cut the tiles, run them through ``runner`` batch by batch.

    ``runner`` takes a (B, 3, tile, tile) float32 tensor and returns the tokens of those tiles as a
    tensor or array (or a one-element list of them, as ExecuTorch's runtime does) with B first.
    """
    rgb = as_rgb8(image)
    h0, w0 = rgb.shape[:2]
    grid = select_tile_grid(w0, h0, tile=tile, grids=grids, policy=policy, alpha=alpha,
                            max_tiles=max_tiles)
    tiled = tile_image(rgb, grid, tile, thumbnail=thumbnail)
    pixels = tiled.to_tensor(mean, std)
    plan = plan_batches(len(pixels), batch, sizes=sizes)
    outputs, latencies = [], []
    start = 0
    for size in plan:
        chunk = pixels[start:start + size].contiguous()
        t0 = time.perf_counter()
        out = runner(chunk)
        latencies.append(time.perf_counter() - t0)
        out = _as_tensor(out)
        if out.shape[0] != size:
            raise UsageError(f"the tile encoder returned batch {out.shape[0]} for an input batch of {size}; "
                             "was it exported for another batch size?")
        outputs.append(out)
        start += size
    return EncodedImage(grid=grid, tiled=tiled, tokens=torch.cat(outputs), batches=plan,
                        latencies_s=latencies)


def _as_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise UsageError(f"the tile encoder returned {len(out)} outputs; expected one (the tokens)")
        out = out[0]
    if isinstance(out, np.ndarray):
        return torch.from_numpy(out)
    if isinstance(out, torch.Tensor):
        return out.detach()
    raise UsageError(f"the tile encoder returned a {type(out).__name__}, not a tensor")
