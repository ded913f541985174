"""ONNX Runtime's static / dynamic int8 quantization as a session (see ``edgeml.quantize.session``):
``quant_pre_process`` once, calibrate once (ORT's calibration cache), re-quantize per fp32 set
with ``nodes_to_exclude``.
"""
from __future__ import annotations

import inspect
import tempfile
import warnings
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import torch

from edgeml.quantize.schemes import Scheme, ort_calibration_method
from edgeml.quantize.session import LayerGroup, QuantSession, UnionFind, to_batch, unique_layer_names

ORT_REDUCE_RANGE = True

# Ops that only move or select values: quantized together with whatever produced their input.
_ORT_PASS_THROUGH = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "MaxPool", "Relu", "Clip",
                     "Slice", "Gather", "Split", "Resize", "Identity", "Expand", "Tile", "Pad"}
_ORT_WEIGHTED = {"Conv", "Gemm", "MatMul", "ConvTranspose"}


def _onnx_module_path(node) -> str:
    import ast

    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return ""
            return scopes[-2] if len(scopes) >= 2 else ""
    return ""


class OrtSession(QuantSession):
    """quant_pre_process once, calibrate once (ORT's calibration cache), re-quantize per fp32 set."""

    format = "onnx"

    def __init__(self, fp32_onnx: Path, input_name: str, scheme: Scheme, observer: str | None,
                 calibration: Sequence[torch.Tensor], workdir: Path, *, example: torch.Tensor | None = None) -> None:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.scheme, self.observer = scheme, observer
        self.example = example
        self.input_name = input_name
        self.calibration = list(calibration)
        self.workdir = Path(workdir)
        self.prepped = self.workdir / "model.prep.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_onnx), str(self.prepped), skip_symbolic_shape=True)
        # ORT's optimizer in quant_pre_process drops the exporter's metadata from the nodes it
        # rewrites (a MatMul + Add fused into one node, a Gemm whose empty bias it removes); the
        # module paths that name the layers are read from the exported graph instead.
        self._module_paths = {n.name: path for n in onnx.load(str(fp32_onnx), load_external_data=False).graph.node
                              if (path := _onnx_module_path(n))}
        self._cache = self.workdir / "calibration.json"
        self._counter = 0
        self._sessions: dict[frozenset[str], object] = {}
        full = self._quantize(exclude=())
        self.groups = self._find_layers(onnx.load(str(self.prepped)), onnx.load(str(full)))
        self._full = full

    def _reader(self):
        from onnxruntime.quantization import CalibrationDataReader

        calibration, name = self.calibration, self.input_name

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(calibration)

            def get_next(self):
                x = next(self._it, None)
                return None if x is None else {name: x.numpy()}

        return _Reader()

    def _quantize(self, *, exclude: Iterable[str] = (), only: Iterable[str] = ()) -> Path:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

        self._counter += 1
        dst = self.workdir / f"q{self._counter}.onnx"
        exclude, only = list(exclude), list(only)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.scheme.name == "int8-dynamic":
                quantize_dynamic(str(self.prepped), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                                 reduce_range=ORT_REDUCE_RANGE, nodes_to_exclude=exclude, nodes_to_quantize=only)
                return dst
            kwargs = {}
            reader = self._reader()
            if "calibration_cache_path" in inspect.signature(quantize_static).parameters:
                kwargs["calibration_cache_path"] = str(self._cache)
                if self._cache.is_file():
                    reader = None  # ranges come from the cache: calibrated once
            quantize_static(str(self.prepped), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            reduce_range=ORT_REDUCE_RANGE,
                            calibrate_method=ort_calibration_method(self.observer or "minmax"),
                            nodes_to_exclude=exclude, nodes_to_quantize=only, **kwargs)
        return dst

    def _find_layers(self, fp32, quantized) -> list[LayerGroup]:
        q_names = {n.name for n in quantized.graph.node}
        producer = {o: n for n in quantized.graph.node for o in n.output}
        if self.scheme.name == "int8-dynamic":
            touched = {n.name for n in fp32.graph.node if n.name not in q_names}
        else:
            touched = {n.name for n in quantized.graph.node
                       if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                       and any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input)}
        fp_producer = {o: n for n in fp32.graph.node for o in n.output}
        uf = UnionFind()
        for n in fp32.graph.node:
            if n.name not in touched:
                continue
            uf.find(n.name)
            if n.op_type in _ORT_PASS_THROUGH:
                src = fp_producer.get(n.input[0]) if n.input else None
                if src is not None and src.name in touched:
                    uf.union(src.name, n.name)
        members: dict[str, list] = {}
        for n in fp32.graph.node:
            if n.name in touched:
                members.setdefault(uf.find(n.name), []).append(n)
        raw = []
        for group in members.values():
            anchor = next((n for n in group if n.op_type not in _ORT_PASS_THROUGH), group[0])
            # A fused node is named "<first node>/<fusion>".
            path = _onnx_module_path(anchor) or self._module_paths.get(anchor.name.split("/")[0], "")
            if anchor.op_type in _ORT_WEIGHTED and path:
                name = path
            else:
                name = f"{path}:{anchor.op_type.lower()}" if path else anchor.name
            raw.append((name, anchor.op_type, tuple(n.name for n in group)))
        return unique_layer_names(raw)

    def _nodes(self, names: Iterable[str]) -> list[str]:
        by_name = {g.name: g for g in self.groups}
        return [node for n in names for node in by_name[n].nodes]

    def quantized_onnx(self, fp32_layers: Collection[str] = ()) -> bytes:
        if not fp32_layers:
            return self._full.read_bytes()
        path = self._quantize(exclude=self._nodes(fp32_layers))
        try:
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    @torch.no_grad()
    def simulate(self, quantized: Collection[str], inputs: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        import onnxruntime as ort

        key = frozenset(quantized)
        if key not in self._sessions:
            if not key:
                path = self.prepped
            elif key == frozenset(self.names):
                path = self._full
            else:
                path = self._quantize(only=self._nodes(sorted(key)))
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self._sessions = {key: ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])}
            if path not in (self.prepped, self._full):
                path.unlink(missing_ok=True)  # one model per layer: do not let them pile up on disk
        sess = self._sessions[key]
        out_names = [o.name for o in sess.get_outputs()]
        if self.example is not None:
            inputs = [to_batch(x, self.example) for x in inputs]
        return [[torch.from_numpy(o).float()[:1] for o in sess.run(out_names, {self.input_name: x.numpy()})]
                for x in inputs]


def ort_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="edgeml-ortq-")


__all__ = ["OrtSession", "ort_workdir"]
