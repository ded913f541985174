"""int8-dynamic's simulation rounds as XNNPACK does: one range per token for a linear's input.

The converted Q/DQ graph (convert_pt2e, eager) takes one range per tensor; the lowered program
takes one per row. A sequence whose first token is far smaller than the others (a class token, a
register, a latent) separates the two: per tensor, that token is rounded to a handful of steps."""
import torch
from torch import nn

from edgeml.backends.xnnpack.lowering import lower_to_pte
from edgeml.backends.xnnpack.quantizer import Pt2eSession
from edgeml.export import capture
from edgeml.quantize.schemes import SCHEME_INFO
from edgeml.runtime.metrics import sqnr_db
from edgeml.runtime.runners import runner_from_bytes


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 128, bias=False), nn.Linear(128, 10, bias=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))[:, 0]  # the first token's output, as a class token's


def test_dynamic_simulation_is_per_token_like_the_xnnpack_program():
    torch.manual_seed(0)
    model = Tokens().eval()
    x = torch.randn(1, 50, 64)
    x[:, 0] *= 0.01  # the first token 100x smaller than the rest
    session = Pt2eSession(model, (x,), SCHEME_INFO["int8-dynamic"], None, [])
    data, _ = lower_to_pte(capture(session.quantized_module(), (x,)))
    ran = runner_from_bytes(data, "pte").run([x])[0]
    simulated = session.simulate(session.names, [x])[0][0]
    with torch.no_grad():
        exact = model(x)
        per_tensor = session.quantized_module()(x)
    assert sqnr_db(exact, ran) > 35  # measured 44 dB: per token, the small token keeps int8's precision
    assert sqnr_db(ran, simulated) > 60  # measured 134 dB: and the simulation rounds the same values the same way
    assert sqnr_db(exact, per_tensor) < 15  # measured 3 dB: one range for the tensor is what the simulation must not do


class SharedInput(nn.Module):
    """Three linears reading one tensor, as an attention's q / k / v do."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(64, 32), nn.Linear(64, 32), nn.Linear(64, 32)

    def forward(self, x):
        return self.q(x) + self.k(x) * self.v(x)


def test_an_fp32_linear_beside_dynamic_ones_reads_the_fp32_tensor():
    torch.manual_seed(0)
    model = SharedInput().eval()
    x = torch.randn(1, 50, 64)
    session = Pt2eSession(model, (x,), SCHEME_INFO["int8-dynamic"], None, [])
    assert session.names == ["q", "k", "v"]
    with torch.no_grad():
        exact = model(x)
    for kept in (["q"], ["k", "v"]):
        data, delegation = lower_to_pte(capture(session.quantized_module(kept), (x,)))
        assert delegation.to_dict()["portable_ops"] == {}  # was: a dynamic dequantize with no kernel
        ran = runner_from_bytes(data, "pte").run([x])[0]
        simulated = session.simulate([n for n in session.names if n not in kept], [x])[0][0]
        assert sqnr_db(ran, simulated) > 60
        assert sqnr_db(exact, ran) > 30
    # keeping every layer in fp32 is the fp32 function
    assert sqnr_db(exact, session.simulate([], [x])[0][0]) > 100


class LearnedQueries(nn.Module):
    """Learned latents cross-attending to the input, as a Perceiver's (or a DETR's queries) do: the
    queries' projection reads parameters only."""

    def __init__(self) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, 8, 64))
        self.q, self.kv, self.out = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        attention = torch.softmax(self.q(self.latents) @ self.kv(x).transpose(1, 2) / 8.0, dim=-1)
        return self.out(attention @ x)


def test_a_layer_on_constants_stays_fp32_and_folds():
    from edgeml.export.pipeline import quantization_record

    torch.manual_seed(0)
    model = LearnedQueries().eval()
    x = torch.randn(1, 50, 64)
    for scheme, calibration in (("int8-dynamic", []), ("int8", [x])):
        session = Pt2eSession(model, (x,), SCHEME_INFO[scheme], "minmax" if calibration else None, calibration)
        assert session.constant_fp32 == ("q",) and "q" not in session.names and {"kv", "out"} <= set(session.names)
        record = quantization_record(SCHEME_INFO[scheme], None, [], None, session, [], None, 32)
        assert record["constant_layers"]["layers"] == ["q"]
        # lowers (was: "Missing out variants", a dequantize of the folded constant XNNPACK did not take)
        data, delegation = lower_to_pte(capture(session.quantized_module(), (x,)))
        assert not [op for op in delegation.to_dict()["portable_ops"] if "quantize" in op or "qparams" in op]
        with torch.no_grad():
            assert sqnr_db(model(x), runner_from_bytes(data, "pte").run([x])[0]) > 25
