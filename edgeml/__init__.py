"""edgeml: an on-device deployment compiler for PyTorch vision models.

    model (zoo name | FILE.py:CALLABLE | package.module:CALLABLE | Hugging Face dir | nn.Module)
        -> passes -> quantize -> lower -> artifact (.pte / .onnx + manifest)

See docs/DESIGN.md for the layout and the contracts between the parts.
"""
from edgeml import _warnings
from edgeml.errors import EdgeMLError
from edgeml.models import create_model, list_models

_warnings.install()  # third-party messages known to be harmless (listed in edgeml/_warnings.py)

__version__ = "0.1.0"

__all__ = ["EdgeMLError", "__version__", "create_model", "list_models"]
