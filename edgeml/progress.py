"""Progress of long commands: a live stage line on a terminal, plain lines elsewhere.

An export spends a minute or more in single stages (capture, quantize, lower) without a step to
count, so the display shows the stage that runs and the time it has taken, redrawn twice a second
on a terminal. When stderr is not a terminal (CI logs, pipes) each stage is one plain line on stdout
with the time since the start, so a log says where the time went, and stderr keeps only what
went wrong (a user error is one line there).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class StageProgress:
    """``with StageProgress("export mynet", total=7) as progress: progress("capture")``."""

    def __init__(self, title: str, total: int | None = None, *, stream: TextIO | None = None,
                 live: bool | None = None, interval: float = 0.5) -> None:
        self.title, self.total = title, total
        self.live = sys.stderr.isatty() if live is None else live
        self.stream = stream or (sys.stderr if self.live else sys.stdout)
        self.interval = interval
        self.stage: str | None = None
        self.count = 0
        self.started = self.stage_started = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> StageProgress:
        self.started = time.perf_counter()
        if self.live:
            self._thread = threading.Thread(target=self._redraw, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.live and self._width:
            with self._lock:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()

    def __call__(self, stage: str) -> None:
        with self._lock:
            if stage == self.stage:
                return
            self.stage, self.stage_started = stage, time.perf_counter()
            self.count += 1
            if not self.live:
                self.stream.write(f"{self.title}: {self._position()}{stage} (at {self._elapsed():.1f} s)\n")
                self.stream.flush()
            else:
                self._draw()

    def _position(self) -> str:
        return f"[{self.count}/{self.total}] " if self.total else ""

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _draw(self) -> None:
        line = (f"{self.title}: {self._position()}{self.stage or 'starting'} "
                f"{time.perf_counter() - self.stage_started:.0f} s (total {self._elapsed():.0f} s)")
        pad = max(self._width - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def _redraw(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._draw()
