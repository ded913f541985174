"""ONNX Runtime's static int8 recipe must not saturate on x86 CPUs without VNNI.

ORT's u8s8 integer kernels sum pairs of uint8 x int8 products in int16 (vpmaddubsw) on AVX2 /
AVX-512F CPUs without VNNI: two products of 255 x 127 overflow it. A 1x1 convolution over
non-negative inputs with positive weights hits that on every output. With full-range weights the
quantized model's error is then far above int8 rounding (on CPUs with VNNI it is not, and the
second assertion would pass with either range; the CI machine is AVX2-only).
"""
import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from edgeml.backends.ort.lowering import lower_to_onnx
from edgeml.backends.ort.quantizer import OrtSession
from edgeml.quantize.schemes import SCHEME_INFO
from edgeml.runtime.metrics import sqnr_db


def test_static_int8_onnx_keeps_int8_accuracy_where_u8s8_saturates(tmp_path):
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 8, 1, bias=False)
    with torch.no_grad():
        conv.weight.uniform_(0.5, 1.0)
    model = nn.Sequential(conv).eval()
    calib = [torch.rand(1, 32, 8, 8) for _ in range(4)]
    fp32 = tmp_path / "conv.onnx"
    lower_to_onnx(model, (calib[0],), fp32, input_names=["image"], output_names=["out"])
    session = OrtSession(fp32, "image", SCHEME_INFO["int8"], "minmax", calib, tmp_path)
    q = tmp_path / "conv.int8.onnx"
    q.write_bytes(session.quantized_onnx())
    runner = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 32, 8, 8)
    y = torch.from_numpy(runner.run(None, {"image": x.numpy()})[0])
    with torch.no_grad():
        ref = model(x)
    # On the AVX2-only CI machine: 21.6 dB with full-range int8 weights (saturated int16 sums),
    # above 30 dB with the 7-bit range edgeml uses (ORT_REDUCE_RANGE).
    assert sqnr_db(y, ref) > 30, float(sqnr_db(y, ref))
    assert np.isfinite(y.numpy()).all()
