"""BlueLM-V-style dynamic resolution (arXiv 2411.10640): tile-grid selection, tiling, batching.

* ``select_tile_grid`` picks the (m, n) grid by the relaxed aspect-ratio rule (or the LLaVA-NeXT
  and InternVL baselines), ``tile_image`` cuts the tiles and the global thumbnail;
* ``plan_batches`` / ``encode_image`` run the tiles through a fixed-batch tile encoder;
* the tile encoder itself (SigLIP trunk + token downsampler + projector) is in
  ``edgeml.models.vit``.
"""
from edgeml.dynres.encode import EncodedImage, encode_image, plan_batches
from edgeml.dynres.tiling import (
    POLICIES,
    TiledImage,
    candidate_grids,
    enumeration_order,
    internvl_grids,
    resolution_fit,
    select_tile_grid,
    tile_image,
)

__all__ = [
    "POLICIES",
    "EncodedImage",
    "TiledImage",
    "candidate_grids",
    "encode_image",
    "enumeration_order",
    "internvl_grids",
    "plan_batches",
    "resolution_fit",
    "select_tile_grid",
    "tile_image",
]
