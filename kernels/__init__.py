"""edgeml.kernels: custom ops (selective scan, linear attention) with their references.

Each op lives in one module with its naive reference, its plain-aten chunked form (CPU
implementation and export decomposition), its fake kernel and the registration of its Triton
CUDA kernel (kernels/_triton_*.py, imported lazily so that importing edgeml never imports
Triton). See kernels/_backend.py for switching the CPU implementation between the forms.
"""
from ._backend import current_backend, set_backend, use_backend
from .decompositions import decomposition_table
from .linear_attention import (
    linear_attention,
    linear_attention_chunked,
    linear_attention_naive,
    linear_attention_quadratic,
)
from .selective_scan import (
    selective_scan,
    selective_scan_chunked,
    selective_scan_naive,
    selective_scan_quadratic,
)

__all__ = [
    "current_backend",
    "decomposition_table",
    "linear_attention",
    "linear_attention_chunked",
    "linear_attention_naive",
    "linear_attention_quadratic",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_naive",
    "selective_scan_quadratic",
    "set_backend",
    "use_backend",
]
