"""Annotations ``XNNPACKQuantizer`` lacks: a conv or linear followed by a clamp (ReLU6, hardtanh)
quantized as one fused op, a constant pad that keeps its input's quantization, and integer
arithmetic left integer.

``XNNPACKQuantizer`` (ExecuTorch 1.5) fuses a conv or linear with a following ``relu`` only: it
annotates the conv's output, and a ``hardtanh`` after it shares that observer. The conv's output
is then quantized over its whole pre-activation range, negative tails of channels the clamp cuts
off included, and the [0, 6] that ReLU6 lets through gets a fraction of the 256 levels. On a
trained EfficientNet-Lite0 (ReLU6 after every conv) that alone costs the stem 7.6 dB of output
SQNR, and the whole int8 program measured 5.3 dB.

XNNPACK runs a conv or fully-connected node with an output clamp (its ``output_min`` /
``output_max``; ExecuTorch's ``FuseActivationPass`` folds a following ``hardtanh`` into it), so
the clamp's output is the conv's real output. ``annotate_conv_clamp`` annotates the pair as
``XNNPACKQuantizer`` annotates conv + relu: input, weight and bias on the conv, the output on the
clamp, and nothing in between. It runs before the quantizer's own annotators, which skip what is
already annotated.

A ``constant_pad_nd`` between quantized ops (BiT's stem pads a conv's output before its max pool)
is not annotated by ``XNNPACKQuantizer``, so its output takes the next op's input observer and
the pad sits between a dequantize and a quantize of different scales. ExecuTorch 1.5.1's XNNPACK
partitioner takes it as an fp32 pad, but serializes it with the quantized tensors around it, and
XNNPACK refuses a static pad whose input and output quantizations differ: the program fails to
load (``xnn_status_invalid_parameter``). ``annotate_pads`` gives the pad its input's observer, as
the quantizer does for max pool, views and slices; the padding value (zero, or ``-inf`` before a
max pool) is then a quantized value of the same scale.

Before annotating, ``XNNPACKQuantizer`` makes the scalar operand of every ``add`` / ``mul`` a
float tensor constant, integer ones included: index arithmetic (``arange(n) + k``, Perceiver's
attention-mask gather) turns float and ``index`` then fails in calibration ("tensors used as
indices must be long, int, byte or bool tensors"). ``keep_integer_scalars`` first gives integer
``add`` / ``mul`` with a scalar their ``.Scalar`` overloads (the same function), which that
transform does not touch.
"""
from __future__ import annotations

import torch
from torch.fx import GraphModule, Node

CLAMPS = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}
PRODUCERS = {torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default, torch.ops.aten.linear.default}


def annotate_conv_clamp(gm: GraphModule, config) -> list[list[Node]]:
    """Annotate every conv / linear -> hardtanh pair of ``gm`` (pre-dispatch ATen graph) with the
    static quantization ``config``; returns the annotated partitions."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        _is_annotated,
        _mark_nodes_as_annotated,
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    if config is None or config.input_activation is None or config.input_activation.is_dynamic:
        return []
    partitions = []
    for clamp in gm.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in CLAMPS:
            continue
        producer = clamp.args[0]
        if not isinstance(producer, Node) or producer.op != "call_function" or producer.target not in PRODUCERS \
                or len(producer.users) > 1:
            continue
        act, weight = producer.args[0], producer.args[1]
        bias = producer.args[2] if len(producer.args) > 2 else None
        if not isinstance(act, Node) or not isinstance(weight, Node):
            continue
        qspecs = {act: get_input_act_qspec(config), weight: get_weight_qspec(config)}
        partition = [clamp, producer, weight]
        if isinstance(bias, Node):
            qspecs[bias] = get_bias_qspec(config)
            partition.append(bias)
        if _is_annotated(partition):
            continue
        producer.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=qspecs, _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                              _annotated=True)
        _mark_nodes_as_annotated(partition)
        partitions.append(partition)
    return partitions


PADS = {torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default}


def annotate_pads(gm: GraphModule) -> list[Node]:
    """Give every constant pad whose input is quantized that input's quantization (after the
    quantizer's own annotators: only then is it known which inputs are quantized); returns the
    pads annotated."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    annotated = []
    for pad in gm.graph.nodes:
        if pad.op != "call_function" or pad.target not in PADS:
            continue
        if pad.target is torch.ops.aten.pad.default and (pad.args[2] if len(pad.args) > 2 else
                                                          pad.kwargs.get("mode", "constant")) != "constant":
            continue
        source = pad.args[0]
        producer = source.meta.get(Q_ANNOTATION_KEY) if isinstance(source, Node) else None
        existing = pad.meta.get(Q_ANNOTATION_KEY)
        if producer is None or producer.output_qspec is None or (existing is not None and existing._annotated):
            continue
        shared = SharedQuantizationSpec(source)
        pad.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map={source: shared}, output_qspec=shared,
                                                            _annotated=True)
        annotated.append(pad)
    return annotated


_SCALAR_FORMS = {torch.ops.aten.add.Tensor: torch.ops.aten.add.Scalar,
                 torch.ops.aten.mul.Tensor: torch.ops.aten.mul.Scalar}


def keep_integer_scalars(gm: GraphModule) -> int:
    """Rewrite integer ``add.Tensor`` / ``mul.Tensor`` with a scalar second operand as the
    ``.Scalar`` overload; returns how many were rewritten."""
    changed = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in _SCALAR_FORMS or len(node.args) != 2:
            continue
        val = node.meta.get("val")
        tensor, scalar = node.args
        if (isinstance(tensor, Node) and isinstance(scalar, (int, float, bool)) and isinstance(val, torch.Tensor)
                and not val.dtype.is_floating_point and not val.dtype.is_complex):
            node.target = _SCALAR_FORMS[node.target]
            changed += 1
    if changed:
        gm.recompile()
    return changed
