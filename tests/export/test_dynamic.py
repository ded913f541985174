"""Dynamic resolution, fixed and dynamic batch, and the tile-encoder front end (`edgeml encode`)."""
import numpy as np
import pytest
import torch
from goldens import IMAGES, require_shared

import edgeml
from edgeml.cli import main
from edgeml.dynres import encode_image
from edgeml.errors import InputShapeError
from edgeml.export import export
from edgeml.runtime.runners import make_runner
from edgeml.runtime.verify import verify_artifact

RANGE = (64, 160)


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    out = tmp_path_factory.mktemp("dyn")
    return {fmt: export("mobilenetv2", format=fmt, resolution=96, dynamic_resolution=RANGE, output_dir=out)
            for fmt in ("pte", "onnx")}


@pytest.mark.parametrize("fmt", ["pte", "onnx"])
def test_one_program_for_a_range_of_resolutions(dynamic, fmt):
    art = dynamic[fmt]
    assert "_r64-160_" in art.path.name
    spec = art.manifest.inputs[0]
    assert spec.dynamic == {"2": list(RANGE), "3": list(RANGE)}
    # export measured parity at both ends of the range and at the default
    assert set(art.manifest.parity["resolutions"]) == {"64", "96", "160"}
    assert min(art.manifest.parity["resolutions"].values()) >= 60
    for r in (64, 128, 160):
        assert verify_artifact(art.path, resolution=r).passed
    runner = make_runner(art.path)
    out = runner.run([torch.randn(1, 3, 128, 96)])[0]  # height and width vary independently
    assert out.shape == (1, 1000)
    with pytest.raises(InputShapeError):
        verify_artifact(art.path, resolution=192)
    if fmt == "pte":
        # Under dynamic shapes every convolution still runs in XNNPACK.
        assert art.manifest.delegation["compute_share"] == 1.0


def test_dynamic_batch(tmp_path):
    art = export("mobilenetv2", resolution=64, batch=4, dynamic_batch=True, output_dir=tmp_path)
    assert art.path.name == "mobilenetv2_r64_bdyn4_xnnpack_fp32.pte"
    assert art.manifest.inputs[0].dynamic == {"0": [1, 4]} and art.manifest.inputs[0].shape[0] == 4
    runner = make_runner(art.path)
    model = edgeml.create_model("mobilenetv2")
    for b in (1, 3, 4):
        x = torch.randn(b, 3, 64, 64)
        torch.testing.assert_close(runner.run([x])[0], model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputShapeError):
        runner.check_inputs([torch.randn(5, 3, 64, 64)])


def test_encode_runs_the_tile_front_end(tmp_path, capsys):
    require_shared(IMAGES)
    kwargs = {"depth": 1, "llm_width": 64}
    art = export("bluelm_tile_encoder_b16", batch=4, model_kwargs=kwargs, output_dir=tmp_path)
    tiling = art.manifest.preprocessing["tiling"]
    assert tiling["policy"] == "relaxed" and tiling["batch"] == 4 and tiling["tile"] == 384
    assert art.manifest.inputs[0].shape == [4, 3, 384, 384]
    image = IMAGES / "coffee.png"  # 600 x 400
    tokens_file = tmp_path / "tokens.npy"
    assert main(["encode", str(image), "--artifact", str(art.path), "--tokens", str(tokens_file)]) == 0
    out = capsys.readouterr().out
    assert "grid 2x1 -> 3 tiles" in out and "batches [3]" in out
    tokens = np.load(tokens_file)
    # The same front end with the eager model gives the same tokens (the remainder batch was
    # padded to the program's batch of 4 and trimmed back).
    model = edgeml.create_model("bluelm_tile_encoder_b16", **kwargs)
    ref = encode_image(image, lambda x: model(x), batch=4).tokens
    assert tokens.shape == tuple(ref.shape) == (3, 144, 64)
    assert np.abs(tokens - ref.numpy()).max() <= 1e-4 * np.abs(ref.numpy()).max()
