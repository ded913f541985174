"""Shared by the benchmark scripts: machine description, interleaved timing, table printing."""
from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence


def machine() -> str:
    import torch

    from edgeml.profile.host import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, torch {torch.__version__}"


def command() -> str:
    return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


def interleaved_medians(fns: Sequence[Callable[[], object]], rounds: int, warmup: int = 3) -> list[float]:
    """Median ms of each fn, timed in alternation so machine drift hits all of them alike, each round
    in a fresh random order (``edgeml.profile.compare.interleaved_order``: in a fixed order, a
    program always follows the same other one, and the one after ONNX Runtime runs slower)."""
    from edgeml.profile.compare import interleaved_order

    for fn in fns:
        for _ in range(warmup):
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        for i in interleaved_order(r, len(fns)):
            fn = fns[i]
            t = time.perf_counter()
            fn()
            samples[i].append((time.perf_counter() - t) * 1e3)
    return [statistics.median(s) for s in samples]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |", flush=True)
