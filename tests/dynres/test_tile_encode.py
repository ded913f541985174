"""plan_batches and encode_image: BlueLM's 4 + 4 + 1 batching of a 2:4 screenshot."""
import numpy as np
import pytest
import torch

from edgeml.dynres import candidate_grids, encode_image, plan_batches
from edgeml.errors import UsageError


@pytest.mark.parametrize("n, batch, expected", [
    (9, 4, [4, 4, 1]), (8, 4, [4, 4]), (7, 4, [4, 3]), (1, 4, [1]), (0, 4, []), (5, 1, [1] * 5),
])
def test_plan_batches_dynamic(n, batch, expected):
    assert plan_batches(n, batch) == expected


@pytest.mark.parametrize("n, sizes, expected", [
    (9, (4, 1), [4, 4, 1]), (7, (4, 1), [4, 1, 1, 1]), (6, (4, 3), [3, 3]), (10, (4, 2), [4, 4, 2]),
    (4, (1, 4), [4]),
])
def test_plan_batches_fixed_programs(n, sizes, expected):
    plan = plan_batches(n, sizes=sizes)
    assert plan == expected and sum(plan) == n


def test_plan_batches_errors():
    with pytest.raises(UsageError, match="cannot be split"):
        plan_batches(5, sizes=(4,))
    with pytest.raises(UsageError):
        plan_batches(-1)
    with pytest.raises(UsageError):
        plan_batches(3, 0)


def _mean_runner(calls):
    # A stand-in tile encoder: one "token" per tile holding its mean pixel, so the output can be
    # traced back to the tile that produced it.
    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return x.mean(dim=(1, 2, 3))[:, None, None]
    return run


def test_encode_screenshot_in_batches_of_four():
    h, w = 2400, 1080
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[: h // 2] = 255  # top half white: the top tiles are brighter than the bottom ones
    calls = []
    enc = encode_image(rgb, _mean_runner(calls), grids=candidate_grids(4), tile=64)
    # 1080x2400 at tile 64 with grids up to 4x4: still a tall grid
    m, n = enc.grid
    assert n > m
    assert enc.batches == plan_batches(m * n + 1, 4)
    assert calls == [(b, 3, 64, 64) for b in enc.batches]
    assert enc.tokens.shape == (m * n + 1, 1, 1) and len(enc.latencies_s) == len(enc.batches)
    assert all(t >= 0 for t in enc.latencies_s)
    expected = enc.tiled.to_tensor((0.5,) * 3, (0.5,) * 3).mean(dim=(1, 2, 3))
    torch.testing.assert_close(enc.tokens[:, 0, 0], expected)
    assert enc.tokens[0, 0, 0] > enc.tokens[m * n - 1, 0, 0]  # row-major: first tile is at the top


def test_encode_default_tile_is_bluelm_4_4_1():
    calls = []
    enc = encode_image(np.zeros((2400, 1080, 3), np.uint8), _mean_runner(calls), grids=candidate_grids(4))
    assert enc.grid == (2, 4) and enc.batches == [4, 4, 1] and enc.num_tiles == 9
    assert enc.tokens.shape == (9, 1, 1)


def test_encode_accepts_executorch_style_list_outputs_and_checks_batch():
    enc = encode_image(np.zeros((100, 100, 3), np.uint8), lambda x: [x[:, :1, :2, :2].numpy()], tile=128)
    assert enc.tokens.shape == (2, 1, 2, 2)
    with pytest.raises(UsageError, match="returned batch"):
        encode_image(np.zeros((900, 900, 3), np.uint8), lambda x: x[:1], tile=16)
