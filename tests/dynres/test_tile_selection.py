"""select_tile_grid: the issue's table, the phone screenshot, and properties of the three rules."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeml.dynres import (
    candidate_grids,
    enumeration_order,
    internvl_grids,
    resolution_fit,
    select_tile_grid,
)
from edgeml.errors import UsageError

# (w, h): (llava_next, internvl max 6 tiles, relaxed), tile 384, grids up to 3x3.
EXPECTED_GRIDS = {
    (394, 390): ((2, 2), (1, 1), (1, 1)),
    (380, 393): ((1, 2), (1, 1), (1, 1)),
    (380, 76): ((1, 1), (5, 1), (1, 1)),
    (500, 102): ((2, 1), (5, 1), (2, 1)),
    (800, 600): ((3, 2), (3, 2), (2, 2)),
}


@pytest.mark.parametrize("size", sorted(EXPECTED_GRIDS))
def test_issue_table(size):
    w, h = size
    llava, internvl, relaxed = EXPECTED_GRIDS[size]
    assert select_tile_grid(w, h, policy="llava_next") == llava
    assert select_tile_grid(w, h, policy="internvl", max_tiles=6) == internvl
    assert select_tile_grid(w, h, policy="internvl") == internvl  # 6 is InternVL's default here
    assert select_tile_grid(w, h, policy="relaxed") == relaxed
    assert select_tile_grid(w, h) == relaxed  # relaxed is the default


def test_phone_screenshot_gets_2x4_with_grids_up_to_4x4():
    assert select_tile_grid(1080, 2400, grids=candidate_grids(4)) == (2, 4)
    # with the 3x3 default the tallest fitting grid is 3 tiles down
    assert select_tile_grid(1080, 2400)[1] == 3


def test_resolution_fit_by_hand():
    # 800x600 into 768x768: scale 0.96 -> 768x576 effective, 768*768 - 442368 wasted
    assert resolution_fit(800, 600, (2, 2)) == (768 * 576, 768 * 768 - 768 * 576)
    # small image: effective is capped by the image's own pixels
    assert resolution_fit(100, 50, (3, 3)) == (5000, 1152 * 1152 - 5000)


def test_relaxed_enumeration_order_is_largest_first():
    order = enumeration_order(candidate_grids(3), "relaxed")
    assert order == [(3, 3), (3, 2), (2, 3), (2, 2), (3, 1), (1, 3), (2, 1), (1, 2), (1, 1)]
    assert enumeration_order(candidate_grids(2), "llava_next") == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_alpha_changes_the_relaxed_choice():
    # alpha = 0 accepts only strictly larger effective resolutions, so the largest grid that
    # reaches the maximum stays: 800x600 is fully covered by every grid from 3x2 up -> 3x3.
    assert select_tile_grid(800, 600, alpha=0.0) == (3, 3)
    assert select_tile_grid(800, 600, alpha=0.1) == (2, 2)
    assert select_tile_grid(800, 600, alpha=0.9) == (1, 1)
    assert select_tile_grid(1080, 2400, alpha=0.5) == (1, 2)


def test_internvl_candidates_and_tie_rule():
    grids = internvl_grids(6)
    assert (5, 1) in grids and (1, 6) in grids and (3, 3) not in grids
    assert all(1 <= m * n <= 6 for m, n in grids)
    # square image: 1x1 and 2x2 tie on aspect ratio; the larger grid wins only when the image
    # is bigger than half of its area (0.5 * 768 * 768 = 294912 pixels)
    assert select_tile_grid(500, 500, policy="internvl") == (1, 1)
    assert select_tile_grid(600, 600, policy="internvl") == (2, 2)
    assert select_tile_grid(543, 543, policy="internvl") == (1, 1)  # 294849 pixels
    assert select_tile_grid(544, 544, policy="internvl") == (2, 2)  # 295936 pixels


def test_explicit_grids_and_max_tiles():
    assert select_tile_grid(1080, 2400, grids=[(1, 1), (2, 4)]) == (2, 4)
    assert select_tile_grid(1080, 2400, grids=candidate_grids(4), max_tiles=6) in {
        g for g in candidate_grids(4) if g[0] * g[1] <= 6}
    assert select_tile_grid(380, 76, policy="internvl", max_tiles=4) == (4, 1)
    # the order of an explicit list does not matter: each policy orders candidates itself
    grids = candidate_grids(3)
    for policy in ("relaxed", "llava_next", "internvl"):
        assert select_tile_grid(800, 600, grids=grids, policy=policy) == \
            select_tile_grid(800, 600, grids=grids[::-1], policy=policy)


@pytest.mark.parametrize("kwargs, match", [
    ({"policy": "anyres"}, "unknown tiling policy"),
    ({"alpha": -0.1}, "alpha"),
    ({"alpha": math.nan}, "alpha"),
    ({"tile": 0}, "tile"),
    ({"grids": []}, "no candidate"),
    ({"grids": [(0, 1)]}, "positive integers"),
    ({"grids": [(2, 2)], "max_tiles": 3}, "no candidate"),
])
def test_bad_arguments_raise_usage_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        select_tile_grid(800, 600, **kwargs)


@pytest.mark.parametrize("w, h", [(0, 10), (10, 0), (-5, 5), (1.5, 3)])
def test_bad_sizes(w, h):
    with pytest.raises(UsageError):
        select_tile_grid(w, h)


sizes = st.integers(min_value=1, max_value=20000)
policies = st.sampled_from(["relaxed", "llava_next", "internvl"])


@settings(max_examples=300, deadline=None)
@given(w=sizes, h=sizes, policy=policies, max_grid=st.integers(1, 5),
       alpha=st.floats(0, 1, allow_nan=False))
def test_grid_is_always_a_candidate(w, h, policy, max_grid, alpha):
    grids = candidate_grids(max_grid)
    assert select_tile_grid(w, h, grids=grids, policy=policy, alpha=alpha) in grids
    assert select_tile_grid(w, h, policy="internvl", max_tiles=max_grid) in internvl_grids(max_grid)


@settings(max_examples=300, deadline=None)
@given(w=sizes, h=sizes, max_grid=st.integers(1, 4))
def test_relaxed_with_alpha_zero_reaches_llava_effective_resolution(w, h, max_grid):
    # Both rules then maximize the effective resolution; they differ only in tie-breaking.
    grids = candidate_grids(max_grid)
    best = max(resolution_fit(w, h, g)[0] for g in grids)
    assert resolution_fit(w, h, select_tile_grid(w, h, grids=grids, policy="llava_next"))[0] == best
    if best > 0:
        assert resolution_fit(w, h, select_tile_grid(w, h, grids=grids, alpha=0.0))[0] == best


@settings(max_examples=300, deadline=None)
@given(w=sizes, h=sizes)
def test_llava_next_minimizes_waste_among_the_most_effective(w, h):
    grids = candidate_grids(3)
    fits = {g: resolution_fit(w, h, g) for g in grids}
    best = max(e for e, _ in fits.values())
    least = min(wst for e, wst in fits.values() if e == best)
    assert fits[select_tile_grid(w, h, policy="llava_next")] == (best, least)


@settings(max_examples=200, deadline=None)
@given(w=sizes, h=sizes)
def test_transposed_image_gets_transposed_grid_or_same_tile_count(w, h):
    # The rules are symmetric up to tie-breaking order: the transposed image's grid has the
    # same tile count and effective resolution as the transposed grid.
    for policy in ("relaxed", "llava_next"):
        m, n = select_tile_grid(w, h, policy=policy)
        mt, nt = select_tile_grid(h, w, policy=policy)
        assert resolution_fit(h, w, (mt, nt))[0] == resolution_fit(w, h, (m, n))[0]
