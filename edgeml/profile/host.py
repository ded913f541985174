"""Profiling an artifact on this machine.

Timing runs and per-operator runs are separate: ETDump event tracing and ORT's profiler add
overhead, so latency figures come from a clean load, and the per-operator table from a second,
instrumented load. Per-operator rows for .pte are XNNPACK's kernels inside the delegate (from
ETDump through ExecuTorch's Inspector) plus any portable-kernel op; for .onnx they are ORT's
per-node kernel times. The JSON follows ExecuTorch's benchmark-app metric names where they
exist (``avg_inference_latency(ms)``, ``trimmean_inference_latency(ms)``, ``model_load_time(ms)``).

``ProfileReport`` is also what ``edgeml.profile.adb`` returns for a phone: a figure the phone's
tool does not measure is None (or an empty list), and ``unavailable`` says why.
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from edgeml.backends.ort.runner import OnnxRunner
from edgeml.errors import UsageError
from edgeml.runtime.runners import PteRunner, make_runner, open_artifact, quiet_native_stderr


def latency_stats(samples_ms: Sequence[float], trim: float = 0.1) -> dict[str, float]:
    """min, p50, p90, mean and the mean of the middle 80% (ExecuTorch's trimmed mean)."""
    s = sorted(samples_ms)
    n = len(s)
    k = int(n * trim)
    middle = s[k:n - k] or s

    def pct(q: float) -> float:
        pos = (n - 1) * q
        lo = int(pos)
        return s[lo] + (s[min(lo + 1, n - 1)] - s[lo]) * (pos - lo)

    return {"min": s[0], "p50": pct(0.5), "p90": pct(0.9), "mean": statistics.fmean(s),
            "trimmed_mean": statistics.fmean(middle), "max": s[-1]}


@dataclass
class OpTime:
    name: str
    delegated: bool
    calls: int
    total_ms: float

    @property
    def per_call_ms(self) -> float:
        return self.total_ms / max(self.calls, 1)


@dataclass
class ProfileReport:
    artifact: str
    model: str
    format: str
    quantization: str
    device: dict
    threads: int | None
    runs: int
    warmup: int
    load_ms: float | None
    latency_ms: list[float]
    stats: dict[str, float | None]
    delegation: dict
    peak_rss_mb: float | None
    rss_increase_mb: float | None
    per_op: list[OpTime] = field(default_factory=list)
    per_op_runs: int = 0
    input_shapes: list[list[int]] = field(default_factory=list)
    # Phone figures: the app's PSS figure in MB (see ``notes`` for which one).
    ram_pss_mb: float | None = None
    # Field name -> why it is None or empty (e.g. the phone's tool does not report it).
    unavailable: dict[str, str] = field(default_factory=dict)
    # How the figures were obtained, where that is not the host's default procedure.
    notes: list[str] = field(default_factory=list)
    # What the phone's tool returned, as parsed from its output (one entry per launch).
    raw: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_op"] = [asdict(o) | {"per_call_ms": o.per_call_ms} for o in self.per_op]
        d["benchmark_metrics"] = self.benchmark_metrics()
        return d

    def benchmark_metrics(self) -> list[dict]:
        """The same figures as ExecuTorch's Android benchmark app reports them."""
        parts = Path(self.artifact).stem.rsplit("_", 2)
        name, backend, quant = parts if len(parts) == 3 else (self.model, self.format, self.quantization)
        model = {"name": name, "backend": backend, "quantization": quant}
        if self.device.get("kind") == "adb":  # the benchmark app's Build.BRAND / Build.MODEL
            device = {"device": self.device.get("brand", ""), "arch": self.device.get("model", ""),
                      "os": self.device.get("os", ""), "totalMem": 0, "availMem": 0}
        else:
            device = {"device": self.device.get("machine", ""), "arch": self.device.get("processor", ""),
                      "os": self.device.get("os", ""), "totalMem": 0, "availMem": 0}
        return [
            {"benchmarkModel": model, "metric": metric, "actualValue": value, "targetValue": 0.0, "deviceInfo": device}
            for metric, value in (
                ("avg_inference_latency(ms)", self.stats.get("mean")),
                ("trimmean_inference_latency(ms)", self.stats.get("trimmed_mean")),
                ("model_load_time(ms)", self.load_ms),
                ("ram_pss_usage(mb)", self.ram_pss_mb),
            )
            if value is not None
        ]


def cpu_name() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_device() -> dict:
    return {"kind": "host", "machine": platform.node(), "processor": cpu_name(), "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}", "abi": platform.machine()}


_MEMORY_PROBE = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import torch
from edgeml.runtime.runners import make_runner, open_artifact
def rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
opened = open_artifact(sys.argv[1])
import executorch.runtime, onnxruntime  # imported before the baseline: not the artifact's memory
before = rss("VmRSS")
runner = make_runner(opened)
x = [torch.zeros(*s.shape) for s in opened.manifest.inputs]
for _ in range(3):
    runner.run(x)
print(json.dumps({"before": before, "peak": rss("VmHWM")}))
"""


def measure_memory(artifact: Path) -> tuple[float | None, float | None]:
    """(peak RSS, increase over the runtime's baseline) in MB, in a fresh process.

    A fresh process, because in one that has already run models the allocator reuses freed
    memory and the artifact's own footprint would not show.
    """
    import subprocess
    import sys

    if not Path("/proc/self/status").exists():
        return None, None
    try:
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(artifact)], capture_output=True,
                             text=True, timeout=600, check=True).stdout
        probe = json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None, None
    return probe["peak"], probe["peak"] - probe["before"]


def initialize_runtime(fmt: str) -> None:
    """Import and start the edge runtime that runs ``fmt`` artifacts, before any load is timed.

    Importing ExecuTorch's Python runtime takes seconds in a fresh process (it pulls in torchao
    and the exporter's modules), and ONNX Runtime's import most of one. That is the cost of this
    Python process, not of the program: a phone app pays it once at start-up, and inside
    ``export --profile`` it is already paid. ``model_load_time(ms)`` is the program's load only
    (parse, method init, XNNPACK's weight packing on the first run), as ExecuTorch's benchmark app
    reports it.
    """
    with quiet_native_stderr():
        if fmt == "pte":
            from executorch.extension.pybindings import portable_lib  # noqa: F401
            from executorch.runtime import Runtime

            Runtime.get()
        elif fmt == "onnx":
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401


def _example_inputs(runner, manifest) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = [tuple(s.shape) for s in manifest.inputs] or runner.input_shapes
    return [torch.randn(*shape, generator=g) for shape in shapes]


def profile_artifact(
    artifact: str | Path,
    *,
    runs: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    per_op: bool = True,
    per_op_runs: int = 10,
    inputs: Sequence[torch.Tensor] | None = None,
    memory: bool = True,
    on_run: Callable[[], None] | None = None,
) -> ProfileReport:
    """Load ``artifact``, time ``warmup`` + ``runs`` inferences, then (optionally) memory and per-op time.

    ``inputs`` default to seeded random tensors of the manifest's shapes; pass tensors of another
    size to time a dynamic-shape artifact at that size.
    """
    if runs < 1 or warmup < 0:
        raise UsageError("--runs must be >= 1 and --warmup >= 0")
    opened = open_artifact(artifact)
    manifest = opened.manifest
    initialize_runtime(opened.format)  # outside the timer: the load figure is the program's alone
    t0 = time.perf_counter()
    runner = make_runner(opened, threads=threads)
    x = list(inputs) if inputs is not None else _example_inputs(runner, manifest)
    runner.run(x)  # the first run completes loading (XNNPACK packs weights lazily)
    load_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(warmup):
        runner.run(x)
        if on_run:
            on_run()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        runner.run(x)
        samples.append((time.perf_counter() - t) * 1e3)
        if on_run:
            on_run()
    del runner
    peak, increase = measure_memory(opened.path) if memory else (None, None)
    unavailable = {}
    if not memory:
        unavailable["peak_rss_mb"] = "not asked for"
    ops: list[OpTime] = []
    if not per_op:
        unavailable["per_op"] = "not asked for"
    else:
        ops = (_pte_per_op if opened.format == "pte" else _onnx_per_op)(opened.path, x, threads, per_op_runs)
    return ProfileReport(
        artifact=opened.path.name, model=manifest.model_name, format=opened.format,
        quantization=manifest.quantization.get("scheme", "none"), device=host_device(), threads=threads,
        runs=runs, warmup=warmup, load_ms=load_ms, latency_ms=samples, stats=latency_stats(samples),
        delegation=manifest.delegation, peak_rss_mb=peak, rss_increase_mb=increase, per_op=ops,
        per_op_runs=per_op_runs if per_op else 0, input_shapes=[list(t.shape) for t in x],
        unavailable=unavailable,
    )


_SUFFIX = re.compile(r" #\d+$")
# OPERATOR_CALL wraps each portable kernel call, whose own native_call_<op> event is counted instead.
_SKIP_EVENTS = {"Method::init", "Program::load_method", "Method::execute", "DELEGATE_CALL", "OPERATOR_CALL"}


def _pte_per_op(path: Path, x, threads, runs: int) -> list[OpTime]:
    from executorch.devtools import Inspector
    from executorch.devtools.inspector import TimeScale

    runner = PteRunner(path, threads=threads, etdump=True)
    for _ in range(runs):
        runner.run(x)
    with tempfile.TemporaryDirectory(prefix="edgeml-etdump-") as tmp:
        etdump = Path(tmp) / "run.etdp"
        runner.write_etdump(etdump)
        inspector = Inspector(etdump_path=str(etdump), source_time_scale=TimeScale.NS,
                              target_time_scale=TimeScale.MS)
        df = inspector.to_dataframe()
    totals: dict[tuple[str, bool], list[float]] = defaultdict(lambda: [0, 0.0])
    for _, row in df.iterrows():
        name = str(row["event_name"])
        if name in _SKIP_EVENTS or row["event_block_name"] != "Execute":
            continue
        raw = list(row["raw"])
        key = (_SUFFIX.sub("", name), bool(row["is_delegated_op"]))
        totals[key][0] += len(raw)
        totals[key][1] += float(sum(raw))
    return _rank(totals, runs)


def _onnx_per_op(path: Path, x, threads, runs: int) -> list[OpTime]:
    with tempfile.TemporaryDirectory(prefix="edgeml-ort-") as tmp:
        runner = OnnxRunner(path, threads=threads, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(runs):
            runner.run(x)
        events = json.loads(runner.end_profiling().read_text())
    totals: dict[tuple[str, bool], list[float]] = defaultdict(lambda: [0, 0.0])
    for ev in events:
        if ev.get("cat") == "Node" and str(ev.get("name", "")).endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            totals[(op, True)][0] += 1
            totals[(op, True)][1] += ev.get("dur", 0) / 1e3
    return _rank(totals, runs)


def _rank(totals, runs: int) -> list[OpTime]:
    ops = [OpTime(name, delegated, int(calls / runs) or int(calls), total / runs)
           for (name, delegated), (calls, total) in totals.items()]
    return sorted(ops, key=lambda o: -o.total_ms)


def describe_device(device: dict) -> str:
    """One line naming the machine a report was measured on."""
    if device.get("kind") == "adb":
        soc = f", {device['soc']}" if device.get("soc") else ""
        return (f"{device.get('brand', '')} {device.get('model', '?')} ({device.get('abi', '?')}{soc}, "
                f"{device.get('os', 'Android ?')}, serial {device.get('serial', '?')})").strip()
    cores = f" ({device['cores']} cores)" if device.get("cores") else ""
    return f"{device.get('processor', '?')}{cores}"


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def format_report(report: ProfileReport, top: int = 15) -> str:
    s = report.stats
    shapes = f", input {'x'.join(map(str, report.input_shapes[0]))}" if report.input_shapes else ""
    lines = [f"{report.artifact} on {describe_device(report.device)}, threads={report.threads or 'default'}{shapes}"]
    load = f"load {report.load_ms:.1f} ms" if report.load_ms is not None else "load n/a"
    shown = [f"{label} {_ms(s.get(key))}" for key, label in
             (("min", "min"), ("p50", "p50"), ("p90", "p90"), ("mean", "mean"), ("trimmed_mean", "trimmed mean"))
             if s.get(key) is not None or key in ("p50", "trimmed_mean")]
    lines.append(f"  {load} | latency over {report.runs} runs after {report.warmup} warm-up: "
                 + "  ".join(shown) + " ms")
    d = report.delegation or {}
    if "compute_share" in d:
        lines.append(f"  delegated to XNNPACK: {d['delegated_nodes']}/{d['total_nodes']} nodes "
                     f"({d['share'] * 100:.1f}%), compute ops {d['compute_delegated']}/{d['compute_total']} "
                     f"({d['compute_share'] * 100:.1f}%); portable: "
                     + (", ".join(f"{k} x{v}" for k, v in d.get("portable_ops", {}).items()) or "none"))
    if report.peak_rss_mb is not None:
        lines.append(f"  memory (fresh process): +{report.rss_increase_mb:.1f} MB to load and run the artifact, "
                     f"peak RSS {report.peak_rss_mb:.0f} MB including Python and the runtimes")
    if report.ram_pss_mb is not None:
        lines.append(f"  memory (the app's PSS figure): {report.ram_pss_mb:.1f} MB")
    for note in report.notes:
        lines.append(f"  note: {note}")
    if report.device.get("kind") == "adb":  # on the host the gaps are the user's own choice of options
        by_reason: dict[str, list[str]] = defaultdict(list)
        for name, why in report.unavailable.items():
            by_reason[why].append(name)
        for why, names in by_reason.items():
            lines.append(f"  not measured: {', '.join(names)}: {why}")
    if report.per_op and top > 0:
        total = sum(o.total_ms for o in report.per_op) or 1.0
        lines.append(f"  per operator (mean per inference over {report.per_op_runs} instrumented runs):")
        lines.append(f"    {'operator':<46}{'where':>10}{'calls':>7}{'ms':>9}{'share':>8}")
        for o in report.per_op[:top]:
            where = ("xnnpack" if report.format == "pte" else "ort-cpu") if o.delegated else "portable"
            share = o.total_ms / total * 100
            lines.append(f"    {o.name[:46]:<46}{where:>10}{o.calls:>7}{o.total_ms:>9.3f}{share:>7.1f}%")
        if len(report.per_op) > top:
            lines.append(f"    ... {len(report.per_op) - top} more in --json")
    return "\n".join(lines)
