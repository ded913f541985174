"""edgeml's HistogramObserver picks the range torchao's does, bit for bit."""
import pytest
import torch
from torchao.quantization.pt2e import HistogramObserver as TorchaoHistogramObserver

import edgeml.quantize.observers as observers
from edgeml.quantize.observers import HistogramObserver


def _with_histogram(cls, hist: torch.Tensor):
    o = cls(eps=2**-12)
    o.histogram.resize_(hist.shape).copy_(hist)
    o.min_val.resize_(()).fill_(-3.0)
    o.max_val.resize_(()).fill_(5.0)
    return o


def _calibrated(cls, batches):
    o = cls(eps=2**-12)
    for x in batches:
        o(x)
    return o


def _activations(i: int, g: torch.Generator) -> list[torch.Tensor]:
    n = int(torch.randint(1000, 50000, (1,), generator=g))
    x = [torch.randn(n, generator=g),  # bell
         torch.randn(n, generator=g).exp(),  # skewed
         torch.randn(n, generator=g) * (torch.rand(n, generator=g) < 0.01) * 50,  # mostly zeros, spikes
         torch.randint(-3, 4, (n,), generator=g).float(),  # a few tied values
         torch.relu(torch.randn(n, generator=g)),  # one-sided
         torch.cat([torch.randn(n, generator=g), torch.tensor([1e3, -2e2])])][i % 6]  # outliers
    return [x] if i % 2 else list(x.chunk(3))  # several batches: combined, rescaled histograms


def test_same_qparams_as_torchao_on_calibrated_activations():
    g = torch.Generator().manual_seed(0)
    for i in range(60):
        batches = _activations(i, g)
        ours, theirs = _calibrated(HistogramObserver, batches), _calibrated(TorchaoHistogramObserver, batches)
        for a, b in zip(ours.calculate_qparams(), theirs.calculate_qparams()):
            assert torch.equal(a, b), i


def _large_count_histogram(seed: int) -> torch.Tensor:
    # Counts summed over many images: totals where float32 steps are wider than 1.
    g = torch.Generator().manual_seed(seed)
    hist = (torch.rand(2048, generator=g) ** 8 * 2e5).floor()
    hist[torch.randint(0, 2048, (40,), generator=g)] = 3e6
    return hist


def test_quantile_bounds_compare_in_float32_as_the_tensors_do(monkeypatch):
    """torchao compares the float32 cumulative counts with a Python-float bound, which the comparison
    rounds to float32. Seeds 237, 638 and 669 are histograms where that rounding decides the range
    (found by search), so the check can fail: comparing in double must disagree with torchao there."""
    hists = [_large_count_histogram(seed) for seed in (1, 2, 237, 638, 669)]
    expected = [_with_histogram(TorchaoHistogramObserver, h)._non_linear_param_search() for h in hists]
    for h, want in zip(hists, expected):
        got = _with_histogram(HistogramObserver, h)._non_linear_param_search()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    monkeypatch.setattr(observers, "_f32", lambda x: x)
    in_double = [_with_histogram(HistogramObserver, h)._non_linear_param_search() for h in hists]
    differs = [not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])) for a, b in zip(in_double, expected)]
    assert differs == [False, False, True, True, True]


def test_a_negative_count_takes_torchao_search():
    hist = _large_count_histogram(3)
    hist[100] = -5.0  # not non-decreasing: bisection would not be the linear scan
    ours = _with_histogram(HistogramObserver, hist)._non_linear_param_search()
    theirs = _with_histogram(TorchaoHistogramObserver, hist)._non_linear_param_search()
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("value", [16777216.5, 16777217.5, 1.0 + 2**-30])
def test_f32_rounds_as_a_float32_tensor(value):
    assert observers._f32(value) == torch.tensor(value, dtype=torch.float32).item()
