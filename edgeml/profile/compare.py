"""Several artifacts timed side by side in one run, with latency ratios against the first.

Machines drift: clocks follow temperature, and other work comes and goes. Timing A to the end and
then B lets the drift land on one of them. Here the artifacts take turns, one inference each per
round (on a phone, one app launch each per round, see ``edgeml.profile.adb``), each round in a
fresh random order, so drift and order effects fall on all of them alike. Where a program
sits in the loading order can matter too, so the artifacts are loaded again for each
share of the rounds, each from every position once (``balanced_load_orders``). The ratios
are those of the p50 and of the trimmed mean (middle 80%, ExecuTorch's benchmark-app figure).
"""
from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeml.errors import UsageError
from edgeml.profile.host import ProfileReport, _example_inputs, host_device, initialize_runtime, latency_stats
from edgeml.runtime.runners import make_runner, open_artifact

RATIO_KEYS = ("p50", "trimmed_mean", "mean")
# How the statistics are named to people (legends, tables); the keys are the JSON's.
STAT_LABELS = {"min": "min", "p50": "median (p50)", "p90": "p90", "mean": "mean",
               "trimmed_mean": "trimmed mean (middle 80%)", "max": "max"}


@dataclass
class Comparison:
    """One report per artifact, in the order given; ratios are against the first."""

    reports: list[ProfileReport]
    rounds: int
    schedule: str

    def ratios(self) -> list[dict[str, float | str | None]]:
        base = self.reports[0].stats
        rows = []
        for report in self.reports:
            row: dict[str, float | str | None] = {"artifact": report.artifact}
            for key in RATIO_KEYS:
                a, b = base.get(key), report.stats.get(key)
                row[key] = b / a if a and b is not None else None
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        return {"baseline": self.reports[0].artifact, "rounds": self.rounds, "schedule": self.schedule,
                "ratios": self.ratios(), "reports": [r.to_dict() for r in self.reports]}


def interleaved_order(round_index: int, n: int) -> list[int]:
    """Artifact indices in the order round ``round_index`` runs them: a permutation drawn afresh for
    each round, seeded by the round's index (a run is repeatable).

    The order decides which program runs right before which, and that matters: a program run right
    after ONNX Runtime took 2 - 3% longer (PP-LCNet, 2 ms, 300 rounds of four programs). A rotating
    start keeps the cyclic order, so the same program would always follow ONNX Runtime; a fresh
    permutation gives every program every predecessor alike."""
    order = list(range(n))
    random.Random(1_000_003 * round_index + n).shuffle(order)
    return order


def balanced_load_orders(n: int) -> list[list[int]]:
    """``n`` orders to load ``n`` artifacts in, each artifact in each position once (cyclic shifts).

    In one process, where a program sits in the loading order can change its speed: four copies of
    one PP-LCNet ``.pte`` loaded one after the other ran 0.5% apart (the first fastest, 400 rounds;
    the interval excludes 1). Timing every artifact from every position cancels that out of the
    ratios."""
    return [[(start + k) % n for k in range(n)] for start in range(n)]


def split_rounds(rounds: int, parts: int) -> list[int]:
    """``rounds`` spread over ``parts`` as evenly as integers allow (the first get one more)."""
    return [rounds // parts + (1 if i < rounds % parts else 0) for i in range(parts)]


@dataclass
class InterleavedTimes:
    """What ``time_interleaved`` measured, per program in the order given."""

    samples_ms: list[list[float]]  # one per round
    load_ms: list[list[float]]  # one per loading (its first inference included)
    orders: list[list[int]]  # the loading orders, one per share of the rounds
    rounds_per_order: list[int]


def time_interleaved(loaders: Sequence[Callable[[], Callable[[], object]]], rounds: int, *, warmup: int = 0,
                     on_run: Callable[[], None] | None = None) -> InterleavedTimes:
    """Time programs side by side: ``rounds`` rounds of one call each, each round in a fresh random
    order (``interleaved_order``), over one loading of every program per position of the loading
    order (``balanced_load_orders``), each loading running its share of the rounds.

    A loader loads its program and returns the call to time (loading completes in the loader, e.g.
    with a first inference: it is timed as the load). ``warmup`` untimed rounds follow the first
    loading only; later loadings are warm from their loaders' first inference."""
    n = len(loaders)
    samples: list[list[float]] = [[] for _ in loaders]
    loads: list[list[float]] = [[] for _ in loaders]
    orders, blocks, done = [], [], 0
    for order, block in zip(balanced_load_orders(n), split_rounds(rounds, n)):
        if not block:
            break  # fewer rounds than programs: not every position gets a loading
        calls: list = [None] * n
        for i in order:
            t = time.perf_counter()
            calls[i] = loaders[i]()
            loads[i].append((time.perf_counter() - t) * 1e3)
        for r in range(0 if done else warmup):
            for i in interleaved_order(r, n):
                calls[i]()
                if on_run:
                    on_run()
        for r in range(done, done + block):
            for i in interleaved_order(r, n):
                t = time.perf_counter()
                calls[i]()
                samples[i].append((time.perf_counter() - t) * 1e3)
                if on_run:
                    on_run()
        done += block
        orders.append(order)
        blocks.append(block)
        del calls
        gc.collect()
    return InterleavedTimes(samples, loads, orders, blocks)


def compare_on_host(
    artifacts: Sequence[str | Path],
    *,
    runs: int = 50,
    warmup: int = 5,
    threads: int | None = None,
    on_run: Callable[[], None] | None = None,
) -> Comparison:
    """Time ``artifacts`` on this machine in ``runs`` interleaved rounds of one inference each."""
    if len(artifacts) < 2:
        raise UsageError("--compare needs at least two artifacts")
    if runs < 1 or warmup < 0:
        raise UsageError("--runs must be >= 1 and --warmup >= 0")
    opened = [open_artifact(a) for a in artifacts]
    for fmt in dict.fromkeys(o.format for o in opened):
        initialize_runtime(fmt)  # the runtimes' imports are not the programs' load time
    n = len(opened)
    inputs: list = [None] * n

    def loader(i: int) -> Callable[[], object]:
        # ORT's spinning threads would steal the cores from the artifact timed next.
        runner = make_runner(opened[i], threads=threads, spinning=False)
        if inputs[i] is None:
            inputs[i] = _example_inputs(runner, opened[i].manifest)
        runner.run(inputs[i])  # completes loading, as in profile_artifact
        return lambda: runner.run(inputs[i])

    timed = time_interleaved([lambda i=i: loader(i) for i in range(n)], runs, warmup=warmup, on_run=on_run)
    samples, loads = timed.samples_ms, timed.load_ms
    load_ms = [statistics.median(v) for v in loads]
    device = host_device()
    why = "not measured with --compare (profile the artifact alone for it)"
    reports = [
        ProfileReport(
            artifact=o.path.name, model=o.manifest.model_name, format=o.format,
            quantization=o.manifest.quantization.get("scheme", "none"), device=device, threads=threads,
            runs=runs, warmup=warmup, load_ms=load, latency_ms=s, stats=latency_stats(s),
            delegation=o.manifest.delegation, peak_rss_mb=None, rss_increase_mb=None,
            input_shapes=[list(t.shape) for t in x],
            unavailable={"peak_rss_mb": why, "per_op": why},
            notes=[f"timed in {runs} interleaved rounds with {n - 1} other artifact(s), one inference each, "
                   f"over {len(times)} loading(s) from different positions of the loading order "
                   "(load time: their median)"],
        )
        for o, load, s, x, times in zip(opened, load_ms, samples, inputs, loads)
    ]
    return Comparison(reports, runs, "interleaved inferences (one per artifact per round, in random order)")


def format_comparison(comparison: Comparison) -> str:
    from edgeml.profile.host import describe_device

    first = comparison.reports[0]
    width = max(len(r.artifact) for r in comparison.reports) + 2
    lines = [
        f"compared {len(comparison.reports)} artifacts on {describe_device(first.device)}: "
        f"{comparison.rounds} rounds, {comparison.schedule}",
        f"  {'artifact':<{width}}{'p50 ms':>10}{'trimmed ms':>12}{'p50 ratio':>11}{'trimmed ratio':>15}",
    ]

    def num(v: float | None, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    for report, ratio in zip(comparison.reports, comparison.ratios()):
        s = report.stats
        lines.append(f"  {report.artifact:<{width}}{num(s.get('p50'), '.3f'):>10}"
                     f"{num(s.get('trimmed_mean'), '.3f'):>12}{num(ratio['p50'], '.3f'):>11}"
                     f"{num(ratio['trimmed_mean'], '.3f'):>15}")
    lines.append(f"  ratios are latency / latency of {first.artifact} (below 1 = faster)")
    if first.stats.get("p50") is None:
        lines.append(f"  p50: {first.unavailable.get('stats.p50', 'not reported by the device tool')}")
    return "\n".join(lines)
