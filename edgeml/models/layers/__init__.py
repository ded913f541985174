"""Building blocks shared by the zoo's families."""
from edgeml.models.layers.attention import split_heads_attention
from edgeml.models.layers.conv import ConvBNAct, make_divisible
from edgeml.models.layers.haar import HAAR_MIX, HaarDWT, HaarIWT, haar_conv_filters
from edgeml.models.layers.norm import LayerNorm2d
from edgeml.models.layers.reparam import (
    MobileOneBlock,
    ReparamLargeKernelConv,
    ReparamModule,
    RepCPE,
    RepMixer,
    SqueezeExcite,
    conv_bn,
)

__all__ = [
    "HAAR_MIX",
    "ConvBNAct",
    "HaarDWT",
    "HaarIWT",
    "LayerNorm2d",
    "MobileOneBlock",
    "RepCPE",
    "RepMixer",
    "ReparamLargeKernelConv",
    "ReparamModule",
    "SqueezeExcite",
    "conv_bn",
    "haar_conv_filters",
    "make_divisible",
    "split_heads_attention",
]
