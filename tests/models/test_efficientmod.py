"""EfficientMod: goldens from the original (channels-last) code, the published configurations,
checkpoint layout bridging, and the channels-first export with no permute in modulation blocks."""
import pytest
import torch
from goldens import load_golden

import edgeml
from edgeml.errors import CheckpointError
from edgeml.models._registry import count_params
from edgeml.models.efficientmod import (
    AttentionBlock,
    EfficientModBlock,
    efficientmod_s_conv,
    efficientmod_xxs,
    tile_channels,
)


@pytest.mark.parametrize("case", ["efficientmod_xxs", "efficientmod_xs", "efficientmod_s"])
def test_reproduces_original(case):
    golden = load_golden(case)
    zoo = golden.info["zoo"]
    model = edgeml.create_model(zoo["name"], checkpoint=golden.state_dict(), **zoo["kwargs"])
    assert count_params(model) == golden.info["params"]
    with torch.no_grad():
        y = model(golden.input)
    assert golden.relative_error(y) <= 1e-4


def test_s_conv_matches_published_size():
    # 12.87M measured from the original code (backbones.md §2; paper: 12.9M); no attention blocks.
    model = efficientmod_s_conv()
    assert round(count_params(model) / 1e6, 2) == 12.87
    assert not any(isinstance(m, AttentionBlock) for m in model.modules())
    assert sum(isinstance(m, EfficientModBlock) for m in model.modules()) == 4 + 4 + 12 + 8


def test_published_structure_of_xxs():
    model = efficientmod_xxs()
    ratios = [b.mlp.ratio for b in model.layers[2].blocks if isinstance(b, EfficientModBlock)]
    assert ratios == [1, 6, 1, 6, 1, 6]
    attn = [b.attn for layer in model.layers for b in layer.blocks if isinstance(b, AttentionBlock)]
    assert [(a.num_heads, a.head_dim) for a in attn] == [(8, 32)] * 3  # 1 in stage 3, 2 in stage 4


def test_tile_keeps_tile_order():
    x = torch.arange(3.0).view(1, 3, 1, 1)
    assert tile_channels(x, 2).flatten().tolist() == [0, 1, 2, 0, 1, 2]


def test_own_state_dict_reloads_and_transposed_weights_are_rejected():
    golden = load_golden("efficientmod_xxs")
    model = edgeml.create_model("efficientmod_xxs", checkpoint=golden.state_dict())
    own = model.state_dict()
    assert own["layers.0.blocks.1.mlp.fc1.weight"].shape == (192, 32, 1, 1)  # official: (192, 32)
    again = edgeml.create_model("efficientmod_xxs", checkpoint=own)
    assert all(torch.equal(t, again.state_dict()[k]) for k, t in own.items())
    # Only trailing singleton axes are bridged: a (32, 192) tensor is not silently reshaped.
    bad = golden.state_dict()
    bad["layers.0.blocks.1.mlp.fc1.weight"] = bad["layers.0.blocks.1.mlp.fc1.weight"].t().contiguous()
    with pytest.raises(CheckpointError, match="do not fit"):
        edgeml.create_model("efficientmod_xxs", checkpoint=bad)


def test_modulation_blocks_export_without_permutes():
    model = efficientmod_xxs().eval()
    x = torch.randn(1, 3, 224, 224)
    ep = torch.export.export(model, (x,)).run_decompositions()
    layout_ops = ("permute", "transpose", "aten.t.")

    def ops_inside(block_type):
        found = []
        for node in ep.graph.nodes:
            stack = node.meta.get("nn_module_stack", {})
            if node.op == "call_function" and any(block_type.__name__ in str(t) for _, t in stack.values()):
                found.append(str(node.target))
        return found

    modulation = ops_inside(EfficientModBlock)
    assert any("convolution" in op for op in modulation)  # the blocks were found at all
    assert not [op for op in modulation if any(s in op for s in layout_ops)]
    # The check can see a permute: the attention blocks (tokens, Linear) do have some.
    assert any(any(s in op for s in layout_ops) for op in ops_inside(AttentionBlock))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x), rtol=1e-4, atol=1e-5)
