"""A tiny classifier built on ``edgeml.kernels.selective_scan``, registered in the zoo for tests.

It exports in a few seconds, so verify's tests can build artifacts of a model that calls an
edgeml custom op, including ones lowered with a deliberately wrong decomposition
(``reversed_scan_decomposition``: the recurrence runs from the last token to the first).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from edgeml.models._registry import _REGISTRY, ModelConfig, register_model

NAME = "test_scan_tiny"
CONFIG = ModelConfig(name=NAME, family="test", resolution=32, num_classes=10,
                     output_description="10 test classes", labels=None)


class ScanTiny(nn.Module):
    """Patchify (stride 8) -> one Mamba-style selective scan over the 16 tokens -> pool -> linear."""

    def __init__(self, dim: int = 8, state: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, stride=8)
        self.proj = nn.Conv1d(dim, dim + 2 * state, 1)
        self.A_log = nn.Parameter(torch.log(torch.linspace(0.5, 2.0, dim * state)).reshape(dim, state))
        self.D = nn.Parameter(torch.full((dim,), 0.1))
        self.delta_bias = nn.Parameter(torch.full((dim,), 0.5))
        self.head = nn.Linear(dim, num_classes)
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from edgeml.kernels import selective_scan

        u = self.patch(x).flatten(2)  # (b, d, l)
        p = self.proj(u)
        d = u.shape[1]
        delta, B, C = p[:, :d], p[:, d:d + self.state], p[:, d + self.state:]
        y = selective_scan(u, delta, -torch.exp(self.A_log), B, C, self.D, None, self.delta_bias, True)
        return self.head(F.gelu(y).mean(2))


def register() -> None:
    if NAME not in _REGISTRY:
        register_model(CONFIG)(lambda **kwargs: ScanTiny(**kwargs))


def reversed_scan_decomposition(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                                bidirectional=False):
    """A wrong decomposition: the right recurrence, run over the sequence backwards."""
    from edgeml.kernels import selective_scan_chunked

    def flip(t):
        return None if t is None or t.dim() < 3 else t.flip(-1)

    out = selective_scan_chunked(flip(u), flip(delta), A, flip(B) if B.dim() >= 3 else B,
                                 flip(C) if C.dim() >= 3 else C, D, flip(z), delta_bias, delta_softplus)
    return out.flip(-1)


@contextlib.contextmanager
def wrong_decomposition() -> Iterator[None]:
    """Within the block, edgeml.export lowers the scan with ``reversed_scan_decomposition``."""
    import edgeml.kernels as kernels

    original = kernels.decomposition_table

    def table(**kwargs):
        t = dict(original(**kwargs))
        t[torch.ops.edgeml.selective_scan.default] = reversed_scan_decomposition
        return t

    kernels.decomposition_table = table
    try:
        yield
    finally:
        kernels.decomposition_table = original
