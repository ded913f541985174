"""SigLIP trunks (timm keys, golden), the 2x2 token downsampler and the BlueLM tile encoder."""
import numpy as np
import pytest
import torch
from goldens import load_golden

import edgeml
from edgeml.dynres import encode_image
from edgeml.errors import CheckpointError, InputShapeError
from edgeml.models import get_model_config
from edgeml.models.vit import TokenDownsampler

# Key-matching checks load real tensors into meta-device models on purpose (no weights needed).
pytestmark = pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")


@pytest.fixture(scope="module")
def b16_golden():
    return load_golden("siglip_b16_384")


@pytest.fixture(scope="module")
def b16_state(b16_golden):
    # Filling 93M golden weights takes seconds: do it once. Tests copy the dict, never the tensors.
    return b16_golden.state_dict()


def test_siglip_b16_golden_reproduces(b16_golden, b16_state):
    state = dict(b16_state)
    assert any(k.startswith("attn_pool.") for k in state)  # timm's head is in the checkpoint...
    model = edgeml.create_model("siglip_b16_384", checkpoint=state)
    assert not any(k.startswith("attn_pool.") for k in model.state_dict())  # ...and not in the trunk
    with torch.no_grad():
        y = model(b16_golden.input)
    assert y.shape == (1, 576, 768)
    assert b16_golden.relative_error(y) <= 1e-4


def test_b16_keys_are_timms_without_the_head(b16_golden):
    with torch.device("meta"):
        model = edgeml.create_model("siglip_b16_384")
    expected = {k: tuple(s) for k, s in b16_golden.info["keys"].items() if not k.startswith("attn_pool.")}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_checkpoint_without_head_loads_and_wrong_one_fails(b16_state):
    # Key matching only, so the models live on the meta device (no weights materialized).
    state = {k: v for k, v in b16_state.items() if not k.startswith("attn_pool.")}
    with torch.device("meta"):
        edgeml.create_model("siglip_b16_384", checkpoint=state)
        del state["blocks.11.mlp.fc2.bias"]
        with pytest.raises(CheckpointError, match="missing"):
            edgeml.create_model("siglip_b16_384", checkpoint=state)
        with pytest.raises(CheckpointError, match="does not match"):
            edgeml.create_model("siglip_so400m_384", checkpoint=b16_state)
        with pytest.raises(CheckpointError, match="do not fit"):
            edgeml.create_model("siglip_b16_384", checkpoint={
                **b16_state, "pos_embed": torch.zeros(1, 577, 768)})


def test_so400m_architecture_on_meta_device():
    with torch.device("meta"):
        model = edgeml.create_model("siglip_so400m_384")
        y = model(torch.empty(2, 3, 384, 384))
    assert y.shape == (2, 729, 1152)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["patch_embed.proj.weight"] == (1152, 3, 14, 14)
    assert shapes["pos_embed"] == (1, 729, 1152)
    assert shapes["blocks.26.attn.qkv.weight"] == (3456, 1152)
    assert shapes["blocks.26.mlp.fc1.weight"] == (4304, 1152)
    assert "blocks.27.norm1.weight" not in shapes and shapes["norm.weight"] == (1152,)
    assert model.blocks[0].attn.num_heads == 16
    assert 400e6 < sum(v.numel() for v in model.state_dict().values()) < 420e6


def test_configs():
    cfg = get_model_config("siglip_so400m_384")
    assert (cfg.resolution, cfg.output, cfg.mean, cfg.std) == (384, "tokens", (0.5,) * 3, (0.5,) * 3)
    assert cfg.extra["tokens"] == 729 and cfg.extra["patch_size"] == 14
    enc = get_model_config("bluelm_tile_encoder_so400m")
    assert enc.output == "tokens" and enc.extra["tokens_per_tile"] == 196
    assert enc.extra["tiling"]["policy"] == "relaxed" and enc.extra["tiles_per_batch"] == 4
    assert get_model_config("bluelm_tile_encoder_b16").extra["tokens_per_tile"] == 144
    assert {"siglip_so400m_384", "siglip_b16_384", "bluelm_tile_encoder_so400m",
            "bluelm_tile_encoder_b16"} <= set(edgeml.list_models())


def test_wrong_tile_size_is_a_user_error():
    model = edgeml.create_model("siglip_b16_384", depth=1)
    with pytest.raises(InputShapeError, match="tiles"):
        model(torch.zeros(1, 3, 224, 224))


def test_downsampler_concatenates_2x2_groups_with_zero_padding():
    c = 3
    ds = TokenDownsampler(grid=27, in_dim=c, out_dim=4 * c)
    with torch.no_grad():
        ds.proj.weight.copy_(torch.eye(4 * c))
        ds.proj.bias.zero_()
    x = torch.randn(2, 27 * 27, c)
    y = ds(x)
    assert y.shape == (2, 196, 4 * c)
    grid = torch.zeros(2, 28, 28, c)
    grid[:, :27, :27] = x.reshape(2, 27, 27, c)
    for i, j in [(0, 0), (3, 5), (13, 0), (0, 13), (13, 13), (6, 13)]:
        want = torch.cat([grid[:, 2 * i, 2 * j], grid[:, 2 * i, 2 * j + 1],
                          grid[:, 2 * i + 1, 2 * j], grid[:, 2 * i + 1, 2 * j + 1]], dim=-1)
        torch.testing.assert_close(y[:, i * 14 + j], want)
    assert (y[:, 13 * 14 + 13, c:] == 0).all()  # the bottom-right group is 3/4 padding


def test_tile_encoder_shapes_on_meta_device():
    with torch.device("meta"):
        enc = edgeml.create_model("bluelm_tile_encoder_so400m", llm_width=2560)
        y = enc(torch.empty(4, 3, 384, 384))
    assert y.shape == (4, 196, 2560) and enc.tokens_per_tile == 196
    assert enc.downsampler.proj.weight.shape == (1152, 4 * 1152)
    assert enc.projector.fc1.weight.shape == (2560, 1152) and enc.projector.fc2.weight.shape == (2560, 2560)


def test_tile_encoder_loads_timm_trunk_weights(b16_state):
    enc = edgeml.create_model("bluelm_tile_encoder_b16", trunk_checkpoint=b16_state, llm_width=64)
    trunk = enc.trunk.state_dict()
    for k, v in trunk.items():
        assert torch.equal(v, b16_state[k]), k
    # its own checkpoint (trunk.* keys, timm's head under trunk. too) loads strictly
    head = {f"trunk.{k}": v for k, v in b16_state.items() if k.startswith("attn_pool.")}
    own = {**enc.state_dict(), **head}
    with torch.device("meta"):
        edgeml.create_model("bluelm_tile_encoder_b16", checkpoint=own, llm_width=64)
        with pytest.raises(CheckpointError, match="missing"):
            edgeml.create_model("bluelm_tile_encoder_b16", checkpoint=b16_state, llm_width=64)


def _small_encoder():
    return edgeml.create_model("bluelm_tile_encoder_b16", depth=1, llm_width=64)


def test_export_fixed_batch_of_four_matches_eager():
    enc = _small_encoder()
    x = torch.randn(4, 3, 384, 384)
    ep = torch.export.export(enc, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), enc(x), rtol=1e-5, atol=1e-5)
    out = [n for n in ep.graph.nodes if n.op == "output"][0].args[0][0]
    assert tuple(out.meta["val"].shape) == (4, 144, 64)


def test_export_dynamic_batch():
    enc = _small_encoder()
    batch = torch.export.Dim("batch", min=1, max=8)
    ep = torch.export.export(enc, (torch.randn(2, 3, 384, 384),), dynamic_shapes=({0: batch},))
    for b in (1, 3):
        x = torch.randn(b, 3, 384, 384)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), enc(x), rtol=1e-5, atol=1e-5)


def test_export_so400m_encoder_traces_with_static_batch():
    # Reduced depth: tracing only (fake tensors), no 400M forward on the CPU.
    with torch.device("meta"):
        enc = edgeml.create_model("bluelm_tile_encoder_so400m", depth=1, llm_width=128)
    ep = torch.export.export(enc, (torch.empty(4, 3, 384, 384, device="meta"),))
    out = [n for n in ep.graph.nodes if n.op == "output"][0].args[0][0]
    assert tuple(out.meta["val"].shape) == (4, 196, 128)


def test_encode_image_end_to_end_with_the_tile_encoder():
    enc = _small_encoder()
    rgb = np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    with torch.no_grad():
        result = encode_image(rgb, enc, batch=2)
    assert result.grid == (2, 1) and result.batches == [2, 1]
    assert result.tokens.shape == (3, 144, 64) and len(result.latencies_s) == 2
    with torch.no_grad():
        direct = enc(result.tiled.to_tensor((0.5,) * 3, (0.5,) * 3))
    torch.testing.assert_close(result.tokens, direct, rtol=1e-5, atol=1e-5)
