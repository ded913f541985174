"""ONNX Runtime's CPU execution provider as edgeml's host runner for ``.onnx`` programs."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edgeml.errors import ArtifactError
from edgeml.runtime.runners import Runner


class OnnxRunner(Runner):
    format = "onnx"

    def __init__(self, path: str | Path, *, threads: int | None = None, profile_prefix: str | None = None,
                 spinning: bool = True, **_: object) -> None:
        """``spinning=False`` stops ONNX Runtime's intra-op threads from busy-waiting after each
        run. Keep it on (ORT's default, its best latency) to time ORT alone; turn it off when
        another runtime runs in between, as in a side-by-side comparison: on this project's
        2-core VM the spinning threads doubled the next ExecuTorch run of MobileMamba T2 (9.5 ->
        20.4 ms) while ORT alone went from 11.7 to 13.9 ms without spinning."""
        import onnx
        import onnxruntime as ort

        try:
            onnx.checker.check_model(str(path))
        except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError, OSError) as e:
            raise ArtifactError(f"{Path(path).name} is not a valid ONNX model: {str(e).splitlines()[0]}") from None
        except Exception as e:  # protobuf DecodeError and friends on corrupt bytes
            raise ArtifactError(f"{Path(path).name} is not a valid ONNX model: {type(e).__name__}") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            raise ArtifactError(f"ONNX Runtime cannot load {Path(path).name}: {str(e).splitlines()[0]}") from None
        self.inputs = self.session.get_inputs()
        self.input_shapes = [tuple(d if isinstance(d, int) else -1 for d in i.shape) for i in self.inputs]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def check_inputs(self, inputs, dynamic=None):
        # Symbolic ONNX dims (-1 here) accept any size.
        shapes = self.input_shapes
        dyn = [dict(d or {}) for d in (dynamic or self.dynamic_axes or [{}] * len(shapes))]
        for i, shape in enumerate(shapes):
            for axis, s in enumerate(shape):
                if s == -1:
                    dyn[i].setdefault(str(axis), [0, 1 << 30])
        super().check_inputs(inputs, dyn)

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        feed = {i.name: x.detach().cpu().numpy().astype(np.float32, copy=False) for i, x in zip(self.inputs, inputs)}
        try:
            outs = self.session.run(self.output_names, feed)
        except Exception as e:
            raise ArtifactError(f"ONNX Runtime failed to run the model: {str(e).splitlines()[0]}") from None
        return [torch.from_numpy(np.asarray(o)) for o in outs]

    def end_profiling(self) -> Path:
        return Path(self.session.end_profiling())
