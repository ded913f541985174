"""``edgeml verify ARTIFACT --on aarch64``: the artifact's program on emulated ARM CPUs.

The host does everything that is not the edge runtime: it checks the artifact against its
manifest, preprocesses the images into the program's input tensors, runs the PyTorch reference
and its own (x86) run of the program. The aarch64 side is one process per CPU profile, started
as ``qemu-aarch64 -L rootfs -cpu PROFILE python3.11 _remote_runner.py`` (edgeml.aarch64.setup),
which reads every input from one .npz, runs the program on each, and writes the outputs to
another .npz: torch and ExecuTorch take about a minute to import under emulation, so all images
go through one process. Each profile's outputs are scored against the reference (the verify
threshold applies) and against the host run (how far the ARM kernels are from the x86 ones:
fp32 rounding in the summation order, or bit-identical for int8).

The CPU profile decides which micro-kernels run: XNNPACK and KleidiAI read the emulated CPU's
features (qemu fakes /proc/cpuinfo and the hardware capability bits), so ``cortex-a72`` runs
plain NEON, ``cortex-a76`` the dot-product (SDOT) kernels, ``max,sme=off`` the i8mm (SMMLA) ones
and ``max`` the SME ones. Emulated timings mean nothing and are not reported.
"""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeml.aarch64 import DEFAULT_CPUS, Aarch64EnvError, resolve_cpu
from edgeml.aarch64.setup import Aarch64Env, find_env
from edgeml.errors import ArtifactError, InputShapeError, UsageError

REMOTE_RUNNER = Path(__file__).with_name("_remote_runner.py")
# Features worth naming: the ones that select different int8 / fp32 micro-kernels.
KERNEL_FEATURES = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme", "sme2")


def kernel_features(info: dict) -> list[str]:
    """The kernel-selecting CPU features the emulated process saw (from its /proc/cpuinfo)."""
    features = set(info.get("cpu", {}).get("features", []))
    return [f for f in KERNEL_FEATURES if f in features]


@dataclass
class Job:
    """One artifact and the inputs of each of its program calls."""

    artifact: Path
    format: str
    calls: Sequence[Sequence[np.ndarray]]
    sha256: str | None = None


@dataclass
class JobResult:
    outputs: list[list[np.ndarray]] | None  # per call, per output; None if the job failed
    info: dict
    error: str | None = None  # why it failed
    crashed: bool = False  # the aarch64 process itself died (not an error the runtime reported)


def run_jobs(env: Aarch64Env, jobs: Sequence[Job], cpu: str, *, on_call: Callable[[int], None] | None = None,
             timeout: float | None = None) -> list[JobResult]:
    """Run every job in one aarch64 process on CPU model ``cpu`` (torch and ExecuTorch are imported
    once). ``on_call(job_index)`` is called after each program call."""
    import json

    cpu = resolve_cpu(cpu)
    with tempfile.TemporaryDirectory(prefix="edgeml-aarch64-") as tmp:
        tmp_path = Path(tmp)
        specs = []
        for j, job in enumerate(jobs):
            inputs = tmp_path / f"job{j}_inputs.npz"
            np.savez(inputs, **{f"call{i:05d}_in{k}": np.ascontiguousarray(x, dtype=np.float32)
                                for i, xs in enumerate(job.calls) for k, x in enumerate(xs)})
            specs.append({"artifact": str(Path(job.artifact).resolve()), "format": job.format, "sha256": job.sha256,
                          "inputs": str(inputs), "outputs": str(tmp_path / f"job{j}_outputs.npz"),
                          "info": str(tmp_path / f"job{j}_info.json")})
        (tmp_path / "jobs.json").write_text(json.dumps(specs))
        argv = [str(REMOTE_RUNNER), "--jobs", str(tmp_path / "jobs.json")]
        stderr_path = tmp_path / "stderr.txt"
        with open(stderr_path, "wb") as err:
            try:
                proc = subprocess.Popen(env.command(cpu, argv), env=env.environ(cpu), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=err, text=True)
            except OSError as e:
                raise Aarch64EnvError(f"cannot start {env.qemu}: {e}") from None
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    parts = line.split()
                    if len(parts) == 4 and parts[0] == "edgeml-progress" and on_call:
                        on_call(int(parts[1]))
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise Aarch64EnvError(f"the aarch64 run on {cpu} took longer than {timeout:.0f} s") from None
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        lines = stderr_path.read_text(errors="replace").strip().splitlines()
        errors: dict[int, str] = {}
        for ln in lines:
            m = re.match(r"edgeml-remote-error: job (\d+): (.*)", ln)
            if m:
                errors[int(m.group(1))] = m.group(2)
        if rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else f"signal {-rc}"
            death = f"the aarch64 process died with {name}" + (f" ({lines[-1]})" if lines else "")
        elif rc != 0 and not errors:
            death = f"the aarch64 process failed (exit {rc})" + (f": {lines[-1]}" if lines else "")
        else:
            death = ""
        results: list[JobResult] = []
        for j, spec in enumerate(specs):
            out_path, info_path = Path(spec["outputs"]), Path(spec["info"])
            if j in errors:
                results.append(JobResult(None, {}, errors[j]))
            elif not out_path.is_file() or not info_path.is_file():
                results.append(JobResult(None, {}, death or "no outputs written", crashed=bool(death)))
            else:
                with np.load(out_path, allow_pickle=False) as z:
                    per_call: dict[int, dict[int, np.ndarray]] = {}
                    for key in z.files:
                        i, k = key.removeprefix("call").split("_out")
                        per_call.setdefault(int(i), {})[int(k)] = z[key]
                if sorted(per_call) != list(range(len(jobs[j].calls))):
                    results.append(JobResult(None, {}, f"{len(per_call)} results for {len(jobs[j].calls)} calls"))
                    continue
                outs = [[o[k] for k in sorted(o)] for _, o in sorted(per_call.items())]
                results.append(JobResult(outs, json.loads(info_path.read_text())))
    return results


def run_calls(env: Aarch64Env, artifact: Path, fmt: str, calls: Sequence[Sequence[np.ndarray]], cpu: str, *,
              sha256: str | None = None, on_call: Callable[[], None] | None = None,
              timeout: float | None = None) -> tuple[list[list[np.ndarray]], dict]:
    """Run ``calls`` (each a list of input arrays) through ``artifact`` in one aarch64 process on
    CPU model ``cpu``; returns the outputs of every call and what the process reported."""
    [result] = run_jobs(env, [Job(Path(artifact), fmt, calls, sha256)], cpu,
                        on_call=(lambda _: on_call()) if on_call else None, timeout=timeout)
    if result.crashed:
        raise Aarch64EnvError(f"{Path(artifact).name} on aarch64 ({resolve_cpu(cpu)}): {result.error}")
    if result.error is not None or result.outputs is None:
        raise ArtifactError(f"{Path(artifact).name} on aarch64 ({resolve_cpu(cpu)}): {result.error}")
    return result.outputs, result.info


@dataclass
class HostRun:
    """What the host computed for the images: the program's inputs per call, the reference's and
    the host runtime's outputs per call (only the real rows; a short last call is padded by
    cycling through its images, and the repeats are dropped)."""

    images: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    inputs: list[list[np.ndarray]] = field(default_factory=list)
    reference: list[list] = field(default_factory=list)
    host: list[list] = field(default_factory=list)


@dataclass
class Aarch64Report:
    artifact: Path
    threshold_db: float
    reference: str
    host_runtime: str
    host: dict  # parity of the host run vs the reference
    profiles: dict[str, dict]  # cpu -> {"vs_reference": parity, "vs_host": parity, "info": ..., "features": ...}
    qemu: str = ""

    @property
    def passed(self) -> bool:
        return all(p["vs_reference"]["worst_sqnr_db"] >= self.threshold_db for p in self.profiles.values())

    def to_dict(self) -> dict:
        return {"artifact": str(self.artifact), "threshold_db": self.threshold_db, "passed": self.passed,
                "reference": self.reference, "host_runtime": self.host_runtime, "qemu": self.qemu,
                "host": self.host, "profiles": self.profiles}


def score(names: Sequence[str], logits: bool, run: HostRun, expected: list[list], got: list[list]) -> dict:
    """Parity (edgeml.runtime.verify.ParityAccumulator) of ``got`` against ``expected``, both per
    program call of ``run``, over the real rows only."""
    import torch

    from edgeml.runtime.verify import ParityAccumulator

    acc = ParityAccumulator(names, logits=logits)
    start = 0
    for rows, exp, out in zip(run.rows, expected, got):
        acc.add(run.images[start:start + rows], [torch.as_tensor(e)[:rows] for e in exp],
                [torch.as_tensor(np.asarray(o))[:rows] for o in out])
        start += rows
    return acc.result()


def _reference_module(manifest, checkpoint):
    """The eager model the artifact was exported from (edgeml.runtime.verify's rebuild)."""
    from edgeml.runtime.verify import reference_from_manifest

    return reference_from_manifest(manifest, checkpoint=checkpoint)


def _threshold(manifest, min_sqnr: float | None) -> float:
    """The verify threshold: ``min_sqnr``, else the default of the artifact's quantization scheme."""
    from edgeml.runtime.verify import verify_threshold

    return verify_threshold(manifest, min_sqnr)


def host_run(artifact: str | Path, *, images: str | Path | None = None, checkpoint: str | Path | None = None,
             resolution: int | None = None, reference: str = "eager",
             on_image: Callable[[], None] | None = None):
    """Open ``artifact`` distrustfully and compute its inputs, reference and host outputs for
    ``images`` (default: the samples). Returns (opened artifact, HostRun, reference description,
    host runtime description)."""
    import torch

    from edgeml.images import Preprocessing, list_images, load_image, sample_images
    from edgeml.runtime.runners import make_runner, open_artifact
    from edgeml.runtime.verify import Reference

    opened = open_artifact(artifact)
    manifest = opened.manifest
    if manifest.preprocessing is None:
        raise ArtifactError("manifest has no preprocessing: cannot feed images to this artifact")
    if len(manifest.inputs) != 1:
        raise ArtifactError(f"{opened.path.name} takes {len(manifest.inputs)} inputs; verify feeds one image tensor")
    module = _reference_module(manifest, checkpoint)
    ref = Reference(module, reference)
    pre = Preprocessing.from_dict(manifest.preprocessing)
    if resolution is not None and resolution != pre.crop:
        dyn = manifest.inputs[0].dynamic
        if not ("2" in dyn and dyn["2"][0] <= resolution <= dyn["2"][1]):
            raise InputShapeError(f"{opened.path.name} takes {pre.crop}x{pre.crop} inputs, not {resolution}")
        pre = Preprocessing.from_dict({**manifest.preprocessing, "crop": resolution, "resize_shorter": resolution})
    program_batch = int(manifest.inputs[0].shape[0])
    paths = list_images(images) if images is not None else sample_images()
    if not paths:
        raise UsageError("no images to verify on")
    runner = make_runner(opened)
    run = HostRun()
    with torch.no_grad():
        for start in range(0, len(paths), program_batch):
            chunk = paths[start:start + program_batch]
            x = torch.cat([pre(load_image(p)) for p in chunk])
            x = x[[i % len(chunk) for i in range(program_batch)]]
            runner.check_inputs([x])
            run.images += [p.name for p in chunk]
            run.rows.append(len(chunk))
            run.inputs.append([x.numpy().copy()])
            run.reference.append([t[:len(chunk)] for t in ref(x)])
            run.host.append([t.float()[:len(chunk)] for t in runner.run([x])])
            if on_image:
                for _ in chunk:
                    on_image()
    backend = manifest.artifact.get("backend") or opened.format
    host_runtime = (f"ExecuTorch ({backend})" if opened.format == "pte" else f"ONNX Runtime ({backend})") \
        + f" on the host ({os.uname().machine})"
    return opened, run, ref.description, host_runtime


def verify_on_aarch64(
    artifact: str | Path,
    *,
    cpus: Sequence[str] = DEFAULT_CPUS,
    images: str | Path | None = None,
    min_sqnr: float | None = None,
    checkpoint: str | Path | None = None,
    resolution: int | None = None,
    reference: str = "eager",
    home: str | Path | None = None,
    on_image: Callable[[], None] | None = None,
    on_profile: Callable[[str, int], Callable[[], None] | None] | None = None,
    timeout: float | None = None,
) -> Aarch64Report:
    """Verify ``artifact`` on each emulated CPU profile in ``cpus`` (qemu -cpu names or the
    aliases in edgeml.aarch64.CPU_ALIASES) against its PyTorch reference and the host's run.

    ``on_profile(cpu, n_calls)`` is called before each profile and may return a per-call callback."""
    cpus = list(dict.fromkeys(resolve_cpu(c) for c in cpus))
    if not cpus:
        raise UsageError("no CPU profile to run on")
    env = find_env(home)  # before the slow part: a missing environment is reported at once
    opened, run, ref_description, host_runtime = host_run(artifact, images=images, checkpoint=checkpoint,
                                                          resolution=resolution, reference=reference,
                                                          on_image=on_image)
    manifest = opened.manifest
    names = [o.name for o in manifest.outputs]
    logits = manifest.model.get("config", {}).get("output") == "logits"
    threshold = _threshold(manifest, min_sqnr)
    host = score(names, logits, run, run.reference, run.host)
    profiles: dict[str, dict] = {}
    qemu_version = ""
    for cpu in cpus:
        on_call = on_profile(cpu, len(run.inputs)) if on_profile else None
        outs, info = run_calls(env, opened.path, opened.format, run.inputs, cpu,
                               sha256=manifest.artifact.get("sha256"), on_call=on_call, timeout=timeout)
        profiles[cpu] = {"vs_reference": score(names, logits, run, run.reference, outs),
                         "vs_host": score(names, logits, run, run.host, outs),
                         "features": kernel_features(info), "info": info}
    try:
        import json

        qemu_version = json.loads((env.home / "env.json").read_text()).get("qemu_version", "")
    except (OSError, ValueError):
        pass
    return Aarch64Report(opened.path, threshold, ref_description, host_runtime, host, profiles,
                         qemu=f"qemu-user {qemu_version}".strip())


def _db(v: float) -> str:
    return "identical" if v == math.inf else f"{v:.1f}"


def _top1(parity: dict) -> str:
    values = [o["top1_agreement"] for o in parity["outputs"].values() if "top1_agreement" in o]
    return f"{min(values) * 100:.0f}%" if values else "n/a"


def _sqnr(parity: dict) -> float:
    return min(o["sqnr_db"] for o in parity["outputs"].values())


def max_abs_text(parity: dict) -> str:
    """The largest absolute difference; the report keeps 6 decimals, so a nonzero one below that
    reads as 0 there and as "<1e-06" here."""
    value = max(o["max_abs_error"] for o in parity["outputs"].values())
    if value == 0 and any(o["sqnr_db"] != math.inf for o in parity["outputs"].values()):
        return "<1e-06"
    return f"{value:.3g}"


def _cell(parity: dict) -> str:
    return f"{_db(_sqnr(parity))} [{_db(parity['worst_sqnr_db'])}]"


def format_aarch64_report(report: Aarch64Report) -> str:
    any_info = next(iter(report.profiles.values()))["info"] if report.profiles else {}
    lines = [f"{report.artifact.name} on aarch64 under {report.qemu}: {any_info.get('runtime', '?')}",
             f"  vs reference {report.reference}",
             f"  {len(report.host['images'])} images; SQNR in dB over all images (per-image minimum in brackets)",
             f"  {'run':<15}{'vs reference':>22}{'top-1':>7}   {'vs host':>18}{'max abs':>10}{'top-1':>7}"
             "  CPU features"]
    h = report.host
    lines.append(f"  {'host ' + os.uname().machine:<15}{_cell(h):>22}{_top1(h):>7}   {'-':>18}{'-':>10}{'-':>7}")
    for cpu, p in report.profiles.items():
        r, v = p["vs_reference"], p["vs_host"]
        lines.append(f"  {cpu:<15}{_cell(r):>22}{_top1(r):>7}   {_cell(v):>18}{max_abs_text(v):>10}{_top1(v):>7}  "
                     f"{' '.join(p['features']) or '-'}")
    worst = min((p["vs_reference"]["worst_sqnr_db"] for p in report.profiles.values()), default=math.nan)
    verdict = "PASS" if report.passed else "FAIL"
    lines.append(f"  {verdict}: worst SQNR vs reference on aarch64 {_db(worst)} dB "
                 f"({'>=' if report.passed else '<'} {report.threshold_db:g} dB threshold)")
    return "\n".join(lines)
