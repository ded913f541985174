"""edgeml.kernels: custom ops (selective scan, linear attention) with their references.

Each op lives in one module with its naive reference, its plain-aten chunked form (CPU
implementation and export decomposition), its fake kernel and the registration of its Triton
CUDA kernel (edgeml/kernels/_triton_*.py, imported lazily so that importing edgeml never imports
Triton). See edgeml/kernels/_backend.py for switching the CPU implementation between the forms.
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

_TRITON_ENTRY_POINTS = {
    "selective_scan_triton": "._triton_selective_scan",
    "linear_attention_triton": "._triton_linear_attention",
}


def __getattr__(name: str):
    # The Triton kernels import triton, which must not happen at `import edgeml` (Triton fixes
    # compile vs interpret mode at its own import); load them on first use instead.
    if name in _TRITON_ENTRY_POINTS:
        import importlib

        return getattr(importlib.import_module(_TRITON_ENTRY_POINTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "current_backend",
    "decomposition_table",
    "linear_attention",
    "linear_attention_chunked",
    "linear_attention_naive",
    "linear_attention_quadratic",
    "linear_attention_triton",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_naive",
    "selective_scan_quadratic",
    "selective_scan_triton",
    "set_backend",
    "use_backend",
]
