"""Imports every model family so that each registers its models.

Add one line per family file (see DESIGN.md: one file per family).
"""
from edgeml.models import efficientmod, fastvit  # noqa: F401
from edgeml.models import mobilenet  # noqa: F401
from edgeml.models import mobilemamba  # noqa: F401
from edgeml.models import vit  # noqa: F401
