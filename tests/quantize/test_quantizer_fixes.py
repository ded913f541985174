"""int8 graphs the stock XNNPACKQuantizer breaks (edgeml/backends/xnnpack/annotate.py): a constant pad
between int8 ops keeps its input's quantization (without it XNNPACK refuses the pad node and the
program does not load), and integer index arithmetic stays integer."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeml.backends.xnnpack.lowering import lower_to_pte
from edgeml.backends.xnnpack.quantizer import Pt2eSession
from edgeml.errors import ArtifactError
from edgeml.quantize.schemes import SCHEME_INFO
from edgeml.runtime.metrics import sqnr_db
from edgeml.runtime.runners import runner_from_bytes


class PaddedStem(nn.Module):
    """BiT's stem: a conv, its output zero-padded for a max pool, a conv after."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3)

    def forward(self, x):
        return self.conv2(F.max_pool2d(F.pad(self.conv1(x), (1, 1, 1, 1)), 3, 2))


def _program(model: nn.Module) -> bytes:
    from edgeml.export import capture

    torch.manual_seed(0)
    calib = [torch.rand(1, 3, 16, 16) for _ in range(4)]
    session = Pt2eSession(model, (calib[0],), SCHEME_INFO["int8"], "minmax", calib)
    data, delegation = lower_to_pte(capture(session.quantized_module(), (calib[0],)))
    assert delegation.to_dict()["portable_ops"] == {}
    return data


def test_a_padded_int8_stem_loads_and_matches():
    torch.manual_seed(1)
    model = PaddedStem().eval()
    x = torch.rand(1, 3, 16, 16)
    out = runner_from_bytes(_program(model), "pte").run([x])[0]
    with torch.no_grad():
        assert sqnr_db(model(x), out) > 30


def test_without_the_annotation_xnnpack_refuses_the_pad(monkeypatch):
    """ExecuTorch 1.5.1's behaviour the annotation works around; when this fails, it can go."""
    import edgeml.backends.xnnpack.annotate as annotate

    monkeypatch.setattr(annotate, "annotate_pads", lambda gm: [])
    torch.manual_seed(1)
    data = _program(PaddedStem().eval())
    with pytest.raises(ArtifactError, match="cannot load"):
        runner_from_bytes(data, "pte")


class IndexedByArithmetic(nn.Module):
    """A gather whose indices are integer arithmetic on ``arange`` (Perceiver's mask lookup)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x).flatten(2)  # (1, 8, 256)
        rows = torch.arange(4, device=x.device) * 2 + 1
        return y[:, rows]


def test_integer_index_arithmetic_stays_integer():
    torch.manual_seed(1)
    model = IndexedByArithmetic().eval()
    x = torch.rand(1, 3, 16, 16)
    torch.manual_seed(0)
    session = Pt2eSession(model, (x,), SCHEME_INFO["int8"], "minmax", [torch.rand(1, 3, 16, 16) for _ in range(4)])
    with torch.no_grad():
        assert sqnr_db(model(x), session.quantized_module()(x)) > 30
