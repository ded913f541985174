"""--quantize fp16: half-precision programs for XNNPACK and ONNX Runtime, fp32 in and out."""
import json
import math

import pytest
import torch
from torch import nn

from edgeml.backends.xnnpack.passes.gelu import gelu_tanh_form as _gelu_tanh_form
from edgeml.cli import main
from edgeml.quantize.fp16 import (
    GELU_TANH_MAX_DEVIATION,
    fp16_scalar_operands,
    half_precision,
)
from edgeml.quantize.schemes import get_scheme


def _sqnr(ref: torch.Tensor, y: torch.Tensor) -> float:
    return 10 * math.log10(ref.pow(2).mean().item() / max((y - ref).pow(2).mean().item(), 1e-30))


def _run_pte(data: bytes, x: torch.Tensor) -> torch.Tensor:
    from executorch.runtime import Runtime

    return Runtime.get().load_program(data).load_method("forward").execute([x])[0]


class _GeluNet(nn.Module):
    """Conv, GELU, LayerNorm-free arithmetic with Python numbers, depthwise conv, pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        y = nn.functional.gelu(self.stem(x))
        y = self.dw(y * 0.5 + 1.0) - y / 4
        return self.head(y.mean((2, 3), keepdim=True).flatten(1))


def test_gelu_tanh_form_stays_within_its_stated_deviation():
    x = torch.linspace(-8, 8, 400_001, dtype=torch.float64)
    deviation = (_gelu_tanh_form(x) - nn.functional.gelu(x)).abs().max().item()
    assert 0.9 * GELU_TANH_MAX_DEVIATION < deviation <= GELU_TANH_MAX_DEVIATION
    assert torch.allclose(_gelu_tanh_form(x), nn.functional.gelu(x, approximate="tanh"), atol=1e-12)


def test_half_precision_keeps_fp32_io_and_leaves_the_model_alone():
    net = _GeluNet().eval()
    h = half_precision(net)
    x = torch.randn(2, 3, 8, 8)
    assert h(x).dtype == torch.float32 and next(net.parameters()).dtype == torch.float32
    assert all(p.dtype == torch.float16 for p in h.parameters())


def test_scalar_operands_become_fp16_constants():
    ep = torch.export.export(half_precision(_GeluNet()), (torch.randn(1, 3, 8, 8),))
    assert fp16_scalar_operands(ep.graph_module) == 3  # * 0.5, + 1.0, / 4
    for node in ep.graph.nodes:
        if node.op == "call_function" and node.target in (torch.ops.aten.mul.Tensor, torch.ops.aten.add.Tensor,
                                                          torch.ops.aten.div.Tensor):
            assert all(isinstance(a, torch.fx.Node) for a in node.args[:2])


def test_fp16_pte_runs_every_op_but_the_io_casts_in_xnnpack():
    from edgeml.backends import CompileSpec
    from edgeml.backends.xnnpack import XnnpackBackend

    torch.manual_seed(0)
    net, x = _GeluNet().eval(), torch.randn(1, 3, 8, 8)
    program = XnnpackBackend().compile(net, (x,), CompileSpec(scheme=get_scheme("fp16")))
    data, delegation = program.build()
    assert delegation["compute_share"] == 1.0
    # Only the input and output casts (XNNPACK's partitioner takes no dtype conversion).
    assert delegation["portable_ops"] == {"dim_order_ops__to_dim_order_copy_default": 2}
    y = _run_pte(data, x)
    assert y.dtype == torch.float32
    assert _sqnr(net(x), y) > 45


def test_fp16_convolution_weights_are_stored_in_fp16_with_the_same_outputs(monkeypatch):
    import edgeml.backends.xnnpack.lowering as pte

    class Half(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.dw = nn.Conv2d(32, 64, 3).half(), nn.Conv2d(64, 64, 3, groups=64).half()

        def forward(self, x):
            return self.dw(self.conv(x.half())).float()

    torch.manual_seed(0)
    net, x = Half().eval(), torch.randn(1, 32, 9, 9)
    fp16_data, _ = pte.lower_to_pte(torch.export.export(net, (x,)))
    with monkeypatch.context() as m:
        import contextlib

        m.setattr(pte, "fp16_conv_weights", contextlib.nullcontext)
        widened, _ = pte.lower_to_pte(torch.export.export(net, (x,)))
    weight_bytes = sum(p.numel() for p in net.parameters()) * 2
    assert len(widened) - len(fp16_data) > 0.9 * weight_bytes  # ExecuTorch alone writes them as fp32
    assert torch.equal(_run_pte(fp16_data, x), _run_pte(widened, x))


def test_fp32_programs_are_serialized_as_before(monkeypatch):
    import contextlib

    import edgeml.backends.xnnpack.lowering as pte

    torch.manual_seed(0)
    net, x = _GeluNet().eval(), torch.randn(1, 3, 8, 8)
    with_patch, _ = pte.lower_to_pte(torch.export.export(net, (x,)))
    with monkeypatch.context() as m:
        m.setattr(pte, "fp16_conv_weights", contextlib.nullcontext)
        without, _ = pte.lower_to_pte(torch.export.export(net, (x,)))
    assert with_patch == without


@pytest.mark.parametrize("fmt", ["pte", "onnx"])
def test_export_fp16_end_to_end(tmp_path, fmt):
    from edgeml.export import export

    fp16 = export("mobilenetv2", format=fmt, quantize="fp16", resolution=64, output_dir=tmp_path)
    fp32 = export("mobilenetv2", format=fmt, resolution=64, output_dir=tmp_path)
    assert fp16.path.name == f"mobilenetv2_r64_{'xnnpack' if fmt == 'pte' else 'ort'}_fp16.{fmt}"
    m = json.loads(fp16.manifest_path.read_text())
    assert m["quantization"]["scheme"] == "fp16"
    assert m["quantization"]["precision"]["weights"] == "float16"
    assert m["inputs"][0]["dtype"] == "float32" and m["outputs"][0]["dtype"] == "float32"
    assert m["parity"]["threshold_db"] == 30.0
    assert 30 < m["parity"]["worst_sqnr_db"] < 90  # fp16 rounding: above the threshold, below fp32's figures
    assert fp16.size_bytes < 0.55 * fp32.size_bytes
    assert not any("fp16" in n for n in fp32.notes) and "host_fp16_arithmetic" not in json.loads(
        fp32.manifest_path.read_text())["parity"]
    if fmt == "pte":
        assert m["delegation"]["compute_share"] == 1.0


@pytest.mark.parametrize("has_fp16", [False, True])
def test_fp16_parity_says_whether_the_host_computed_in_fp16(tmp_path, monkeypatch, has_fp16):
    """On a CPU without fp16 arithmetic the program's ops ran in fp32, so its parity overstates a
    phone's: the manifest records it and the export says so in a note."""
    from edgeml.export import export
    from edgeml.quantize import fp16 as fp16_module
    from edgeml.runtime.verify import format_report, verify_artifact

    monkeypatch.setattr(fp16_module, "host_fp16_arithmetic", lambda: has_fp16)
    art = export("mobilenetv2", format="pte", quantize="fp16", resolution=32, output_dir=tmp_path)
    assert json.loads(art.manifest_path.read_text())["parity"]["host_fp16_arithmetic"] is has_fp16
    assert (fp16_module.HOST_FP32_NOTE in art.notes) is not has_fp16
    # `edgeml verify` on this machine says the same.
    report = verify_artifact(art.path)
    assert report.parity["host_fp16_arithmetic"] is has_fp16
    assert (fp16_module.HOST_FP32_NOTE in format_report(report)) is not has_fp16


def test_host_fp16_arithmetic_reads_the_cpu_flags(tmp_path):
    from edgeml.quantize.fp16 import host_fp16_arithmetic

    cpuinfo = tmp_path / "cpuinfo"
    for flags, expected in (("flags\t: fpu sse avx512f avx512_vnni", False),
                            ("flags\t: fpu avx512f avx512_fp16", True),
                            ("Features\t: fp asimd asimdhp asimddp", True),
                            ("Features\t: fp asimd", False)):
        cpuinfo.write_text(f"processor\t: 0\n{flags}\n")
        assert host_fp16_arithmetic(cpuinfo) is expected
    assert host_fp16_arithmetic(tmp_path / "missing") is False


def test_fp16_usage_errors(capsys, tmp_path):
    from edgeml.errors import UsageError
    from edgeml.export import export

    with pytest.raises(UsageError, match="runs every layer in fp16"):
        export("mobilenetv2", quantize="fp16", resolution=64, keep_fp32=["features.0.0"], output_dir=tmp_path)
    with pytest.raises(UsageError, match="computes in fp16 and takes no calibration"):
        export("mobilenetv2", quantize="fp16", resolution=64, calibration_images=2, output_dir=tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["quantize-report", "mobilenetv2", "--quantize", "fp16"])
    assert exited.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
