"""ARM kernels vs x86 kernels: zoo .pte programs on emulated aarch64 CPUs (qemu-user).

Every model is exported once per scheme (fp32, int8, fp16) here on the host; the same .pte then runs
on the host (x86 XNNPACK kernels) and, in one emulated aarch64 process per CPU profile, on the
ARM kernels that profile selects (cortex-a76: NEON + dot product; ``max,sme=off``: i8mm; ``max``:
SME/KleidiAI; cortex-a72: plain NEON). Per model, scheme and CPU the table gives SQNR against
the PyTorch reference (x86 run and ARM run), SQNR and max abs error of the ARM run against the
x86 run, and top-1 agreement. The note column says ``bit-identical`` when the ARM outputs equal
the x86 ones, ``fp32 rounding`` when they differ by no more than fp32 summation order would
(>= 90 dB), ``fp16 rounding`` for an fp16 program whose ARM run (native fp16 arithmetic) is as
close to PyTorch as the x86 run (within 6 dB, or at least 40 dB, what fp16 arithmetic gives through
a whole network; above fp16's 30 dB threshold, or no further than the x86 run where that is below
it), ``int8 steps``
for an int8 program whose ARM run differs from the x86 one but is as close to PyTorch (within
0.5 dB): at a few quantization points a value lands one int8 step away, where the ops before the
point round differently on the two CPUs — fp32 ops between two points (a LayerNorm's mean and
subtraction, an attention's matmuls and softmax) summing in another order, or an int8
convolution's requantization (``benchmarks/arm_bisect.py`` names the points and their ops) — and
``FINDING`` otherwise. Emulated timings mean nothing and are not reported.

Needs ``edgeml setup-aarch64`` first. Run it niced, it is CPU-bound for a long while:

    nice -n 19 .venv/bin/python benchmarks/arm_parity.py [--models mobilenetv2_ulsam,fastvithd@256]
        [--schemes none,int8] [--cpu cortex-a76 --cpu max,sme=off] [--sme] [--images DIR]
        [--work DIR] [--markdown FILE]

``--models`` defaults to every zoo model (``edgeml list``); ``NAME@RES`` exports at resolution RES,
``NAME[KEY=VALUE;...]`` passes the zoo builder keyword arguments (``siglip_so400m_384[depth=2]``:
the first two of its 27 blocks, every distinct layer shape of the whole program at a fraction of
its emulation time; quote it for the shell), ``NAME:none`` (or ``:int8``, ``:none+int8``) limits
that model to those schemes.
Artifacts already in ``--work`` (checked against their manifest) are reused.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, machine, print_table  # noqa: E402

from edgeml.aarch64 import DEFAULT_CPUS, resolve_cpu  # noqa: E402
from edgeml.aarch64.run import Job, host_run, kernel_features, max_abs_text, run_jobs, score  # noqa: E402
from edgeml.aarch64.setup import find_env  # noqa: E402
from edgeml.errors import EdgeMLError  # noqa: E402
from edgeml.quantize.schemes import default_min_sqnr  # noqa: E402

FP32_ROUNDING_DB = 90.0  # ARM vs x86 above this: summation order, not a different computation
FP16_ARM_LOSS_DB = 6.0  # fp16: ARM may lose this much against PyTorch beyond the x86 run and still agree
# ... or read at least this: fp16 arithmetic through a whole network (every ARM fp16 run so far: 43 - 52
# dB). Where the host has no fp16 arithmetic (AMD EPYC), x86 XNNPACK computes the fp16 program's ops in
# fp32 and reads 56 - 64 dB, so "within 6 dB of x86" would ask ARM's fp16 math to match fp32 math.
FP16_ARITHMETIC_DB = 40.0
INT8_ARM_LOSS_DB = 0.5  # int8: one-step flips from fp32 rounding cost at most this against PyTorch
SCHEME_LABEL = {"none": "fp32", "int8": "int8", "fp16": "fp16"}


def _db(v: float) -> str:
    return "identical" if v == math.inf else f"{v:.1f}"


def _sqnr(parity: dict) -> float:
    return min(o["sqnr_db"] for o in parity["outputs"].values())


def _top1(parity: dict) -> str:
    values = [o["top1_agreement"] for o in parity["outputs"].values() if "top1_agreement" in o]
    return f"{min(values) * 100:.0f}%" if values else "n/a"


def _verdict(scheme: str, x86_ref_db: float, arm_ref_db: float, arm_x86_db: float) -> str:
    """The note column (module doc) from the three SQNRs."""
    if arm_x86_db == math.inf:
        return "bit-identical"
    if scheme == "fp16":
        # ARMv8.2 cores compute in fp16 where x86 XNNPACK may convert around fp32 math: the two
        # round differently, so they agree when ARM is about as close to PyTorch as x86 is, or as
        # close as fp16 arithmetic gets (FP16_ARITHMETIC_DB). (A program already below the
        # threshold on x86 need only be as close on ARM.)
        wanted = min(x86_ref_db - FP16_ARM_LOSS_DB, FP16_ARITHMETIC_DB)
        ok = arm_ref_db >= min(x86_ref_db, max(default_min_sqnr("fp16"), wanted))
        return "fp16 rounding" if ok else "FINDING: fp16 on ARM is further from PyTorch than on x86"
    if arm_x86_db >= FP32_ROUNDING_DB:
        return "fp32 rounding"
    if scheme == "int8" and arm_ref_db >= x86_ref_db - INT8_ARM_LOSS_DB:
        return "int8 steps: one-step flips at quantization points, as close to PyTorch"
    return "FINDING: differs beyond fp32 rounding"


def rescore(path: Path) -> int:
    """Re-derive the note column of every table this script wrote in ``path`` (a saved table, or
    RESULTS.md), after a change of the rules; other tables are left alone. Returns rows rescored."""
    lines = path.read_text().splitlines()
    db = {"identical": math.inf}
    inverse = {v: k for k, v in SCHEME_LABEL.items()}
    done = 0
    i = 0
    while i < len(lines):
        cols = [c.strip() for c in lines[i].strip().strip("|").split("|")] if lines[i].startswith("| model |") else []
        i += 1
        if not {"scheme", "x86 vs PyTorch dB", "ARM vs PyTorch dB", "ARM vs x86 dB", "note"} <= set(cols):
            continue
        i += 1  # the |---| row
        while i < len(lines) and lines[i].startswith("|"):
            cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            row = dict(zip(cols, cells))
            if row["ARM vs x86 dB"] != "-" and row["scheme"] in inverse:
                values = [db.get(row[c]) or float(row[c])
                          for c in ("x86 vs PyTorch dB", "ARM vs PyTorch dB", "ARM vs x86 dB")]
                cells[cols.index("note")] = _verdict(inverse[row["scheme"]], *values)
                lines[i] = "| " + " | ".join(cells) + " |"
                done += 1
            i += 1
    path.write_text("\n".join(lines) + "\n")
    return done


def parse_model(item: str, schemes: list[str]) -> tuple[str, int | None, dict, list[str]]:
    """``NAME[@RES][[KEY=VALUE;...]][:SCHEME[+SCHEME]]`` -> (name, resolution, builder kwargs, schemes)."""
    from edgeml.commands import _model_arg  # the CLI's --model-arg KEY=VALUE

    item, _, only = item.strip().partition(":")
    item, _, args = item.partition("[")
    if args and not args.endswith("]"):
        raise SystemExit(f"arm_parity: --models {item}[{args}: the builder arguments end with ']'")
    try:
        kwargs = dict(_model_arg(a) for a in args[:-1].split(";") if a)
    except argparse.ArgumentTypeError as e:
        raise SystemExit(f"arm_parity: --models {item}[{args}: {e}") from None
    name, _, res = item.partition("@")
    return name, int(res) if res else None, kwargs, only.split("+") if only else schemes


def model_label(name: str, resolution: int | None, kwargs: dict) -> str:
    args = ";".join(f"{k}={v}" for k, v in kwargs.items())
    return name + (f"@{resolution}" if resolution else "") + (f"[{args}]" if args else "")


def _export(name: str, scheme: str, resolution: int | None, kwargs: dict, work: Path) -> Path:
    from edgeml.export import export
    from edgeml.runtime.runners import open_artifact

    args = "".join(f"_{k}{v}" for k, v in kwargs.items())
    out = work / f"{name}{'_' + str(resolution) if resolution else ''}{args}_{SCHEME_LABEL[scheme]}"
    existing = sorted(out.glob("*.pte"))
    if existing:
        try:
            open_artifact(existing[0])
            return existing[0]
        except EdgeMLError:
            pass
    return Path(export(name, format="pte", quantize=scheme, resolution=resolution, model_kwargs=kwargs or None,
                       output_dir=out).path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated zoo names; NAME@RES for another resolution, NAME[KEY=VALUE;...] "
                    "for builder arguments (e.g. depth=2), NAME:SCHEME[+SCHEME] for only those schemes (default: "
                    "every zoo model)")
    ap.add_argument("--schemes", default="none,int8", help="comma-separated: none (fp32), int8, fp16")
    ap.add_argument("--cpu", action="append", help=f"qemu CPU profile (repeatable; default {', '.join(DEFAULT_CPUS)})")
    ap.add_argument("--sme", action="store_true", help="also run on `max` (SME, KleidiAI kernels)")
    ap.add_argument("--images", type=Path, help="folder of images (default: the samples)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgeml-arm-parity"), help="artifacts go here")
    ap.add_argument("--markdown", type=Path, help="write the table here (default: WORK/arm_parity.md)")
    ap.add_argument("--rescore", type=Path, metavar="MD", help="only re-derive the note column of the tables this "
                    "script wrote in MD (a saved table or RESULTS.md), in place")
    args = ap.parse_args()
    if args.rescore:
        print(f"{rescore(args.rescore)} rows rescored in {args.rescore}")
        return 0

    from edgeml.models import list_models

    started = datetime.datetime.now(datetime.timezone.utc)
    env = find_env()
    env_record = json.loads((env.home / "env.json").read_text()) if (env.home / "env.json").is_file() else {}
    probe = env_record.get("probe", {})
    cpus = list(dict.fromkeys(resolve_cpu(c) for c in (args.cpu or DEFAULT_CPUS)))
    if args.sme and "max" not in cpus:
        cpus.append("max")
    schemes = [s.strip() for s in args.schemes.split(",")]
    models = [parse_model(item, schemes) for item in (args.models.split(",") if args.models else list_models())]
    header = [f"command: {command()}", f"machine: {machine()}",
              f"date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
              f"emulator: qemu-user {env_record.get('qemu_version', '?')} ({env.qemu}), aarch64 Python "
              f"{probe.get('python', '?')}, torch {probe.get('torch', '?')}, executorch {probe.get('executorch', '?')}"
              " (PyPI aarch64 wheels)"]  # the table adds which CPU profiles it holds
    for line in [*header, f"CPU profiles: {', '.join(cpus)}"]:
        print(line, flush=True)
    args.work.mkdir(parents=True, exist_ok=True)

    entries = []  # (model label, scheme, path | None, HostRun | None, note)
    for name, res, kwargs, model_schemes in models:
        label = model_label(name, res, kwargs)
        for scheme in model_schemes:
            t = time.monotonic()
            try:
                path = _export(name, scheme, res, kwargs, args.work)
                opened, run, _, _ = host_run(path, images=args.images)
                entries.append((label, scheme, opened, run, ""))
                print(f"{label} {SCHEME_LABEL[scheme]}: exported and run on the host in "
                      f"{time.monotonic() - t:.0f} s", flush=True)
            except Exception as e:  # noqa: BLE001 - one model failing must not stop the table
                first = str(e).splitlines()[0] if str(e) else ""
                entries.append((label, scheme, None, None, f"not run: {type(e).__name__}: {first}"[:160]))
                print(f"{label} {SCHEME_LABEL[scheme]}: {type(e).__name__}: {first}", flush=True)
                if not isinstance(e, EdgeMLError):
                    traceback.print_exc()

    runnable = [e for e in entries if e[2] is not None]
    job_of = {id(e[3]): j for j, e in enumerate(runnable)}
    jobs = [Job(opened.path, opened.format, run.inputs, opened.manifest.artifact.get("sha256"))
            for _, _, opened, run, _ in runnable]
    headers = ["model", "scheme", "CPU", "kernel features", "x86 vs PyTorch dB", "ARM vs PyTorch dB",
               "ARM vs x86 dB", "ARM vs x86 max abs", "top-1 ARM vs PyTorch", "top-1 ARM vs x86", "note"]
    md = args.markdown or args.work / "arm_parity.md"

    def write_table(done: dict) -> list[list[str]]:
        """The table of the profiles in ``done`` (CPU -> results), written to ``md``: after each
        profile, so that an hours-long run keeps what finished if a later profile is stopped."""
        rows = []
        for label, scheme, opened, run, note in entries:
            if opened is None:
                rows.append([label, SCHEME_LABEL[scheme], "-", "-", "-", "-", "-", "-", "-", "-", note])
                continue
            j = job_of[id(run)]
            names = [o.name for o in opened.manifest.outputs]
            logits = opened.manifest.model.get("config", {}).get("output") == "logits"
            host = score(names, logits, run, run.reference, run.host)
            for cpu, results in done.items():
                result = results[j]
                if result.outputs is None:
                    rows.append([label, SCHEME_LABEL[scheme], cpu, "-", _db(_sqnr(host)), "-", "-", "-", "-", "-",
                                 f"FINDING: fails on ARM: {result.error}"[:160]])
                    continue
                vs_ref = score(names, logits, run, run.reference, result.outputs)
                vs_host = score(names, logits, run, run.host, result.outputs)
                arm_x86 = _sqnr(vs_host)
                verdict = _verdict(scheme, _sqnr(host), _sqnr(vs_ref), arm_x86)
                rows.append([label, SCHEME_LABEL[scheme], cpu, " ".join(kernel_features(result.info)),
                             _db(_sqnr(host)), _db(_sqnr(vs_ref)), _db(arm_x86), max_abs_text(vs_host),
                             _top1(vs_ref), _top1(vs_host), verdict])
        n_images = len(runnable[0][3].images) if runnable else 0
        finished = datetime.datetime.now(datetime.timezone.utc)
        profiles = ", ".join(done)
        if len(done) < len(cpus):
            profiles += f" (of {', '.join(cpus)}; the rest not run yet)"
        lines = ["## ARM kernels under qemu-user (benchmarks/arm_parity.py)", ""]
        lines += [f"- {line}" for line in [*header, f"CPU profiles: {profiles}"]]
        lines += [f"- {n_images} images; SQNR over all images and outputs (the worst output); "
                  f"wall time {(finished - started).total_seconds() / 60:.0f} min", ""]
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        tmp = md.with_name(md.name + ".partial")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(md)  # whole tables only: a reader never sees a half-written file
        return rows

    per_cpu: dict = {}
    rows: list = []
    for cpu in cpus:
        t = time.monotonic()
        print(f"aarch64 {cpu}: {len(jobs)} programs in one emulated process", flush=True)

        def on_call(j: int, cpu: str = cpu, t: float = t) -> None:
            label, scheme, _, run, _ = runnable[j]
            on_call.count[j] = on_call.count.get(j, 0) + 1
            if on_call.count[j] == len(run.inputs):
                print(f"  {cpu}: {label} {SCHEME_LABEL[scheme]} done ({time.monotonic() - t:.0f} s)", flush=True)

        on_call.count = {}
        per_cpu[cpu] = run_jobs(env, jobs, cpu, on_call=on_call)
        rows = write_table(per_cpu)
        print(f"  {cpu}: table so far in {md}", flush=True)

    print()
    print_table(headers, rows)
    print(f"\nwrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
