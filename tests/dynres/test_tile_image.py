"""tile_image: tiles cover the image, the thumbnail comes last, any image mode and size works."""
import numpy as np
import pytest
from goldens import IMAGES, require_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeml.dynres import candidate_grids, select_tile_grid, tile_image
from edgeml.dynres.tiling import resize_rgb8
from edgeml.errors import ImageError, UsageError
from edgeml.images import load_image


def _check_tiling(rgb: np.ndarray, grid, tile: int):
    m, n = grid
    h0, w0 = rgb.shape[:2]
    tiled = tile_image(rgb, grid, tile)
    assert tiled.tiles.shape == (m * n, tile, tile, 3) and tiled.tiles.dtype == np.uint8
    assert tiled.thumbnail.shape == (tile, tile, 3)
    assert tiled.num_tiles == m * n + 1 and len(tiled.all_tiles()) == m * n + 1
    left, top, w, h = tiled.content_box
    # the resized image lies inside the canvas, i.e. inside the union of the tiles
    assert 0 <= left and 0 <= top and left + w <= m * tile and top + h <= n * tile
    assert w >= 1 and h >= 1
    # it fills the canvas in at least one direction (up to rounding) and is centred
    assert w >= m * tile - 1 or h >= n * tile - 1
    assert abs((m * tile - w) - 2 * left) <= 1 and abs((n * tile - h) - 2 * top) <= 1
    # the aspect ratio is kept up to rounding of the two sides
    assert abs(w / h - w0 / h0) <= (w0 / h0) * (1 / h + 1 / w) + 1e-9 or min(w, h) == 1
    return tiled


def test_tiles_reassemble_the_canvas_and_cover_the_image_exactly_once():
    # A white image on black padding: the white pixels summed over all tiles are exactly the
    # resized image's area, so no pixel is lost or duplicated.
    rgb = np.full((300, 700, 3), 255, np.uint8)
    tiled = _check_tiling(rgb, (3, 2), 64)
    left, top, w, h = tiled.content_box
    assert (tiled.tiles == 255).all(axis=-1).sum() == w * h
    canvas = tiled.canvas()
    assert canvas.shape == (128, 192, 3)
    assert (canvas[top:top + h, left:left + w] == 255).all()
    canvas[top:top + h, left:left + w] = 0
    assert (canvas == 0).all()


def test_tiles_are_row_major():
    # A 2x2 canvas of four flat colours: tile i must hold quadrant (row i // 2, col i % 2).
    rgb = np.zeros((8, 8, 3), np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for i, c in enumerate(colours):
        r, col = divmod(i, 2)
        rgb[r * 4:(r + 1) * 4, col * 4:(col + 1) * 4] = c
    tiled = tile_image(rgb, (2, 2), tile=4)
    for i, c in enumerate(colours):
        assert (tiled.tiles[i] == c).all()


def test_real_photo(tmp_path):
    require_shared(IMAGES)
    rgb = load_image(IMAGES / "coffee.png")  # 600x400
    grid = select_tile_grid(rgb.shape[1], rgb.shape[0])
    assert grid == (2, 1)
    tiled = _check_tiling(rgb, grid, 384)
    assert tiled.content_box == (96, 0, 576, 384)  # scale 0.96, centred in 768x384
    np.testing.assert_array_equal(tiled.canvas()[:, 96:672], resize_rgb8(rgb, 576, 384))
    assert (tiled.canvas()[:, :96] == 0).all()
    x = tiled.to_tensor((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 3, 384, 384) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=st.integers(1, 3000), h=st.integers(1, 3000), max_grid=st.integers(1, 4),
       policy=st.sampled_from(["relaxed", "llava_next", "internvl"]))
def test_any_size_tiles_cleanly(w, h, max_grid, policy):
    tile = 32  # small tiles keep the property test fast; the code has no tile-size special case
    grids = candidate_grids(max_grid)
    grid = select_tile_grid(w, h, tile=tile, grids=grids, policy=policy)
    assert grid in grids
    rgb = np.random.default_rng(w * 7919 + h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    _check_tiling(rgb, grid, tile)


@pytest.mark.parametrize("w, h", [(1, 1), (1, 10000), (10000, 1), (2, 3)])
def test_degenerate_sizes_at_the_real_tile_size(w, h):
    rgb = np.full((h, w, 3), 200, np.uint8)
    grid = select_tile_grid(w, h)
    tiled = _check_tiling(rgb, grid, 384)
    assert (tiled.thumbnail == 200).all()


def _write(tmp_path, name, im: Image.Image, fmt="PNG"):
    path = tmp_path / name
    im.save(path, format=fmt)
    return path


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16", "1", "CMYK", "RGB"])
def test_image_modes_from_files(tmp_path, mode):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (50, 90, 3), dtype=np.uint8))
    if mode == "I;16":
        im = Image.fromarray((rng.integers(0, 65536, (50, 90))).astype(np.uint16))
    elif mode == "P":
        im = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        im = base.convert(mode)
    path = _write(tmp_path, f"img_{mode.replace(';', '')}.{'tif' if mode == 'CMYK' else 'png'}", im,
                  "TIFF" if mode == "CMYK" else "PNG")
    rgb = load_image(path)
    assert rgb.shape == (50, 90, 3) and rgb.dtype == np.uint8
    grid = select_tile_grid(90, 50, tile=32)
    tiled = _check_tiling(rgb, grid, 32)
    # a PIL image in that mode and the file give the same tiles
    np.testing.assert_array_equal(tile_image(Image.open(path), grid, 32).tiles, tiled.tiles)
    # and so does the path
    np.testing.assert_array_equal(tile_image(path, grid, 32).tiles, tiled.tiles)


def test_sixteen_bit_scaling(tmp_path):
    path = _write(tmp_path, "g16.png", Image.fromarray(np.full((4, 4), 65535, np.uint16)))
    assert (tile_image(path, (1, 1), 4).tiles == 255).all()


def test_grayscale_array_is_accepted():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tiled = tile_image(gray, (1, 1), 8)
    np.testing.assert_array_equal(tiled.tiles[0][..., 0], gray)
    np.testing.assert_array_equal(tiled.tiles[0][..., 2], gray)


@pytest.mark.parametrize("content", [b"", b"not an image at all\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_non_image_file_gives_a_clear_error(tmp_path, content):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="not a readable image"):
        tile_image(path, (1, 1))


def test_missing_file_and_bad_arrays():
    with pytest.raises(ImageError, match="does not exist"):
        tile_image("/nonexistent/image.png", (1, 1))
    with pytest.raises(ImageError, match="uint8"):
        tile_image(np.zeros((4, 4, 3), np.float32), (1, 1))
    with pytest.raises(ImageError, match="no pixels"):
        tile_image(np.zeros((0, 4, 3), np.uint8), (1, 1))
    with pytest.raises(ImageError, match="cannot tile"):
        tile_image(42, (1, 1))
    with pytest.raises(UsageError):
        tile_image(np.zeros((4, 4, 3), np.uint8), (0, 1))
