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
    # SigLIP attention as slices + 3-D bmm: nothing of the block is left on portable kernels
    # (unbind + 4-D matmul left squeeze_copy and expand_copy there, splitting every block).
    assert art.manifest.delegation["portable_ops"] == {}, art.manifest.delegation
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


# Under dynamic H and W, what XNNPACK leaves to portable kernels in a FastViT: the symbolic
# reshapes of attention (flatten / transpose / unflatten around the heads, view_copy) and the qkv
# split (slice_copy), plus the shape arithmetic itself (sym_size, mul on SymInts). Every
# convolution, linear and matmul stays delegated; with static shapes nothing is left portable.
FASTVIT_DYNAMIC_PORTABLE = {"aten_view_copy_default", "aten_slice_copy_tensor", "sym_size", "mul"}


def test_fastvit_blocks_stay_in_xnnpack_under_dynamic_shapes():
    from edgeml.backends.xnnpack.lowering import lower_to_pte
    from edgeml.export import prepare_for_export
    from edgeml.models.fastvit import FastViT
    from edgeml.runtime.runners import runner_from_bytes

    # FastViTHD's block types and stage layout (stride 64) at a few thousand times less compute.
    model = FastViT((1, 1, 1, 1, 1), (32, 32, 64, 64, 64), ("repmixer",) * 3 + ("attention",) * 2,
                    (False, False, False, True, True), inference_mode=False).eval()
    example = (torch.rand(1, 3, 128, 128),)
    prepared = prepare_for_export(model, example, format="pte")
    h, w = torch.export.Dim("h_blocks", min=2, max=8), torch.export.Dim("w_blocks", min=2, max=8)
    exported = torch.export.export(prepared, example, dynamic_shapes=({2: 64 * h, 3: 64 * w},))
    data, delegation = lower_to_pte(exported)
    # 46 convs / linears / matmuls, +2 parts for each of its 11 7x7 depthwise convolutions (ConvFFN
    # and the patch embeddings' large kernels: XNNPACK's large-depthwise split, passes/depthwise).
    assert delegation.compute_share == 1.0 and delegation.compute_total == 46 + 2 * 11
    assert set(delegation.portable_ops) == FASTVIT_DYNAMIC_PORTABLE
    runner = runner_from_bytes(data, "pte")
    for size in ((128, 128), (192, 320), (512, 512)):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            ref = model(x)
        y = runner.run([x])[0]
        assert y.shape == (1, 128, size[0] // 64, size[1] // 64)
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


@pytest.mark.slow(reason="fastvithd (123M parameters) dynamic .pte export and verify at three sizes: "
                  "about 10 minutes on two shared cores")
def test_fastvithd_dynamic_resolution_pte(tmp_path):
    art = export("fastvithd", format="pte", resolution=256, dynamic_resolution=(256, 512), output_dir=tmp_path)
    assert art.path.name == "fastvithd_r256-512_xnnpack_fp32.pte"
    assert art.manifest.inputs[0].dynamic == {"2": [256, 512], "3": [256, 512]}
    assert set(art.manifest.parity["resolutions"]) == {"256", "512"}
    assert art.manifest.parity["worst_sqnr_db"] >= 60
    d = art.manifest.delegation
    assert d["compute_share"] == 1.0 and set(d["portable_ops"]) == FASTVIT_DYNAMIC_PORTABLE
    report = verify_artifact(art.path, resolution=384)  # a size between the traced ends
    assert report.passed and report.parity["outputs"]["embeddings"]["sqnr_db"] >= 60
