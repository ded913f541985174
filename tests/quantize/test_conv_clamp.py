"""A conv or linear and the ReLU6 after it quantize as one op for XNNPACK: the output range is the
clamp's, not the conv's pre-activation range (edgeml/backends/xnnpack/annotate.py)."""
import torch
from torch import nn

from edgeml.backends.xnnpack.lowering import lower_to_pte
from edgeml.backends.xnnpack.quantizer import Pt2eSession
from edgeml.quantize.schemes import SCHEME_INFO
from edgeml.runtime.metrics import sqnr_db
from edgeml.runtime.runners import runner_from_bytes


class ReLU6Net(nn.Module):
    """conv -> ReLU6 twice, then a linear -> ReLU6; some channels sit far below zero before the clamp
    (a trained network's dead channels), which a range shared with the conv's output would cover."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)
        self.act = nn.ReLU6()
        with torch.no_grad():
            self.conv1.bias[:4] = -200.0
            self.conv2.bias[:4] = -200.0

    def forward(self, x):
        y = self.act(self.conv2(self.act(self.conv1(x))))
        return self.act(self.fc(self.pool(y).flatten(1) * 3))


def _quantized_sqnr(model: nn.Module, fuse: bool, monkeypatch) -> tuple[float, dict]:
    import edgeml.backends.xnnpack.annotate as annotate

    if not fuse:
        monkeypatch.setattr(annotate, "annotate_conv_clamp", lambda gm, config: [])
    torch.manual_seed(0)
    calib = [torch.rand(1, 3, 16, 16) for _ in range(4)]
    session = Pt2eSession(model, (calib[0],), SCHEME_INFO["int8"], "minmax", calib)
    from edgeml.export import capture

    data, delegation = lower_to_pte(capture(session.quantized_module(), (calib[0],)))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
    out = runner_from_bytes(data, "pte").run([x])[0]
    monkeypatch.undo()
    return sqnr_db(ref, out), delegation.to_dict()


def test_clamp_fused_into_its_conv_and_linear(monkeypatch):
    torch.manual_seed(1)
    model = ReLU6Net().eval()
    shared, _ = _quantized_sqnr(model, False, monkeypatch)
    fused, delegation = _quantized_sqnr(model, True, monkeypatch)
    assert fused >= 30 and fused > shared + 10, (shared, fused)
    assert delegation["portable_ops"] == {} and delegation["compute_share"] == 1.0


def test_dynamic_scheme_is_left_alone():
    from torch.export import export

    from edgeml.backends.xnnpack.annotate import annotate_conv_clamp
    from edgeml.backends.xnnpack.quantizer import xnnpack_quantizer

    gm = export(ReLU6Net().eval(), (torch.rand(1, 3, 8, 8),)).module()
    assert annotate_conv_clamp(gm, xnnpack_quantizer(SCHEME_INFO["int8-dynamic"], None).global_config) == []
    static = xnnpack_quantizer(SCHEME_INFO["int8"], "minmax").global_config
    assert len(annotate_conv_clamp(export(ReLU6Net().eval(), (torch.rand(1, 3, 8, 8),)).module(), static)) == 3
