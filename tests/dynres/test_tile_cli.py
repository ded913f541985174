"""`edgeml tile IMAGE`: prints the grid, writes tiles on request, one-line errors."""
import numpy as np
from PIL import Image

from edgeml.cli import main


def _image(tmp_path, w, h, name="shot.png"):
    path = tmp_path / name
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    return path


def test_prints_grid_and_tile_count(tmp_path, capsys):
    path = _image(tmp_path, 1080, 2400)
    assert main(["tile", str(path), "--max-grid", "4"]) == 0
    out = capsys.readouterr().out
    assert "grid: 2x4" in out and "tiles: 8 + 1 thumbnail = 9" in out


def test_policies_and_alpha(tmp_path, capsys):
    path = _image(tmp_path, 800, 600)
    expected = {("relaxed", "0.1"): "2x2", ("llava_next", "0.1"): "3x2", ("internvl", "0.1"): "3x2",
                ("relaxed", "0"): "3x3"}
    for (policy, alpha), grid in expected.items():
        assert main(["tile", str(path), "--policy", policy, "--alpha", alpha]) == 0
        assert f"grid: {grid}" in capsys.readouterr().out
    assert main(["tile", str(_image(tmp_path, 380, 76, "wide.png")), "--policy", "internvl"]) == 0
    assert "grid: 5x1" in capsys.readouterr().out
    assert main(["tile", str(_image(tmp_path, 380, 76, "wide.png")), "--policy", "internvl",
                 "--max-tiles", "3"]) == 0
    assert "grid: 3x1" in capsys.readouterr().out


def test_writes_tiles(tmp_path, capsys):
    path = _image(tmp_path, 800, 600)
    out_dir = tmp_path / "tiles"
    assert main(["tile", str(path), "--out", str(out_dir)]) == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["thumbnail.png", "tile_r0_c0.png", "tile_r0_c1.png", "tile_r1_c0.png", "tile_r1_c1.png"]
    assert Image.open(out_dir / "tile_r1_c1.png").size == (384, 384)
    assert "wrote 5 PNGs" in capsys.readouterr().out


def test_not_an_image_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07garbage")
    assert main(["tile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeml tile: error:") and "not a readable image" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_options(tmp_path, capsys):
    path = _image(tmp_path, 100, 100)
    assert main(["tile", str(path), "--max-grid", "0"]) == 2
    assert "--max-grid" in capsys.readouterr().err
    assert main(["tile", str(path), "--alpha", "-1"]) == 2
    assert "alpha" in capsys.readouterr().err
