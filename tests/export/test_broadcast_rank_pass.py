"""Constants beside 4-D activations made 4-D (``passes/broadcast_rank.py``): XNNPACK then keeps the
elementwise ops channels-last, without transposing the activation around them.

The pattern: a convolution, then a per-channel scale of shape (C, 1, 1) (a layer scale, a channel
LayerNorm's affine), a number added (a norm's ``eps``), and another convolution."""
from __future__ import annotations

import json
import os
import tempfile

import torch
from torch import nn

from edgeml.backends.xnnpack.passes.broadcast_rank import rank_align_constant_operands


class ScaledConvs(nn.Module):
    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(channels, 1, 1) + 0.5)
        self.conv2 = nn.Conv2d(channels, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x) * self.scale + 1e-3)


def _activation_transposes(pte: bytes) -> int:
    """Transposes in the program's XNNPACK graph whose input another node computes."""
    import executorch.backends.xnnpack.serialization as serialization
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _flatc_decompile
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(pte)
    program = getattr(program, "program", program)
    schema = os.path.join(list(serialization.__path__)[0], "schema.fbs")
    count = 0
    for delegate in program.backend_delegate_data:
        data = delegate.data
        header = XNNHeader.from_bytes(data[:XNNHeader.EXPECTED_LENGTH])
        flat = data[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "g.bin"), "wb") as f:
                f.write(flat)
            _flatc_decompile(tmp, schema, os.path.join(tmp, "g.bin"))
            with open(os.path.join(tmp, "g.json")) as f:
                text = f.read()
        graph = json.loads(text.replace("-inf", "0").replace("inf", "0").replace("nan", "0"))
        produced = {n["xnode_union"].get("output_id") for n in graph["xnodes"]}
        count += sum(1 for n in graph["xnodes"] if n["xnode_union_type"] == "XNNStaticTranspose"
                     and n["xnode_union"]["input_id"] in produced)
    return count


def test_rank_align_keeps_the_function():
    torch.manual_seed(0)
    model, x = ScaledConvs().eval(), torch.randn(2, 3, 10, 12)
    exported = torch.export.export(model, (x,))
    signature = exported.graph_signature
    constants = {*signature.inputs_to_parameters, *signature.inputs_to_buffers}
    assert rank_align_constant_operands(exported.graph_module, constants) == 2  # the scale and the 1e-3
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=0, atol=0)
    ranks = [a.meta["val"].dim() for n in exported.graph.nodes if n.op == "call_function"
             and n.target in (torch.ops.aten.mul.Tensor, torch.ops.aten.add.Tensor) for a in n.args]
    assert ranks == [4, 4, 4, 4]


def test_only_constants_beside_computed_4d_values_change():
    class Mixed(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return (x * y) + (x[:, :, 0] + 2.0).sum() + torch.full((3, 1, 1), 2.0).double().sum().float()

    exported = torch.export.export(Mixed(), (torch.randn(1, 3, 4, 4), torch.randn(3, 1, 1)))
    # y is an input, not a constant; the 3-D add and the float64 ops are not touched.
    assert rank_align_constant_operands(exported.graph_module, set()) == 0


def test_export_keeps_the_scaled_activations_channels_last(tmp_path):
    from edgeml.backends.xnnpack.lowering import lower_to_pte
    from edgeml.export import export

    torch.manual_seed(0)
    model = ScaledConvs().eval()
    x = torch.randn(1, 3, 16, 16)
    plain, _ = lower_to_pte(torch.export.export(model, (x,)))
    # ExecuTorch alone: the activation goes to NCHW for the scale and the add, back to NHWC for
    # conv2, and conv2's output to NCHW for the program's output.
    assert _activation_transposes(plain) == 3
    art = export(model, input_shape=(1, 3, 16, 16), output_dir=tmp_path)
    assert _activation_transposes(art.path.read_bytes()) == 1  # the output's only
    manifest = json.loads(art.path.with_suffix(".json").read_text())
    assert next(iter(manifest["parity"]["outputs"].values()))["image_sqnr_db"]["min"] > 100


def test_int8_export_takes_the_pass(tmp_path):
    from edgeml.export import export

    torch.manual_seed(0)
    art = export(ScaledConvs().eval(), quantize="int8", input_shape=(1, 3, 16, 16), output_dir=tmp_path)
    manifest = json.loads(art.path.with_suffix(".json").read_text())
    assert next(iter(manifest["parity"]["outputs"].values()))["image_sqnr_db"]["min"] > 25
