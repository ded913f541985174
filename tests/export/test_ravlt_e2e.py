"""End to end for RAVLT-T at 64 x 64: .pte fp32 (the stage-1 and stage-2 RALA blocks go through
edgeml::linear_attention's decomposition) with every op in XNNPACK, .onnx fp32, int8 .pte with the
family's fp32 list, and a toy RAVLT with dynamic resolution.

The variants at 224 are measured by ``benchmarks/zoo_status.py`` and resolution sweeps by
``benchmarks/ravlt_resolution.py`` (minutes each on two cores).
"""
import pytest
import torch

from edgeml.export import DEFAULT_MIN_SQNR, export
from edgeml.manifest import read_manifest, sha256_file
from edgeml.runtime.verify import verify_artifact


@pytest.fixture(scope="module")
def pte_fp32(tmp_path_factory):
    return export("ravlt_t", format="pte", resolution=64, output_dir=tmp_path_factory.mktemp("ravlt"))


def test_ravlt_t_pte_fp32_verifies_entirely_in_xnnpack(pte_fp32):
    art = pte_fp32
    m = read_manifest(art.path)
    assert art.path.name == "ravlt_t_r64_xnnpack_fp32.pte" and m.artifact["sha256"] == sha256_file(art.path)
    assert m.inputs[0].shape == [1, 3, 64, 64] and m.outputs[0].shape == [1, 1000]
    d = m.delegation
    # ELU+1 as relu + exp, the key sum and normalizer as products, 3-D batched matmuls: nothing of
    # the RALA blocks is left to portable kernels (before: ELU, sums and 80 expand copies were).
    assert d["portable_ops"] == {} and d["share"] == 1.0 and d["compute_share"] == 1.0
    # 4 stem convs, 12 blocks x (pos, q, k, v, gate (the export form's split of qkvo), lepe, proj,
    # fc1, dw, fc2 and 2 LayerNorms x 2 averaging convs), 3 mergings, proj, head = 4 + 12 * 14 + 3
    # + 2 = 177, plus the attention matmuls: RALA 4 x (alpha bmm, 2 rotations, kv, key sum,
    # numerator, normalizer) = 28, softmax 8 x (2 rotations, scores, values) = 32.
    assert d["compute_total"] == 177 + 28 + 32
    report = verify_artifact(art.path)
    assert report.passed
    logits = report.parity["outputs"]["logits"]
    assert logits["sqnr_db"] >= DEFAULT_MIN_SQNR["none"] and logits["top1_agreement"] == 1.0


def test_program_runs_in_stock_executorch(pte_fp32):
    # No custom kernel in the program: stock ExecuTorch (XNNPACK + portable) loads and runs it.
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(pte_fp32.path.read_bytes())
    out = program.load_method("forward").execute([torch.randn(1, 3, 64, 64)])[0]
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("fmt", ["pte", "onnx"])
def test_a_small_ravlt_exports_with_dynamic_resolution(tmp_path, fmt):
    # The network's patterns at toy widths: RoPE built from the feature map's size, multi-head
    # RALA (edgeml::linear_attention) and softmax stages. Under dynamic shapes every convolution,
    # linear and matmul of the .pte stays in XNNPACK (head reshapes take an inferred size; the pair
    # rotation is a linear with no reshape around it), the ONNX exporter takes the RoPE positions
    # (no remainder by a symbolic size), and one program verifies across the range.
    from edgeml.models.ravlt import Ravlt, RavltSpec
    from edgeml.models.source import ModelOptions

    torch.manual_seed(0)
    model = Ravlt(RavltSpec((8, 16, 16, 16), (1, 1, 1, 1), (1, 2, 2, 2), (1, 1, 1, 1), projection=32),
                  num_classes=10).eval()
    art = export(model, format=fmt, input_shape=(1, 3, 64, 64), dynamic_resolution=(64, 128), output_dir=tmp_path,
                 model_options=ModelOptions(name="ravlt_small"))
    m = art.manifest
    assert m.inputs[0].dynamic == {"2": [64, 128], "3": [64, 128]}
    if fmt == "pte":
        assert m.delegation["compute_share"] == 1.0, m.delegation
    assert set(m.parity["resolutions"]) == {"64", "128"}
    assert min(m.parity["resolutions"].values()) >= DEFAULT_MIN_SQNR["none"]
    from edgeml.runtime.runners import make_runner

    runner = make_runner(art.path)
    for h, w in ((96, 64), (128, 96)):  # height and width vary independently
        x = torch.randn(1, 3, h, w)
        torch.testing.assert_close(runner.run([x])[0], model(x), rtol=1e-4, atol=1e-5)


def test_ravlt_t_onnx_fp32_and_pte_int8_with_the_family_keep_list(tmp_path):
    # .onnx: the op's ONNX-friendly decomposition, run by ONNX Runtime. int8 .pte: the committed
    # family list (patterns) verifies at the int8 threshold with every node in XNNPACK.
    from pathlib import Path

    from edgeml.commands import _layer_names

    onnx = export("ravlt_t", format="onnx", resolution=64, output_dir=tmp_path)
    assert onnx.path.suffix == ".onnx" and onnx.manifest.parity["worst_sqnr_db"] >= DEFAULT_MIN_SQNR["none"]
    keep = _layer_names("@" + str(Path(__file__).parents[2] / "benchmarks" / "ravlt_int8_fp32_layers.txt"))
    int8 = export("ravlt_t", quantize="int8", resolution=64, keep_fp32=keep, min_sqnr=DEFAULT_MIN_SQNR["int8"],
                  output_dir=tmp_path)
    q = int8.manifest.quantization
    # stem, mergings, projection, head; per block the positional conv and the 3 residual adds
    assert len(q["fp32_layers"]) == 4 + 3 + 1 + 1 + 12 * 4
    assert int8.manifest.delegation["portable_ops"] == {} and int8.manifest.delegation["compute_share"] == 1.0
