"""Building blocks shared by the zoo's families."""
from edgeml.models.layers.conv import ConvBNAct, make_divisible

__all__ = ["ConvBNAct", "make_divisible"]
