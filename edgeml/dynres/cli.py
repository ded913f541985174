"""``edgeml tile IMAGE``: show the tile grid BlueLM-V's relaxed matching (or a baseline) picks
for an image, and optionally write the tiles and the thumbnail as PNGs."""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from edgeml.dynres.tiling import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_GRID,
    DEFAULT_TILE,
    POLICIES,
    candidate_grids,
    select_tile_grid,
    tile_image,
)
from edgeml.errors import ImageError, UsageError
from edgeml.images import load_image


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tile",
        help="show the dynamic-resolution tile grid of an image (BlueLM-V relaxed matching)",
        description="Select the (m, n) tile grid of an image (m tiles across, n down) and "
        "optionally write the m*n tiles and the global thumbnail as PNGs.",
    )
    p.add_argument("image", type=Path, help="image file")
    p.add_argument("--policy", choices=POLICIES, default="relaxed",
                   help="grid selection rule (default: relaxed, BlueLM-V's)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size in pixels (default 384)")
    p.add_argument("--max-grid", type=int, default=None,
                   help=f"candidates are all m, n <= this (default {DEFAULT_MAX_GRID}; for internvl the "
                   "default candidates are all m*n <= --max-tiles instead)")
    p.add_argument("--max-tiles", type=int, default=None,
                   help="drop candidates with more tiles than this (internvl default 6)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="relaxation of the relaxed rule (default 0.1)")
    p.add_argument("--out", type=Path, default=None,
                   help="write tile_r<row>_c<col>.png and thumbnail.png into this folder")
    p.set_defaults(func=run_tile)


def run_tile(args: argparse.Namespace) -> int:
    if args.max_grid is not None and args.max_grid < 1:
        raise UsageError(f"--max-grid must be >= 1, got {args.max_grid}")
    if args.tile < 1:
        raise UsageError(f"--tile must be >= 1, got {args.tile}")
    rgb = load_image(args.image)
    h0, w0 = rgb.shape[:2]
    grids = None
    if args.max_grid is not None or args.policy != "internvl":
        grids = candidate_grids(args.max_grid or DEFAULT_MAX_GRID)
    grid = select_tile_grid(w0, h0, tile=args.tile, grids=grids, policy=args.policy, alpha=args.alpha,
                            max_tiles=args.max_tiles)
    m, n = grid
    rule = f"{args.policy} (alpha {args.alpha:g})" if args.policy == "relaxed" else args.policy
    print(f"image: {args.image} ({w0}x{h0})")
    print(f"policy: {rule}, tile {args.tile}")
    print(f"grid: {m}x{n} ({m} across, {n} down; canvas {m * args.tile}x{n * args.tile})")
    print(f"tiles: {m * n} + 1 thumbnail = {m * n + 1}")
    if args.out is not None:
        tiled = tile_image(rgb, grid, args.tile)
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            for i, pixels in enumerate(tiled.tiles):
                Image.fromarray(pixels).save(args.out / f"tile_r{i // m}_c{i % m}.png")
            Image.fromarray(tiled.thumbnail).save(args.out / "thumbnail.png")
        except OSError as e:
            raise ImageError(f"cannot write tiles to {args.out}: {e.strerror or e}") from None
        print(f"wrote {tiled.num_tiles} PNGs to {args.out}")
    return 0
