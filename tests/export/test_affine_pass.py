"""Per-channel scales and shifts folded into the neighbouring pointwise layer
(``export/passes/affine.py``): same function, fewer elementwise ops, and nothing folded where the
function would change."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgeml.export.passes.affine import fold_channel_affines
from edgeml.models.layers.norm import LayerNorm2d

aten = torch.ops.aten


class ModBlock(nn.Module):
    """EfficientMod's / ConvNeXt's shape: ``x + gamma * pw2(act(pw1(LN(x))))``, channels-first."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.norm = LayerNorm2d(c)
        self.pw1, self.pw2 = nn.Conv2d(c, 2 * c, 1), nn.Conv2d(2 * c, c, 1)
        self.side = nn.Conv2d(c, c, 1)  # a second reader of the norm's output
        self.gamma = nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        return x + self.gamma * self.pw2(torch.relu(self.pw1(n))) + self.side(n) * 0.5


class TokenBlock(nn.Module):
    """A pre-norm MLP on tokens, its norm written out (as XNNPACK's LayerNorm form is)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.rand(c) + 0.5), nn.Parameter(torch.randn(c))
        self.fc1, self.fc2 = nn.Linear(c, 3 * c), nn.Linear(3 * c, c)
        self.ls = nn.Parameter(torch.rand(c) + 0.5)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        n = (t - t.mean(-1, keepdim=True)) * self.weight + self.bias
        return t + self.fc2(torch.nn.functional.gelu(self.fc1(n))) * self.ls


def _net() -> nn.Module:
    """An RGB stem, then the block: what ``export`` takes."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ModBlock())


def _randomize(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def _elementwise(ep: torch.export.ExportedProgram) -> int:
    return sum(n.target in (aten.mul.Tensor, aten.add.Tensor) for n in ep.graph.nodes)


@pytest.mark.parametrize("model, shape, folded", [
    # norm affine into pw1 and side (2 readers, one fold), gamma into pw2, 0.5 into side
    (ModBlock, (2, 8, 5, 6), 3),
    # the norm's affine into fc1, the layer scale into fc2
    (TokenBlock, (2, 7, 8), 2),
])
def test_fold_keeps_the_function(model, shape, folded):
    torch.manual_seed(0)
    m, x = _randomize(model()), torch.randn(*shape)
    ep = torch.export.export(m, (x,))
    before = _elementwise(ep)
    assert fold_channel_affines(ep) == folded
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-5, atol=1e-5)
    assert _elementwise(ep) < before
    # The folded constants are gone from the program, its signature and its state.
    names = {s.target for s in ep.graph_signature.input_specs if s.target}
    assert not any(k.endswith(("gamma", "ls", "norm.weight", "norm.bias")) or k in ("weight", "bias")
                   for k in names)
    assert names <= set(ep.state_dict)
    # The eager model's parameters are not touched.
    with torch.no_grad():
        torch.testing.assert_close(torch.export.export(m, (x,)).module()(x), m(x), rtol=0, atol=0)


class NotFoldable(nn.Module):
    """Every case where folding would change the function or another reader."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.padded = nn.Conv2d(c, c, 1, padding=1)  # a shift does not commute with zero padding
        self.grouped = nn.Conv2d(c, c, 1, groups=2)
        self.k3 = nn.Conv2d(c, c, 3, padding=1)
        self.shared = nn.Conv2d(c, c, 1)
        self.s = nn.Parameter(torch.rand(c, 1, 1) + 0.5)
        self.b1, self.b2 = nn.Parameter(torch.randn(c, 1, 1)), nn.Parameter(torch.randn(c, 1, 1))
        self.spatial = nn.Parameter(torch.rand(1, 1, 6) + 0.5)  # varies along W, not channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.padded(x + self.b1)[..., 1:-1, 1:-1] + self.grouped(x * self.s) + self.k3(x + self.b2)
        z = self.shared(y)
        return z * self.spatial + z  # z has a second reader


def test_nothing_folds_where_the_function_would_change():
    torch.manual_seed(0)
    m, x = _randomize(NotFoldable()), torch.randn(1, 4, 6, 6)
    ep = torch.export.export(m, (x,))
    assert fold_channel_affines(ep) == 0
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x), rtol=0, atol=0)


@pytest.mark.parametrize("fmt", ["pte", "onnx"])
def test_export_takes_the_pass(tmp_path, fmt):
    from edgeml.export import export

    torch.manual_seed(0)
    art = export(_randomize(_net()), format=fmt, input_shape=(1, 3, 12, 12), output_dir=tmp_path)
    manifest = json.loads(art.path.with_suffix(".json").read_text())
    assert next(iter(manifest["parity"]["outputs"].values()))["image_sqnr_db"]["min"] > 100


def test_int8_export_folds_before_observing(tmp_path):
    from edgeml.backends.xnnpack.quantizer import Pt2eSession
    from edgeml.export import export
    from edgeml.quantize.schemes import get_scheme

    torch.manual_seed(0)
    m, x = _randomize(_net()), torch.randn(1, 3, 12, 12)
    session = Pt2eSession(m, (x,), get_scheme("int8"), None, [x])
    muls = [n for n in session.prepared.graph.nodes if n.target is aten.mul.Tensor]
    # Left: the norm's own product (centered * rsqrt); the affine, gamma and 0.5 are folded.
    assert len(muls) == 2  # centered * centered, centered * rsqrt
    art = export(m, quantize="int8", input_shape=(1, 3, 12, 12), output_dir=tmp_path)
    manifest = json.loads(art.path.with_suffix(".json").read_text())
    assert next(iter(manifest["parity"]["outputs"].values()))["image_sqnr_db"]["min"] > 25


class TinyScale(nn.Module):
    """ConvNeXt's init: a layer scale of 1e-6 after a pointwise layer, and a norm weight that small."""

    def __init__(self, c: int = 8, scale: float = 1e-6) -> None:
        super().__init__()
        self.pw, self.fc = nn.Conv2d(c, c, 1), nn.Linear(c, c)
        self.gamma = nn.Parameter(torch.full((c, 1, 1), scale))
        self.g = nn.Parameter(torch.full((c,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.gamma * self.pw(x)
        return self.fc(y.flatten(2).transpose(1, 2) * self.g)


@pytest.mark.parametrize("scale, folded", [(1e-6, 0), (1.0, 2)])
def test_folds_keep_weights_quantizable(scale, folded):
    """A fold must not push a channel's weights under the quantizer's smallest scale: 1e-6 times
    weights of ~0.3 is below one step of 2**-12 and would quantize to zero."""
    from edgeml.backends.xnnpack.quantizer import WEIGHT_SCALE_FLOOR

    torch.manual_seed(0)
    m, x = TinyScale(scale=scale).eval(), torch.randn(1, 8, 3, 3)
    assert fold_channel_affines(torch.export.export(m, (x,))) == 2  # a float program takes both
    ep = torch.export.export(m, (x,))
    assert fold_channel_affines(ep, min_weight_step=WEIGHT_SCALE_FLOOR) == folded
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-5, atol=1e-7)


def test_weight_scale_floor_is_the_quantizers():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    from edgeml.backends.xnnpack.quantizer import WEIGHT_SCALE_FLOOR

    ctr = get_symmetric_quantization_config(is_per_channel=True).weight.observer_or_fake_quant_ctr
    assert ctr().eps.item() == WEIGHT_SCALE_FLOOR
