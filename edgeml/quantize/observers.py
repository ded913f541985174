"""Calibration observers: torchao's histogram observer with its range search in plain Python.

``HistogramObserver.calculate_qparams`` narrows the histogram's range to the one with the least
L2 quantization error (``_non_linear_param_search``): it steps the lower and upper quantiles in
1e-5 increments and, for each step, scans the cumulative histogram for the bins they fall in. torchao
does every step and every scan with 0-dim tensor indexing and comparisons, a few microseconds
each, up to 10^5 steps per observer: 4.5 s for RAVLT-S's 830 observers, 7.0 s for RAVLT-B's 1228.

``HistogramObserver`` here runs the same search on the cumulative histogram as a list of Python
floats: each quantile's bin by bisection (a cumulative sum of counts is non-decreasing, so the
first bin at or above a bound is what the linear scan finds), and the runs of steps that move no
bin (only the upper quantile creeps down) in a tight loop. Every comparison is made between
float32 values, as the tensor comparison casts its Python-float bound to the histogram's float32,
and the quantiles take the same sequence of double additions, so the chosen range, and with it
every scale and zero point, is the one torchao picks: the same ranges for every observer of
RAVLT-S, RAVLT-B and EfficientMod-S, and the same RAVLT-S int8 program bytes
(``tests/quantize/test_observers.py`` checks random, skewed and tied histograms, and ones where
the float32 rounding decides). The search takes 0.9 s for RAVLT-S and 1.5 s for RAVLT-B. The error
of each candidate range is still torchao's ``_compute_quantization_error``.
"""
from __future__ import annotations

import bisect
import struct

import torch
from torchao.quantization.pt2e import HistogramObserver as _TorchaoHistogramObserver

__all__ = ["HistogramObserver"]


def _f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (as a Python float, which holds it exactly)."""
    return struct.unpack("f", struct.pack("f", x))[0]


class HistogramObserver(_TorchaoHistogramObserver):
    """torchao's ``HistogramObserver`` with the same range search, without per-step tensor ops."""

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.histogram.size()[0] == self.bins, "bins mismatch"
        bin_width = (self.max_val - self.min_val) / self.bins
        total = torch.sum(self.histogram).item()
        cumulative = torch.cumsum(self.histogram, dim=0).tolist()  # float32 values, held exactly
        if any(b < a for a, b in zip(cumulative, cumulative[1:])):  # a negative count: no bisection
            return super()._non_linear_param_search()

        stepsize = 1e-5
        alpha, beta = 0.0, 1.0
        start_bin, end_bin = 0, self.bins - 1
        norm_min = float("inf")
        while alpha < beta:
            next_alpha, next_beta = alpha + stepsize, beta - stepsize
            # torchao: l from start_bin up while cumulative[l] < the lower bound (not past end_bin);
            # r from end_bin down while cumulative[r] > the upper bound (not past start_bin).
            left = bisect.bisect_left(cumulative, _f32(next_alpha * total), start_bin, end_bin)
            right = bisect.bisect_right(cumulative, _f32(next_beta * total), start_bin + 1, end_bin + 1) - 1
            if (left - start_bin) > (end_bin - right):
                next_start_bin, next_end_bin = left, end_bin
                alpha = next_alpha
            else:
                next_start_bin, next_end_bin = start_bin, right
                beta = next_beta
            if next_start_bin == start_bin and next_end_bin == end_bin:
                # Neither bin moved: left == start_bin and right == end_bin, and only beta stepped.
                # The lower bound is unchanged, so the next steps find the same left bin and step
                # beta again for as long as the upper bound keeps end_bin: take those steps here.
                top = cumulative[end_bin]
                while alpha < beta and (end_bin == start_bin or top <= _f32((beta - stepsize) * total)):
                    beta -= stepsize
                continue
            norm = self._compute_quantization_error(next_start_bin, next_end_bin)
            if norm > norm_min:
                break
            norm_min = norm
            start_bin, end_bin = next_start_bin, next_end_bin

        new_min = self.min_val + bin_width * start_bin
        new_max = self.min_val + bin_width * (end_bin + 1)
        return new_min, new_max
