"""Run an artifact on the inputs in an .npz file and write its outputs to another .npz.

This file is executed by the aarch64 Python inside the emulated environment (edgeml.aarch64.run),
so it imports nothing from edgeml: only the standard library, numpy, and the runtime the
artifact needs (``executorch.runtime`` with torch for .pte, ``onnxruntime`` for .onnx). It runs
just as well under the host's own Python, which is how its contract is tested.

Contract::

    python _remote_runner.py --artifact A.pte --format pte --sha256 HEX \
        --inputs in.npz --outputs out.npz --info info.json
    python _remote_runner.py --jobs jobs.json     # a list of {"artifact", "format", "sha256",
                                                  #   "inputs", "outputs", "info"}: one process
                                                  #   (one slow import) for many artifacts

``in.npz`` holds ``call00000_in0``, ``call00000_in1``, ... (one program call per index, float32);
``out.npz`` gets ``call00000_out0``, ... for every call, and ``info.json`` what ran: the machine,
the CPU features the process sees, the runtime and its version, the number of calls. Both are
written to a temporary name and renamed, so a killed run leaves no half file. One line
``edgeml-progress JOB I N`` goes to stdout after each call. A job that fails writes nothing and
prints ``edgeml-remote-error: job J: Type: message`` on stderr; the others still run, and the
exit status is 2. ``--probe --info F`` only imports the runtimes and writes ``F``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import time

CALL_KEY = re.compile(r"^call(\d{5})_in(\d+)$")


def cpu_info(path: str | os.PathLike = "/proc/cpuinfo") -> dict:
    """What /proc/cpuinfo says (under qemu-user it is the emulated CPU's), first processor."""
    info: dict = {"machine": platform.machine()}
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("Features", "flags") and "features" not in info:
            info["features"] = value.split()
        elif key in ("CPU implementer", "CPU part", "model name") and key not in info:
            info[key] = value
    return info


def read_inputs(path: str) -> list[list]:
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        keys = sorted(z.files)
        calls: dict[int, dict[int, object]] = {}
        for key in keys:
            m = CALL_KEY.match(key)
            if not m:
                raise ValueError(f"unexpected array {key!r} in {os.path.basename(path)}")
            calls.setdefault(int(m.group(1)), {})[int(m.group(2))] = z[key]
    if sorted(calls) != list(range(len(calls))):
        raise ValueError("calls are not numbered 0..N-1")
    out = []
    for i in range(len(calls)):
        ins = calls[i]
        if sorted(ins) != list(range(len(ins))):
            raise ValueError(f"call {i}: inputs are not numbered 0..K-1")
        out.append([ins[k] for k in range(len(ins))])
    return out


class _Pte:
    def __init__(self, data: bytes) -> None:
        import torch
        from executorch.runtime import Runtime, Verification

        self.torch = torch
        program = Runtime.get().load_program(data, verification=Verification.InternalConsistency)
        self.method = program.load_method("forward")
        self.name = f"ExecuTorch {_version('executorch')}, torch {torch.__version__}"

    def run(self, inputs: list) -> list:
        import numpy as np

        outs = self.method.execute([self.torch.from_numpy(np.ascontiguousarray(x)) for x in inputs])
        return [o.detach().numpy().copy() if hasattr(o, "detach") else np.asarray(o) for o in outs]


class _Onnx:
    def __init__(self, data: bytes) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.name = f"ONNX Runtime {ort.__version__} (CPU EP)"

    def run(self, inputs: list) -> list:
        import numpy as np

        feed = {name: np.ascontiguousarray(x, dtype=np.float32) for name, x in zip(self.inputs, inputs)}
        return [np.asarray(o) for o in self.session.run(self.outputs, feed)]


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - a version string is informative only
        return "?"


def _unavailable(e: BaseException) -> str:
    return f"unavailable: {type(e).__name__}: {_first_line(e)}"


def _write_atomic(path: str, write) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_info(path: str, info: dict) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(info, indent=1).encode()))


def probe(info: dict) -> None:
    """Import the runtimes; record their versions (or why one is unavailable) in ``info``."""
    import numpy

    info["numpy"] = numpy.__version__
    try:
        import torch
        from executorch.runtime import Runtime

        Runtime.get()
        info["torch"] = torch.__version__
        info["executorch"] = _version("executorch")
    except Exception as e:  # noqa: BLE001 - reported, not raised: one runtime may be absent
        info["executorch"] = _unavailable(e)
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except Exception as e:  # noqa: BLE001
        info["onnxruntime"] = _unavailable(e)


def run_job(job: dict, index: int, info: dict) -> None:
    """One artifact over every call in its inputs file; outputs and info written atomically."""
    t0 = time.perf_counter()
    with open(job["artifact"], "rb") as f:
        data = f.read()
    if job.get("sha256") and hashlib.sha256(data).hexdigest() != job["sha256"]:
        raise ValueError(f"{os.path.basename(job['artifact'])} does not hash to the expected sha256")
    calls = read_inputs(job["inputs"])
    runner = _Pte(data) if job["format"] == "pte" else _Onnx(data)
    info["runtime"] = runner.name
    info["seconds_load"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    results: dict = {}
    for i, inputs in enumerate(calls):
        for k, y in enumerate(runner.run(inputs)):
            results[f"call{i:05d}_out{k}"] = y
        print(f"edgeml-progress {index} {i + 1} {len(calls)}", flush=True)
    info["calls"] = len(calls)
    info["seconds_run"] = round(time.perf_counter() - t1, 1)

    import numpy as np

    _write_atomic(job["outputs"], lambda f: np.savez(f, **results))
    _write_info(job["info"], info)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", help="a JSON list of jobs, each with the keys of the options below")
    p.add_argument("--artifact")
    p.add_argument("--format", choices=("pte", "onnx"))
    p.add_argument("--sha256", help="refuse to run unless the artifact's bytes hash to this")
    p.add_argument("--inputs")
    p.add_argument("--outputs")
    p.add_argument("--info")
    p.add_argument("--probe", action="store_true", help="import the runtimes, write --info, run nothing")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    base: dict = {"cpu": cpu_info(), "python": platform.python_version()}
    if args.probe:
        if not args.info:
            p.error("--probe needs --info")
        try:
            probe(base)
        except Exception as e:  # noqa: BLE001 - numpy itself is missing
            print(f"edgeml-remote-error: {type(e).__name__}: {_first_line(e)}", file=sys.stderr, flush=True)
            return 2
        base["seconds_import"] = round(time.perf_counter() - t0, 1)
        _write_info(args.info, base)
        return 0
    if args.jobs:
        with open(args.jobs) as f:
            jobs = json.load(f)
    elif args.artifact and args.format and args.inputs and args.outputs and args.info:
        jobs = [{"artifact": args.artifact, "format": args.format, "sha256": args.sha256, "inputs": args.inputs,
                 "outputs": args.outputs, "info": args.info}]
    else:
        p.error("give --jobs, or --artifact, --format, --inputs, --outputs and --info (or --probe --info)")
    failed = 0
    for index, job in enumerate(jobs):
        try:
            run_job(job, index, dict(base))
        except Exception as e:  # noqa: BLE001 - the host turns this line into an EdgeMLError
            failed += 1
            print(f"edgeml-remote-error: job {index}: {type(e).__name__}: {_first_line(e)}", file=sys.stderr,
                  flush=True)
    return 2 if failed else 0


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else ""


if __name__ == "__main__":
    sys.exit(main())
