"""``x ** 2``, ``x ** 0.5`` and ``x ** -0.5`` as the multiply, square root and reciprocal square root
XNNPACK has nodes for; ExecuTorch 1.5's partitioner takes no ``pow`` (SwiftFormer's 16 ``pow(x, 2)``
ran on the portable kernels). Other exponents are left alone. PyTorch itself computes these
three exponents by the same special cases, so the function is the same."""
from __future__ import annotations

import torch


def pow_as_elementwise(x: torch.Tensor, exponent):
    if not x.dtype.is_floating_point or isinstance(exponent, bool):
        return NotImplemented
    if exponent == 2:
        return x * x
    if exponent == 0.5:
        return torch.sqrt(x)
    if exponent == -0.5:
        return torch.rsqrt(x)
    return NotImplemented


def power_decompositions() -> dict:
    return {torch.ops.aten.pow.Tensor_Scalar: pow_as_elementwise}
