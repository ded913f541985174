"""The Haar DWT at odd sizes in a PT2E int8 .pte: it must load and run in ExecuTorch.

A zero pad before space-to-depth lowers to a quantized XNNPACK constant pad, which XNNPACK fails
to initialize (``xnn_status_invalid_parameter``): the whole int8 MobileMamba program would not
load. HaarDWT uses a stride-2 conv with padding at odd sizes instead.
"""
import torch
from torch import nn

from edgeml.backends.xnnpack.lowering import lower_to_pte
from edgeml.export import capture
from edgeml.models.layers.haar import HaarDWT
from edgeml.quantize import quantize_pt2e
from edgeml.runtime.metrics import sqnr_db
from edgeml.runtime.runners import runner_from_bytes


class _ConvHaarConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre, self.dwt, self.post = nn.Conv2d(8, 8, 1), HaarDWT(8), nn.Conv2d(32, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.dwt(self.pre(x)))


def test_int8_haar_at_odd_size_loads_and_runs():
    torch.manual_seed(0)
    model = _ConvHaarConv().eval()
    x = torch.randn(1, 8, 5, 3)
    quantized = quantize_pt2e(model, (x,), [torch.randn(1, 8, 5, 3) for _ in range(8)])
    data, delegation = lower_to_pte(capture(quantized, (x,)))
    assert not delegation.portable_ops
    out = runner_from_bytes(data, "pte").run([x])[0]
    with torch.no_grad():
        ref = model(x)
    assert out.shape == ref.shape == (1, 8, 3, 2)
    assert sqnr_db(ref, out) > 20
