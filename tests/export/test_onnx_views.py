"""A reshape of attention's transposed output, through the ONNX exporter (`contiguous_views`).

The pattern is transformers' Swin window attention: q / k / v as views of linears transposed to
(batch, heads, tokens, dim), a relative-position bias gathered from a table as the mask, and the
output transposed back and reshaped to (batch, tokens, channels)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeml.backends.ort.lowering import contiguous_views, lower_to_onnx
from edgeml.errors import LoweringError
from edgeml.export import capture


class WindowAttention(nn.Module):
    def __init__(self, dim: int = 96, heads: int = 3, tokens: int = 49) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn(169, heads))
        index = torch.randint(0, 169, (tokens * tokens,), generator=torch.Generator().manual_seed(0))
        self.register_buffer("index", index)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        shape = (b, n, self.heads, c // self.heads)
        q, k, v = (proj(x).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
        bias = self.table[self.index].view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.17)
        return out.transpose(1, 2).contiguous().reshape(b, n, -1)


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    return WindowAttention().eval(), torch.randn(4, 49, 96)


def test_torch_onnx_exporter_cannot_view_attention_output_upstream(model_and_input, tmp_path):
    # torch 2.13's exporter: the first decomposition round turns `.contiguous()` and `reshape` into
    # views against the fused attention's output strides, the second writes attention as its math,
    # whose output strides differ. When this stops failing, `contiguous_views` can go.
    model, x = model_and_input
    with pytest.raises(LoweringError, match="Cannot view a tensor"):
        lower_to_onnx(capture(model, (x,)), (x,), tmp_path / "plain.onnx", input_names=["x"], output_names=["y"])


def test_contiguous_views_keeps_the_function_and_exports(model_and_input, tmp_path):
    import onnxruntime as ort

    model, x = model_and_input
    exported = contiguous_views(capture(model, (x,)))
    nodes = [n for n in exported.graph.nodes if n.op == "call_function"]
    assert not any(n.target is torch.ops.aten.contiguous.default for n in nodes)
    for n in nodes:
        reshape = n.target in (torch.ops.aten.view.default, torch.ops.aten.reshape.default)
        if reshape and n.args[0].op == "call_function":
            assert n.args[0].target is torch.ops.aten.clone.default
            assert n.args[0].kwargs["memory_format"] == torch.contiguous_format
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(exported.module()(x), expected, rtol=0, atol=0)

    path = tmp_path / "fixed.onnx"
    lower_to_onnx(exported, (x,), path, input_names=["x"], output_names=["y"])
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-4, atol=1e-5)


class TinyWindowNet(nn.Module):
    """An image classifier around the pattern: 4x4 patches of a 28x28 image are one 7x7 window."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, 96, 4, stride=4)
        self.attention = WindowAttention()
        self.head = nn.Linear(96, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        return self.head(self.attention(tokens).mean(1))


def test_edgeml_export_to_onnx_takes_the_pattern(tmp_path):
    import json

    from edgeml.export import export

    torch.manual_seed(0)
    art = export(TinyWindowNet().eval(), format="onnx", input_shape=(1, 3, 28, 28), output_dir=tmp_path)
    manifest = json.loads(art.path.with_suffix(".json").read_text())
    assert manifest["parity"]["outputs"]["logits"]["image_sqnr_db"]["min"] > 60
