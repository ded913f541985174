"""Building blocks shared by the zoo's families."""
from edgeml.models.layers.conv import ConvBNAct, make_divisible
from edgeml.models.layers.haar import HAAR_MIX, HaarDWT, HaarIWT, haar_conv_filters

__all__ = ["HAAR_MIX", "ConvBNAct", "HaarDWT", "HaarIWT", "haar_conv_filters", "make_divisible"]
