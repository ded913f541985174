"""Imports every model family so that each registers its models.

Add one name per family file (see docs/DESIGN.md: one file per family).
"""
from edgeml.models import (  # noqa: F401  (imported for their @register_model side effects)
    efficientmod,
    fastvit,
    mobilemamba,
    mobilenet,
    ravlt,
    vit,
)
