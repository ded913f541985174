"""End to end for EfficientMod and FastViTHD: export, parity in the edge runtime, and the
share of the compute XNNPACK takes.

efficientmod_xxs goes through all four artifacts; FastViTHD (123M parameters) through .pte fp32 at
256, which is what the CI budget allows. The other EfficientMod variants, FastViTHD int8 and
FastViTHD at 512/768/1024 are measured by ``benchmarks/zoo.py`` and
``benchmarks/fastvithd_resolution.py`` (minutes each on two cores).

FastViTHD uses the zoo's random init, which goes through the training form (branches initialized,
BatchNorm statistics estimated on the sample images, then merged: see ``edgeml.models.fastvit``),
so its output depends on the image and the parity figure measures something.
"""
import pytest
import torch

from edgeml.export import DEFAULT_MIN_SQNR, export
from edgeml.images import Preprocessing, load_image, sample_images
from edgeml.manifest import read_manifest, sha256_file
from edgeml.models import get_model_config
from edgeml.runtime.runners import make_runner
from edgeml.runtime.verify import verify_artifact

BACKEND = {"pte": "xnnpack", "onnx": "ort"}
TAG = {"none": "fp32", "int8": "int8"}

# Measured on the 6 sample images (random init, seed 0); strict, so that a fix makes these fail
# and the marks get removed.
PTE_INT8_BELOW = [
    pytest.mark.xfail(strict=True, reason=(
        "efficientmod_xxs int8 .pte: 31.5 dB over all images but 24.2 dB on motorcycle_left "
        "(eager PT2E: 24.9, so not the lowering). The final LayerNorm and the classifier head "
        "cost it: quantizing either alone gives 28 dB on that image, keeping both in fp32 gives "
        "36.7 dB (the fp32 fallback)")),
    pytest.mark.slow(reason="efficientmod_xxs int8 .pte export (minutes), below threshold"),
]
ONNX_INT8_BELOW = pytest.mark.xfail(strict=True, reason=(
    "efficientmod_xxs int8 .onnx: 23.7 dB worst image with the 7-bit weight range (ORT's u8s8 "
    "kernels saturated on AVX2 without VNNI at full range: 3.3 dB). Below 25 dB for the same "
    "reason as the .pte: the final LayerNorm and the classifier head (the fp32 fallback is the "
    "fix: test_efficientmod_int8_mixed_precision, 25.7 dB with the head in fp32)"))

EFFICIENTMOD_CASES = [
    ("pte", "none"),
    pytest.param(("pte", "int8"), marks=PTE_INT8_BELOW),
    ("onnx", "none"),
    pytest.param(("onnx", "int8"), marks=ONNX_INT8_BELOW),
]


def _case_id(case) -> str:
    return f"{case[0]}-{case[1]}"


@pytest.fixture(scope="module")
def efficientmod(tmp_path_factory):
    """Exports an efficientmod_xxs artifact the first time a test asks for it (a skipped slow
    case costs nothing)."""
    out = tmp_path_factory.mktemp("efficientmod")
    cache = {}

    def get(fmt: str, quant: str):
        if (fmt, quant) not in cache:
            cache[fmt, quant] = export("efficientmod_xxs", format=fmt, quantize=quant, output_dir=out)
        return cache[fmt, quant]

    return get


def _read_checked(art, stem: str, fmt: str, quant: str):
    assert art.path.name == f"{stem}_{BACKEND[fmt]}_{TAG[quant]}.{fmt}"
    m = read_manifest(art.path)
    assert m.artifact["sha256"] == sha256_file(art.path) and m.quantization["scheme"] == quant
    return m


@pytest.mark.parametrize("case", EFFICIENTMOD_CASES, ids=_case_id)
def test_efficientmod_artifact_verifies(efficientmod, case):
    fmt, quant = case
    art = efficientmod(fmt, quant)
    m = _read_checked(art, "efficientmod_xxs", fmt, quant)
    assert m.inputs[0].shape == [1, 3, 224, 224] and m.outputs[0].shape == [1, 1000]
    report = verify_artifact(art.path)
    assert report.passed, report.parity["outputs"]
    logits = report.parity["outputs"]["logits"]
    if quant == "none":
        assert logits["sqnr_db"] >= DEFAULT_MIN_SQNR["none"] and logits["top1_agreement"] == 1.0
    else:
        assert DEFAULT_MIN_SQNR["int8"] <= logits["sqnr_db"] < 60 and logits["cosine"] > 0.99
        assert art.size_bytes < 0.35 * efficientmod(fmt, "none").size_bytes


@pytest.mark.parametrize("quant", ["none", pytest.param("int8", marks=PTE_INT8_BELOW[1])])
def test_efficientmod_pte_runs_entirely_in_xnnpack(efficientmod, quant):
    d = efficientmod("pte", quant).manifest.delegation
    # Without edgeml.backends.xnnpack.passes.layernorm / .modulation, 34 channel means, 6 token LayerNorms
    # and 6 context tiles stay on portable kernels (see those passes' tests).
    assert d["portable_ops"] == {}
    assert d["compute_share"] == 1.0 and d["share"] == 1.0
    # 83 convs/linears/bmms of the network, +5 fc1 chunks in each of the 6 ratio-6 blocks, +2
    # averaging convs/linears per LayerNorm (23), +2 parts for each of the 12 7x7 context
    # convolutions (a band and two dilated row pairs: passes/depthwise).
    assert d["compute_total"] == 83 + 6 * 5 + 2 * 23 + 2 * 12


@pytest.fixture(scope="module")
def fastvithd_256(tmp_path_factory):
    return export("fastvithd", format="pte", resolution=256, output_dir=tmp_path_factory.mktemp("fastvithd"))


def test_fastvithd_256_pte(fastvithd_256):
    art = fastvithd_256
    m = _read_checked(art, "fastvithd_r256", "pte", "none")
    assert m.inputs[0].shape == [1, 3, 256, 256] and m.outputs[0].shape == [1, 3072, 4, 4]
    assert m.model["kwargs"] == {"resolution": 256} and m.model["weights"] == {"source": "random-init", "seed": 0}
    d = m.delegation
    # The 12 channel means of the attention blocks' LayerNorms would stay portable without the pass.
    assert d["portable_ops"] == {} and d["compute_share"] == 1.0 and d["share"] == 1.0
    # Parity as export measured it: the serialized program in ExecuTorch vs eager on the 6
    # sample images (``edgeml verify`` runs the same measurement, exercised on efficientmod_xxs).
    assert m.parity["worst_sqnr_db"] >= DEFAULT_MIN_SQNR["none"]
    assert m.parity["outputs"]["embeddings"]["cosine"] > 0.9999


def test_fastvithd_random_init_output_depends_on_the_image(fastvithd_256):
    # The zoo's random init goes through the training form (BN statistics from the sample
    # images, then merged), so the program's output differs between images; merging fresh
    # branches directly gave the same output for every image to -60 dB, and no parity figure
    # measured on that would mean anything.
    cfg = get_model_config("fastvithd")
    pre = Preprocessing.for_resolution(256, cfg.mean, cfg.std)
    runner = make_runner(fastvithd_256.path)
    y = torch.cat([runner.run([pre(load_image(p))])[0] for p in sample_images()[:3]])
    assert (y - y.mean(0)).pow(2).mean() > 0.3 * y.pow(2).mean()


@pytest.mark.parametrize("fmt", [
    pytest.param("pte", marks=pytest.mark.slow(
        reason="efficientmod_xxs int8 .pte with the fp32 fallback search: 218 s on a quiet 2-core machine "
               "(the head kept in fp32, 25.5 dB)")),
    "onnx",  # 85 s with another job on the second core (the head's Gemm in fp32, 25.7 dB)
])
def test_efficientmod_int8_mixed_precision(fmt, tmp_path):
    # Plain int8 is below 25 dB on one image (strict xfails above); keeping the most sensitive
    # layers in fp32 until the edge runtime measures 25 dB is the product's answer
    # (`edgeml export efficientmod_xxs --quantize int8 --min-sqnr 25`).
    art = export("efficientmod_xxs", format=fmt, quantize="int8", min_sqnr=25, fp32_fallback=True,
                 output_dir=tmp_path)
    m = read_manifest(art.path)
    assert m.quantization["fp32_layers"]  # plain int8 measured below 25 dB, so something stays fp32
    assert m.quantization["layers"]["quantized"] > 0
    assert m.parity["worst_sqnr_db"] >= DEFAULT_MIN_SQNR["int8"]
    assert verify_artifact(art.path).passed
    if fmt == "pte":
        assert m.delegation["compute_share"] >= 0.95
