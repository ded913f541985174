"""edgeml.kernels: custom ops (selective scan, linear attention) with their references.

Each op lives in one module with its naive reference, its plain-aten chunked form (CPU
implementation and export decomposition), its fake kernel and the registration of its Triton
CUDA kernel (kernels/_triton_*.py, imported lazily so that importing edgeml never imports
Triton). See kernels/_backend.py for switching the CPU implementation between the forms.
"""
from ._backend import current_backend, set_backend, use_backend
from .decompositions import decomposition_table
from .selective_scan import selective_scan, selective_scan_chunked, selective_scan_naive

__all__ = [
    "current_backend",
    "decomposition_table",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_naive",
    "set_backend",
    "use_backend",
]
