"""Schemes, observers and calibration options: what each accepts, and one clear line where it cannot."""
import pytest
import torch
from torch import nn

from edgeml.backends.xnnpack.quantizer import xnnpack_quantizer
from edgeml.cli import main
from edgeml.errors import ImageError, UsageError
from edgeml.export import DEFAULT_MIN_SQNR, QUANT_TAGS, artifact_name
from edgeml.quantize import SCHEMES, calibration_images
from edgeml.quantize.schemes import (
    OBSERVERS,
    SCHEME_INFO,
    apply_8da4w,
    check_8da4w,
    get_scheme,
    resolve_observer,
)

MODEL, RES = "mobilenetv2", "64"


def _one_line_error(capsys, code, expected_code=2):
    assert code == expected_code
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1 and "error:" in lines[0], err
    return lines[0]


def test_every_scheme_is_named_described_and_has_a_threshold():
    assert set(SCHEMES) == set(SCHEME_INFO) == {"none", "int8", "int8-dynamic", "8da4w", "fp16"}
    assert QUANT_TAGS == {"none": "fp32", "int8": "int8", "int8-dynamic": "int8dyn", "8da4w": "8da4w",
                          "fp16": "fp16"}
    assert set(DEFAULT_MIN_SQNR) == set(SCHEMES)
    assert artifact_name("mobilenetv2", "pte", "8da4w", 224, 224) == "mobilenetv2_xnnpack_8da4w.pte"
    assert artifact_name("mobilenetv2", "onnx", "int8-dynamic", 64, 224) == "mobilenetv2_r64_ort_int8dyn.onnx"


def test_8da4w_is_pte_only():
    assert get_scheme("8da4w", "pte").name == "8da4w"
    with pytest.raises(UsageError, match="not available for .onnx.*int8 or int8-dynamic"):
        get_scheme("8da4w", "onnx")
    with pytest.raises(UsageError, match="unknown quantization 'int4'"):
        get_scheme("int4")


def test_observers_per_format():
    int8, dyn = SCHEME_INFO["int8"], SCHEME_INFO["int8-dynamic"]
    assert resolve_observer(int8, "pte", None) == "histogram"  # XNNPACKQuantizer's own default
    assert resolve_observer(int8, "onnx", None) == "minmax"  # ONNX Runtime's own default
    for fmt, names in OBSERVERS.items():
        for name in names:
            assert resolve_observer(int8, fmt, name) == name
    with pytest.raises(UsageError, match="not available for .pte; choose histogram, minmax"):
        resolve_observer(int8, "pte", "entropy")
    with pytest.raises(UsageError, match="takes no calibration"):
        resolve_observer(dyn, "pte", "minmax")
    assert resolve_observer(dyn, "onnx", None) is None


def test_the_observer_option_reaches_the_quantizer():
    from torchao.quantization.pt2e import MinMaxObserver, PlaceholderObserver

    from edgeml.quantize.observers import HistogramObserver

    def activation_observer(scheme, observer):
        config = xnnpack_quantizer(SCHEME_INFO[scheme], observer).global_config
        return config, config.input_activation.observer_or_fake_quant_ctr.p.func

    assert activation_observer("int8", "minmax")[1] is MinMaxObserver
    assert activation_observer("int8", "histogram")[1] is HistogramObserver
    dyn, observer = activation_observer("int8-dynamic", None)
    assert dyn.input_activation.is_dynamic and observer is PlaceholderObserver and dyn.output_activation is None


class _Head(nn.Module):
    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.body = nn.Linear(64, in_features)
        self.head = nn.Linear(in_features, 10)

    def forward(self, x):
        return self.head(self.body(x))


def test_8da4w_group_size_must_divide_in_features():
    assert check_8da4w(_Head(96), 32) == ["body", "head"]
    with pytest.raises(UsageError) as e:
        check_8da4w(_Head(100), 32, "toy")
    msg = str(e.value)
    assert "multiple of 32" in msg and "head (100)" in msg and "body" not in msg.split(":", 1)[1]
    assert "no supported group size fits every layer; use --quantize int8-dynamic" in msg
    with pytest.raises(UsageError, match="--group-size 32 fits every layer"):
        check_8da4w(_Head(96), 64, "toy")
    with pytest.raises(UsageError, match="has none; use --quantize int8"):
        check_8da4w(nn.Sequential(nn.Conv2d(3, 8, 3)), 32, "convnet")
    with pytest.raises(UsageError, match="--group-size 48"):
        check_8da4w(_Head(96), 48)


def test_8da4w_quantizes_linear_weights_to_int4_groups_and_can_exclude_layers():
    torch.manual_seed(0)
    model = _Head(128).eval()
    x = torch.randn(4, 64)
    ref = model(x)
    apply_8da4w(model, 32, exclude=["body"])
    assert isinstance(model.body.weight, nn.Parameter) and type(model.body.weight.data) is torch.Tensor
    assert type(model.head.weight).__name__ != "Parameter"  # a torchao tensor subclass
    qdata = model.head.weight.qdata
    assert qdata.min() >= -8 and qdata.max() <= 7  # int4 range
    err = (model(x) - ref).pow(2).sum() / ref.pow(2).sum()
    assert 1e-6 < err < 1e-2  # changed, but only by int4 rounding


def test_zero_calibration_images_is_an_error(capsys, tmp_path):
    with pytest.raises(ImageError, match="calibration set is empty"):
        calibration_images(None, 0)
    for cmd in (["export", MODEL, "--output-dir", str(tmp_path)], ["quantize-report", MODEL]):
        line = _one_line_error(capsys, main([*cmd, "--quantize", "int8", "--resolution", RES,
                                             "--calibration-images", "0"]))
        assert "calibration set is empty" in line
    assert not any(tmp_path.iterdir())


def test_options_that_contradict_each_other(capsys, tmp_path):
    out = ["--output-dir", str(tmp_path), "--resolution", RES]
    cases = [
        (["export", MODEL, "--quantize", "int8-dynamic", "--calibration-images", "2", *out], "takes no calibration"),
        (["export", MODEL, "--quantize", "int8-dynamic", "--observer", "minmax", *out], "takes no calibration"),
        (["export", MODEL, "--format", "onnx", "--quantize", "8da4w", *out], "not available for .onnx"),
        (["export", MODEL, "--quantize", "int8", "--observer", "entropy", *out], "choose histogram, minmax"),
        (["export", MODEL, "--keep-fp32", "features.0.0", *out], "nothing to keep in fp32"),
        (["export", MODEL, "--quantize", "int8", "--max-fp32-layers", "3", *out], "goes with --min-sqnr"),
        (["export", MODEL, "--quantize", "int8", "--min-sqnr", "30", "--keep-fp32", "features.0.0", *out],
         "does not combine"),
        (["quantize-report", MODEL, "--format", "onnx", "--quantize", "8da4w"], "not available for .onnx"),
    ]
    for argv, expected in cases:
        assert expected in _one_line_error(capsys, main(argv)), argv
    assert not any(tmp_path.iterdir())
