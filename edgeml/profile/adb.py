"""Profiling a .pte on an Android phone over adb.

Two ways to run the program on the phone, both ExecuTorch's own:

* a benchmark **app**: ExecuTorch's ``org.pytorch.minibench`` (``extension/benchmark/android/
  benchmark``; the default) or edgeml's demo app ``org.edgeml.demo`` (``android_demo/``), which
  answers the same intent and writes the same JSON. The app is started with
  ``am start -W -S -n PKG/.BenchmarkActivity --es model_dir DIR --ei num_iter N --ei
  num_warm_up_iter W``; it loads the first ``.pte`` in ``DIR``, times N runs after W warm-up runs,
  and writes ``files/benchmark_results.json`` (read with ``run-as PKG cat``): a list of
  ``{"benchmarkModel": {name, backend, quantization}, "metric", "actualValue", "targetValue",
  "deviceInfo"}`` with the metrics ``avg_inference_latency(ms)``,
  ``trimmean_inference_latency(ms)``, ``model_load_time(ms)``, ``load_status`` and
  ``ram_pss_usage(mb)``. The app names the model from the file name
  ``<model>_<backend>_<quant>.pte``, so the artifact is pushed under that name.
* an ``executor_runner`` binary the user built for the phone (``--runner PATH``), run as
  ``RUNNER --model_path X.pte --num_executions W+N [--cpu_threads T]``. Of its log (stdout and
  stderr; with ExecuTorch's Android PAL the log goes to logcat instead, which is read then) these
  lines are parsed, wherever they sit in a line:

      Model loaded in <ms> ms.                              (load time; newer runners)
      Iteration <i> of <n>: <ms> ms                         (one per execution; newer runners)
      Model executed successfully <n> time(s) in <ms> ms.   (required: the total)

  With per-execution lines the first W are dropped as warm-up and the rest give the full
  statistics; without them only the mean over all W+N executions is known (warm-up included).

Nothing here measures anything itself: every figure in the report is the phone's, read from what
the app or the runner reports. Figures neither reports (per-operator time, p50 from the app,
host-side memory) are None, with the reason in ``ProfileReport.unavailable``.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeml.errors import DeviceError, UsageError
from edgeml.profile.compare import Comparison, interleaved_order
from edgeml.profile.host import ProfileReport, latency_stats
from edgeml.quantize.schemes import SCHEME_INFO
from edgeml.runtime.runners import OpenedArtifact, open_artifact

DEVICE_DIR = "/data/local/tmp/edgeml"
RESULTS_FILE = "files/benchmark_results.json"
# The benchmark app's own pattern for <model>_<backend>_<quant> (greedy: the model takes the rest).
BENCHMARK_NAME = re.compile(r"(\w+)_([\w+]+)_(\w+)")
QUANT_TAGS = {name: scheme.tag for name, scheme in SCHEME_INFO.items()}


@dataclass(frozen=True)
class BenchmarkApp:
    name: str
    package: str
    activity: str
    threads_extra: str | None  # the intent extra for the thread count, if the app takes one
    inputs: str  # what the app feeds the program
    pss: str  # what its ram_pss_usage(mb) means


APPS = {
    "minibench": BenchmarkApp(
        "minibench", "org.pytorch.minibench", ".BenchmarkActivity", None,
        "the runtime's default inputs (tensors of ones at the program's input sizes)",
        "increase of the app's PSS over its PSS before loading the program",
    ),
    "edgeml-demo": BenchmarkApp(
        "edgeml-demo", "org.edgeml.demo", ".BenchmarkActivity", "num_threads",
        "the bundled sample photo, preprocessed as the manifest says",
        "the app's total PSS after the timed runs",
    ),
}

INSTALL_HINTS = {
    "minibench": "build ExecuTorch's benchmark app (extension/benchmark/android/benchmark in the ExecuTorch "
                 "repository, a debug build) and `adb install` it, or use --app edgeml-demo or --runner",
    "edgeml-demo": "build android_demo/ (see android_demo/README.md, a debug build) and `adb install` it",
}


def parse_device(spec: str) -> str | None:
    """``adb`` -> None (the one attached device), ``adb:SERIAL`` -> SERIAL."""
    if spec == "adb":
        return None
    if spec.startswith("adb:") and spec[4:].strip():
        return spec[4:].strip()
    raise UsageError(f"--device {spec!r}: expected host, adb or adb:SERIAL")


def find_adb() -> str:
    exe = shutil.which("adb")
    if exe is None:
        raise DeviceError("adb is not on PATH: install Android's platform-tools "
                          "(https://developer.android.com/tools/releases/platform-tools) and add it to PATH")
    return exe


class Adb:
    """``adb`` bound to one attached device; every command runs with ``-s SERIAL``."""

    def __init__(self, serial: str | None = None, *, executable: str | None = None, timeout_s: float = 300.0):
        self.exe = executable or find_adb()
        self.timeout_s = timeout_s
        self.serial = ""
        self.serial = self._select(serial or os.environ.get("ANDROID_SERIAL") or None)

    def _call(self, args: Sequence[str], *, timeout: float | None = None, with_serial: bool = True):
        cmd = [self.exe, *(["-s", self.serial] if with_serial else []), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=timeout or self.timeout_s)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"`adb {' '.join(args)[:80]}` did not finish in {timeout or self.timeout_s:g} s: "
                              "is the phone still attached and awake (`adb devices`)?") from None
        except OSError as e:
            raise DeviceError(f"cannot run adb ({self.exe}): {e}") from None

    def devices(self) -> list[tuple[str, str]]:
        """(serial, state) of every device adb lists; state is device, unauthorized, offline, ..."""
        p = self._call(["devices"], with_serial=False, timeout=60)
        if p.returncode != 0:
            raise DeviceError(f"`adb devices` failed: {_tail(p.stdout + p.stderr)}")
        found = []
        for line in p.stdout.splitlines():
            line = line.strip()
            if not line or line.startswith(("List of devices", "*")):
                continue
            parts = line.split(None, 1)
            found.append((parts[0], parts[1].split()[0] if len(parts) > 1 else "unknown"))
        return found

    def _select(self, serial: str | None) -> str:
        found = self.devices()
        if serial is not None:
            states = dict(found)
            if serial not in states:
                listed = ", ".join(s for s, _ in found) or "none"
                raise DeviceError(f"no device {serial} attached (adb devices lists: {listed})")
            _check_state(serial, states[serial])
            return serial
        ready = [s for s, state in found if state == "device"]
        if len(ready) == 1:
            return ready[0]
        if len(ready) > 1:
            raise DeviceError(f"{len(ready)} devices attached ({', '.join(ready)}): "
                              f"choose one with --device adb:SERIAL")
        for s, state in found:
            _check_state(s, state)
        raise DeviceError("no Android device attached: connect a phone with USB debugging on "
                          "(Settings > Developer options) and check that `adb devices` lists it")

    def shell(self, command: str | Sequence[str], *, timeout: float | None = None):
        """Run ``command`` in the phone's shell; a sequence is quoted word by word."""
        text = command if isinstance(command, str) else shlex.join(command)
        return self._call(["shell", text], timeout=timeout)

    def push(self, local: str | Path, remote: str) -> None:
        p = self._call(["push", str(local), remote])
        if p.returncode != 0:
            raise DeviceError(f"`adb push {Path(local).name} {remote}` failed: {_tail(p.stdout + p.stderr)}")

    def getprops(self) -> dict[str, str]:
        p = self.shell("getprop", timeout=60)
        if p.returncode != 0:
            raise DeviceError(f"`adb shell getprop` failed on {self.serial}: {_tail(p.stdout + p.stderr)}")
        return dict(re.findall(r"^\[([^\]]*)\]: \[(.*)\]\s*$", p.stdout, flags=re.M))


def _check_state(serial: str, state: str) -> None:
    if state == "device":
        return
    hints = {
        "unauthorized": "unlock the phone and accept the 'Allow USB debugging' prompt",
        "offline": "reconnect the cable, or run `adb kill-server` and try again",
        "no": "adb lacks permission for the USB device (udev rules on Linux)",
    }
    raise DeviceError(f"device {serial} is {state}: {hints.get(state, 'check `adb devices`')}")


def _tail(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "(no output)"


def device_info(adb: Adb) -> dict:
    """The phone's identity from getprop: model, SoC, ABI, Android version."""
    props = adb.getprops()
    release = props.get("ro.build.version.release", "")
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware", "")
    model = props.get("ro.product.model", "")
    return {
        "kind": "adb", "serial": adb.serial, "model": model, "brand": props.get("ro.product.brand", ""),
        "manufacturer": props.get("ro.product.manufacturer", ""), "soc": soc,
        "soc_manufacturer": props.get("ro.soc.manufacturer", ""), "abi": props.get("ro.product.cpu.abi", ""),
        "android": release, "sdk": props.get("ro.build.version.sdk", ""), "os": f"Android {release}",
        # The host report's keys, so code that reads either finds them.
        "machine": model, "processor": soc, "cores": None,
    }


def device_file_stem(opened: OpenedArtifact) -> str:
    """``<model>_<backend>_<quant>``: the artifact's own stem if it has that form, else built from the manifest."""
    stem = opened.path.stem
    if BENCHMARK_NAME.fullmatch(stem):
        return stem
    m = opened.manifest
    parts = [m.model_name, m.artifact.get("backend", "xnnpack"), QUANT_TAGS.get(m.quantization.get("scheme"), "fp32")]
    return "_".join(re.sub(r"\W", "_", str(p)) or "x" for p in parts)


def expected_model_name(stem: str) -> str:
    match = BENCHMARK_NAME.fullmatch(stem)
    return match.group(1) if match else stem


def upper_bound_shapes(opened: OpenedArtifact) -> list[list[int]]:
    shapes = []
    for spec in opened.manifest.inputs:
        shape = list(spec.shape)
        for axis, (_, hi) in (spec.dynamic or {}).items():
            shape[int(axis)] = int(hi)
        shapes.append(shape)
    return shapes


class MalformedResults(ValueError):
    pass


def parse_benchmark_results(text: str, expected_name: str) -> dict:
    """The benchmark app's JSON -> {avg_ms, trimmed_ms, load_ms, load_status, pss_mb, model, device_info}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedResults(f"not JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(data, list) or not data or not all(isinstance(m, dict) for m in data):
        raise MalformedResults("not a list of metric objects")
    metrics = {}
    for m in data:
        if not isinstance(m.get("metric"), str) or not isinstance(m.get("actualValue"), (int, float)):
            raise MalformedResults(f"an entry lacks metric/actualValue: {json.dumps(m)[:120]}")
        metrics[m["metric"]] = float(m["actualValue"])
    model = data[0].get("benchmarkModel") or {}
    if model.get("name") != expected_name:
        raise DeviceError(f"the app's results are for model {model.get('name')!r}, not {expected_name!r}: "
                          "is another .pte in the model folder?")
    status = int(metrics.get("load_status", 0))
    if status != 0:
        raise DeviceError(
            f"the app could not load the program (ExecuTorch error code {status:#x}): the app's ExecuTorch "
            "runtime must be the version the artifact was exported with (manifest tools.executorch)")
    if "avg_inference_latency(ms)" not in metrics:
        raise MalformedResults("no avg_inference_latency(ms) metric")
    return {
        "avg_ms": metrics["avg_inference_latency(ms)"],
        "trimmed_ms": metrics.get("trimmean_inference_latency(ms)"),
        "load_ms": metrics.get("model_load_time(ms)"),
        "load_status": status,
        "pss_mb": metrics.get("ram_pss_usage(mb)"),
        "model": model,
        "device_info": data[0].get("deviceInfo"),
        "metrics": data,
    }


_NUM = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
RUNNER_LOAD = re.compile(r"Model loaded in " + _NUM + r" ms")
RUNNER_ITERATION = re.compile(r"Iteration (\d+) of (\d+): " + _NUM + r" ms")
RUNNER_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in " + _NUM + r" ms")


def parse_runner_output(text: str, warmup: int) -> dict | None:
    """executor_runner's log -> {samples, avg_ms, load_ms, executions}; None without the total line."""
    total = RUNNER_TOTAL.findall(text)
    if not total:
        return None
    executions, total_ms = int(total[-1][0]), float(total[-1][1])
    iterations = [float(ms) for _, _, ms in RUNNER_ITERATION.findall(text)]
    load = RUNNER_LOAD.findall(text)
    samples = iterations[warmup:] if len(iterations) == executions and executions > warmup else None
    return {
        "executions": executions, "total_ms": total_ms,
        "avg_ms": statistics.fmean(samples) if samples else total_ms / max(executions, 1),
        "samples": samples, "load_ms": float(load[-1]) if load else None,
    }


class AppBackend:
    """Runs a pushed .pte through a benchmark app and reads its JSON."""

    def __init__(self, adb: Adb, app: BenchmarkApp, *, timeout_s: float):
        self.adb, self.app, self.timeout_s = adb, app, timeout_s

    def prepare(self) -> None:
        p = self.adb.shell(["pm", "path", self.app.package], timeout=60)
        if p.returncode != 0 or "package:" not in p.stdout:
            raise DeviceError(f"{self.app.package} is not installed on {self.adb.serial}: "
                              f"{INSTALL_HINTS[self.app.name]}")

    def _run_as(self, *args: str):
        p = self.adb.shell(["run-as", self.app.package, *args], timeout=60)
        out = (p.stdout + p.stderr).strip()
        if out.startswith("run-as:"):
            hint = ("install a debug build of the app (run-as reads only debuggable apps' files)"
                    if "not debuggable" in out else INSTALL_HINTS[self.app.name])
            raise DeviceError(f"{out.splitlines()[0]}: {hint}")
        return p

    def run(self, remote_dir: str, stem: str, *, runs: int, warmup: int, threads: int | None) -> dict:
        pkg = self.app.package
        self._run_as("rm", "-f", RESULTS_FILE)
        extras = ["--es", "model_dir", remote_dir, "--ei", "num_iter", str(runs), "--ei", "num_warm_up_iter",
                  str(warmup)]
        if threads:
            extras += ["--ei", self.app.threads_extra, str(threads)]
        p = self.adb.shell(["am", "start", "-W", "-S", "-n", f"{pkg}/{self.app.activity}", *extras])
        out = p.stdout + p.stderr
        if p.returncode != 0 or re.search(r"^(Error|Exception)", out, flags=re.M):
            raise DeviceError(f"`am start {pkg}/{self.app.activity}` failed: {_tail(out)}")
        deadline = time.monotonic() + self.timeout_s
        poll = min(0.5, self.timeout_s / 10)
        malformed = 0
        while True:
            p = self._run_as("cat", RESULTS_FILE)
            if p.returncode == 0 and p.stdout.strip():
                try:
                    return parse_benchmark_results(p.stdout, expected_model_name(stem))
                except MalformedResults as e:
                    # The app may be writing the file right now; a file still bad later is bad.
                    malformed += 1
                    if malformed >= 3 or time.monotonic() > deadline:
                        raise DeviceError(f"{pkg} wrote a malformed {RESULTS_FILE}: {e}") from None
            elif time.monotonic() > deadline:
                raise DeviceError(
                    f"{pkg} wrote no {RESULTS_FILE} within {self.timeout_s:g} s (raise --timeout for a slow "
                    f"model; `adb logcat` shows why the app stopped)")
            time.sleep(poll)


class RunnerBackend:
    """Runs a pushed .pte with an executor_runner binary and parses its log."""

    def __init__(self, adb: Adb, runner: Path, device_dir: str, *, timeout_s: float):
        if not runner.is_file():
            raise UsageError(f"--runner {runner}: no such file")
        self.adb, self.local, self.timeout_s = adb, runner, timeout_s
        self.remote = f"{device_dir}/{runner.name}"

    def prepare(self) -> None:
        self.adb.shell(["mkdir", "-p", str(Path(self.remote).parent)])
        self.adb.push(self.local, self.remote)
        p = self.adb.shell(["chmod", "755", self.remote])
        if p.returncode != 0:
            raise DeviceError(f"cannot make {self.remote} executable: {_tail(p.stdout + p.stderr)}")

    def run(self, remote_dir: str, stem: str, *, runs: int, warmup: int, threads: int | None) -> dict:
        since = self.adb.shell(["date", "+%s"]).stdout.strip()
        cmd = [self.remote, "--model_path", f"{remote_dir}/{stem}.pte", "--num_executions", str(warmup + runs)]
        if threads:
            cmd += ["--cpu_threads", str(threads)]
        p = self.adb.shell(cmd, timeout=self.timeout_s)
        text = p.stdout + "\n" + p.stderr
        parsed = parse_runner_output(text, warmup) if p.returncode == 0 else None
        if parsed is None and p.returncode == 0 and since.isdigit():
            # A runner built with ExecuTorch's Android PAL logs to logcat, not to its output.
            log = self.adb._call(["logcat", "-d", "-T", f"{since}.000"], timeout=60)
            text = log.stdout
            parsed = parse_runner_output(text, warmup)
        if parsed is None:
            raise DeviceError(f"{self.local.name} failed on the phone (exit {p.returncode}): "
                              f"{_tail(p.stdout + p.stderr)}")
        parsed["log"] = [ln for ln in text.splitlines()
                         if RUNNER_TOTAL.search(ln) or RUNNER_LOAD.search(ln) or RUNNER_ITERATION.search(ln)]
        return parsed


def profile_on_device(
    artifacts: Sequence[str | Path],
    *,
    serial: str | None = None,
    runs: int = 50,
    warmup: int = 10,
    threads: int | None = None,
    app: str = "minibench",
    runner: str | Path | None = None,
    repeat: int = 1,
    cooldown_s: float = 0.0,
    device_dir: str = DEVICE_DIR,
    timeout_s: float = 600.0,
    on_launch: Callable[[], None] | None = None,
) -> list[ProfileReport]:
    """Profile each artifact on the phone; several artifacts take turns, launch by launch.

    ``repeat`` launches per artifact (each: ``warmup`` + ``runs`` inferences in a fresh process),
    with ``cooldown_s`` seconds of pause before every launch but the first, so the phone's
    clocks recover from the previous one.
    """
    if runs < 1 or warmup < 0 or repeat < 1 or cooldown_s < 0:
        raise UsageError("--runs and --repeat must be >= 1, --warmup and --cooldown >= 0")
    if app not in APPS:
        raise UsageError(f"--app {app!r}: choose one of {', '.join(APPS)}")
    opened = [open_artifact(a) for a in artifacts]
    for o in opened:
        if o.format != "pte":
            raise UsageError(f"{o.path.name}: phones run ExecuTorch .pte programs; profile .{o.format} on the host")
    bench_app = APPS[app]
    if runner is None and threads and bench_app.threads_extra is None:
        raise UsageError(f"--threads: {bench_app.package} has no thread option (it uses the runtime's "
                         "default); use --app edgeml-demo or --runner for a thread count")
    adb = Adb(serial)
    device = device_info(adb)
    backend = (RunnerBackend(adb, Path(runner), device_dir, timeout_s=timeout_s) if runner is not None
               else AppBackend(adb, bench_app, timeout_s=timeout_s))
    backend.prepare()

    # Each artifact in its own folder: the app takes the first .pte of model_dir.
    placed: list[tuple[str, str]] = []
    for i, o in enumerate(opened):
        stem = device_file_stem(o)
        folder = stem if all(f != f"{device_dir}/{stem}" for f, _ in placed) else f"{stem}-{i}"
        remote_dir = f"{device_dir}/{folder}"
        p = adb.shell(f"rm -rf {shlex.quote(remote_dir)} && mkdir -p {shlex.quote(remote_dir)}")
        if p.returncode != 0:
            raise DeviceError(f"cannot create {remote_dir} on the phone: {_tail(p.stdout + p.stderr)}")
        adb.push(o.path, f"{remote_dir}/{stem}.pte")
        adb.push(o.path.with_suffix(".json"), f"{remote_dir}/{stem}.json")
        placed.append((remote_dir, stem))

    launches: list[list[dict]] = [[] for _ in opened]
    first = True
    for r in range(repeat):
        for i in interleaved_order(r, len(opened)):
            if not first and cooldown_s:
                time.sleep(cooldown_s)
            first = False
            remote_dir, stem = placed[i]
            result = backend.run(remote_dir, stem, runs=runs, warmup=warmup, threads=threads)
            result["round"] = r
            launches[i].append(result)
            if on_launch:
                on_launch()
    return [
        _device_report(o, device, launches[i], placed[i][1], runs=runs, warmup=warmup, threads=threads,
                       app=None if runner is not None else bench_app, runner=backend if runner is not None else None,
                       cooldown_s=cooldown_s, others=len(opened) - 1)
        for i, o in enumerate(opened)
    ]


def compare_on_device(artifacts: Sequence[str | Path], **kwargs) -> Comparison:
    """``profile_on_device`` for two or more artifacts, with ratios against the first."""
    if len(artifacts) < 2:
        raise UsageError("--compare needs at least two artifacts")
    reports = profile_on_device(artifacts, **kwargs)
    repeat = kwargs.get("repeat", 1)
    return Comparison(reports, repeat, "interleaved launches (one per artifact per round, in random order)")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _device_report(opened: OpenedArtifact, device: dict, launches: list[dict], stem: str, *, runs: int,
                   warmup: int, threads: int | None, app: BenchmarkApp | None, runner: RunnerBackend | None,
                   cooldown_s: float, others: int) -> ProfileReport:
    unavailable: dict[str, str] = {}
    notes: list[str] = []
    k = len(launches)
    pause = f", {cooldown_s:g} s pause before each launch" if cooldown_s and (k > 1 or others) else ""
    turns = f", taking turns with {others} other artifact(s)" if others else ""
    samples: list[float] = []
    if app is not None:
        tool = f"{app.package} ({app.name})"
        notes.append(f"{tool}: {k} launch(es) of {warmup} warm-up + {runs} timed runs in a fresh app process"
                     f"{pause}{turns}; input: {app.inputs}")
        notes.append("mean and trimmed mean (middle 80%) are the app's own figures, averaged over launches")
        stats: dict[str, float | None] = {"min": None, "p50": None, "p90": None, "max": None,
                                          "mean": _mean([x["avg_ms"] for x in launches]),
                                          "trimmed_mean": _mean([x["trimmed_ms"] for x in launches])}
        why = "the benchmark app reports only the mean and the trimmed mean, not the single runs"
        unavailable["latency_ms"] = why
        for key in ("min", "p50", "p90", "max"):
            unavailable[f"stats.{key}"] = why
        if stats["trimmed_mean"] is None:
            unavailable["stats.trimmed_mean"] = f"{app.package} did not report trimmean_inference_latency(ms)"
        pss = _mean([x["pss_mb"] for x in launches])
        if pss is None:
            unavailable["ram_pss_mb"] = f"{app.package} did not report ram_pss_usage(mb)"
        else:
            notes.append(f"ram_pss_mb: {app.pss} (ram_pss_usage(mb))")
        raw = [{"round": x["round"], "metrics": x["metrics"]} for x in launches]
    else:
        assert runner is not None
        tool = runner.local.name
        have_runs = all(x["samples"] for x in launches)
        notes.append(f"{tool}: {k} launch(es) of {warmup + runs} executions{pause}{turns}; "
                     "input: tensors of ones at the program's input sizes")
        if have_runs:
            samples = [s for x in launches for s in x["samples"]]
            stats = latency_stats(samples)
            notes.append(f"the first {warmup} executions of each launch are dropped as warm-up")
        else:
            stats = {"min": None, "p50": None, "p90": None, "max": None, "trimmed_mean": None,
                     "mean": _mean([x["avg_ms"] for x in launches])}
            why = f"{tool} printed only its total time, no 'Iteration i of n' lines"
            unavailable["latency_ms"] = why
            for key in ("min", "p50", "p90", "max", "trimmed_mean"):
                unavailable[f"stats.{key}"] = why
            if warmup:
                notes.append(f"the mean includes the {warmup} warm-up executions ({why})")
        pss = None
        unavailable["ram_pss_mb"] = "executor_runner does not report memory"
        raw = [{"round": x["round"], "executions": x["executions"], "total_ms": x["total_ms"], "log": x["log"]}
               for x in launches]
    load_ms = _mean([x["load_ms"] for x in launches])
    if load_ms is None:
        unavailable["load_ms"] = f"{tool} did not report a load time"
    unavailable["per_op"] = ("per-operator time needs an ETDump from the phone (an app or runner built with "
                             "ExecuTorch's event tracer); not collected by edgeml")
    unavailable["peak_rss_mb"] = unavailable["rss_increase_mb"] = "host-process memory; not measured on the phone"
    if any(spec.dynamic for spec in opened.manifest.inputs):
        notes.append("dynamic input sizes: the phone runs the program at the upper bound of each dynamic axis")
    return ProfileReport(
        artifact=opened.path.name, model=opened.manifest.model_name, format=opened.format,
        quantization=opened.manifest.quantization.get("scheme", "none"), device=device, threads=threads,
        runs=runs, warmup=warmup, load_ms=load_ms, latency_ms=samples, stats=stats,
        delegation=opened.manifest.delegation, peak_rss_mb=None, rss_increase_mb=None, per_op=[],
        input_shapes=upper_bound_shapes(opened), ram_pss_mb=pss, unavailable=unavailable, notes=notes,
        raw=[{"device_file": f"{stem}.pte", **r} for r in raw],
    )
