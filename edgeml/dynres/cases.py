"""Generate the tile-grid cases that the Android app's JVM tests check its selector against.

    python -m edgeml.dynres.cases --out android_demo/app/src/test/resources/tile_cases.json
    python -m edgeml.dynres.cases --check android_demo/app/src/test/resources/tile_cases.json

The grids are computed by ``edgeml.dynres.select_tile_grid`` (BlueLM-V relaxed matching and the
LLaVA-NeXT / InternVL baselines; see ``edgeml.dynres.tiling`` for the exact rules, enumeration
orders and arithmetic). tests/dynres/test_cases.py fails when the committed file and this
generator disagree.

Schema (UTF-8 JSON)::

    {
      "schema": "edgeml-tile-cases/1",
      "generator": "python -m edgeml.dynres.cases",
      "tile": 384,                        # tile size in pixels for every case
      "cases": [
        {
          "width": 1080, "height": 2400,  # image size in pixels (w0, h0)
          "policy": "relaxed",            # "relaxed" | "llava_next" | "internvl"
          "max_grid": 4,                  # candidates: all (m, n) with 1 <= m, n <= max_grid;
                                          # null: all (m, n) with 1 <= m * n <= max_tiles
          "max_tiles": null,              # if not null, candidates with m * n > max_tiles are dropped
          "alpha": 0.1,                   # relaxation; only "relaxed" uses it
          "grid": [2, 4],                 # expected (m, n): m tiles across, n tiles down
          "source": "phone screenshot"    # why the case is there (informational)
        }, ...
      ]
    }

The candidate set is passed to the selector as a set: each policy orders the candidates itself.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from edgeml.dynres.tiling import DEFAULT_TILE, candidate_grids, internvl_grids, select_tile_grid

SCHEMA = "edgeml-tile-cases/1"
DEFAULT_OUT = Path("android_demo/app/src/test/resources/tile_cases.json")

# BlueLM-V-3B Fig. 3/9 cases and an 800x600 image (tile 384, grids up to 3x3,
# InternVL at most 6 tiles).
ISSUE_TABLE = ((394, 390), (380, 393), (380, 76), (500, 102), (800, 600))
EDGE_SIZES = (
    (1, 1), (1, 10000), (10000, 1), (2, 1), (1, 2), (384, 384), (383, 384), (385, 384),
    (384, 383), (768, 384), (384, 768), (1152, 1152), (1152, 768), (1536, 1536), (4, 3000),
    (3000, 4), (20000, 20000), (100, 9000),
)
COMMON_SIZES = (
    (640, 480), (480, 640), (1280, 720), (1920, 1080), (1080, 1920), (2400, 1080), (1170, 2532),
    (3024, 4032), (4032, 3024), (512, 512), (224, 224), (600, 400), (1000, 872), (2048, 1536),
)


def _case(width: int, height: int, policy: str, *, max_grid: int | None, max_tiles: int | None,
          alpha: float, tile: int, source: str) -> dict[str, Any]:
    grids = candidate_grids(max_grid) if max_grid is not None else internvl_grids(max_tiles or 6)
    grid = select_tile_grid(width, height, tile=tile, grids=grids, policy=policy, alpha=alpha,
                            max_tiles=max_tiles)
    return {"width": width, "height": height, "policy": policy, "max_grid": max_grid,
            "max_tiles": max_tiles, "alpha": alpha, "grid": list(grid), "source": source}


def generate_cases(tile: int = DEFAULT_TILE) -> dict[str, Any]:
    """The full case file as a JSON-ready dict (deterministic)."""
    cases: list[dict[str, Any]] = []

    def all_policies(w: int, h: int, source: str, max_grid: int = 3) -> None:
        cases.append(_case(w, h, "llava_next", max_grid=max_grid, max_tiles=None, alpha=0.1, tile=tile,
                           source=source))
        cases.append(_case(w, h, "internvl", max_grid=None, max_tiles=6, alpha=0.1, tile=tile,
                           source=source))
        cases.append(_case(w, h, "relaxed", max_grid=max_grid, max_tiles=None, alpha=0.1, tile=tile,
                           source=source))

    for w, h in ISSUE_TABLE:
        all_policies(w, h, "issue table")
    cases.append(_case(1080, 2400, "relaxed", max_grid=4, max_tiles=None, alpha=0.1, tile=tile,
                       source="phone screenshot"))
    cases.append(_case(1080, 2400, "llava_next", max_grid=4, max_tiles=None, alpha=0.1, tile=tile,
                       source="phone screenshot"))
    cases.append(_case(1080, 2400, "internvl", max_grid=None, max_tiles=12, alpha=0.1, tile=tile,
                       source="phone screenshot"))
    for w, h in EDGE_SIZES:
        all_policies(w, h, "edge case")
    for w, h in COMMON_SIZES:
        all_policies(w, h, "common size")
        cases.append(_case(w, h, "relaxed", max_grid=4, max_tiles=None, alpha=0.1, tile=tile,
                           source="common size, grids up to 4x4"))
    rng = random.Random(2411_10640)
    for _ in range(36):
        w, h = rng.randint(16, 4096), rng.randint(16, 4096)
        all_policies(w, h, "varied size")
    # Other relaxations and limits, so a port cannot hard-wire alpha = 0.1 or ignore max_tiles.
    for w, h in ((394, 390), (800, 600), (1080, 2400), (500, 102), (1000, 872), (1300, 700)):
        for alpha in (0.0, 0.25, 0.5):
            cases.append(_case(w, h, "relaxed", max_grid=3, max_tiles=None, alpha=alpha, tile=tile,
                               source="other alpha"))
        cases.append(_case(w, h, "relaxed", max_grid=4, max_tiles=6, alpha=0.1, tile=tile,
                           source="max_tiles limit"))
        cases.append(_case(w, h, "llava_next", max_grid=4, max_tiles=6, alpha=0.1, tile=tile,
                           source="max_tiles limit"))
    return {"schema": SCHEMA, "generator": "python -m edgeml.dynres.cases", "tile": tile, "cases": cases}


def render(doc: dict[str, Any]) -> str:
    """The file's text: one case per line, so diffs show which cases changed."""
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "cases": [')
    body = [f"    {json.dumps(c)}" for c in doc["cases"]]
    lines.append(",\n".join(body))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeml.dynres.cases", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", type=Path, help=f"write the cases here (default {DEFAULT_OUT})")
    group.add_argument("--check", type=Path, help="exit 1 if this file differs from what would be generated")
    args = parser.parse_args(argv)
    doc = generate_cases()
    text = render(doc)
    if args.check is not None:
        if not args.check.is_file() or args.check.read_text(encoding="utf-8") != text:
            print(f"{args.check} is stale: rerun python -m edgeml.dynres.cases --out {args.check}",
                  file=sys.stderr)
            return 1
        print(f"{args.check} is up to date ({len(doc['cases'])} cases)")
        return 0
    out = args.out or DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)  # atomic: the app's tests never read a half-written file
    print(f"wrote {len(doc['cases'])} cases to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
