"""Progress of a long loop on stderr: a bar on a terminal, periodic lines otherwise.

When stderr is a terminal, :class:`Progress` is a tqdm bar. When it is not (a log file, a pipe, a
batch job), a bar would either not show or fill the log with carriage returns, so one line is
printed instead at the start, every ``every_s`` seconds and at the end::

    inrsr: fit step 400/1100 (36 %), loss 1.23e-03, MI 0.4521, 41 s elapsed, ETA 1 min 11 s

Every line starts with ``inrsr:`` and never reads like an error or a warning line.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

from tqdm.auto import tqdm

__all__ = ["Progress", "PROGRESS_EVERY_S", "VERBOSE_EVERY_S", "format_seconds", "say"]

# Seconds between two progress lines when stderr is not a terminal (``--verbose``: VERBOSE_EVERY_S).
PROGRESS_EVERY_S = 30.0
VERBOSE_EVERY_S = 5.0


def format_seconds(seconds: float) -> str:
    """A duration for people: ``41 s``, ``12 min 05 s``, ``2 h 03 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 100:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def say(text: str, stream: TextIO | None = None) -> None:
    """One ``inrsr: TEXT`` line on ``stream`` (default: stderr), at once."""
    print(f"inrsr: {text}", file=stream if stream is not None else sys.stderr, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """``total`` units of work called ``what`` (``fit``: ``fit step 400/1100``), reported on
    ``stream`` (default: stderr) when ``enabled``: a tqdm bar on a terminal, otherwise a line at
    the start, then at the first :meth:`update` at least ``every_s`` seconds after the previous
    line, and at :meth:`close`. ``initial``: units already done (a resumed fit); the estimated
    time left (ETA) comes from the rate since this object was made. ``clock``: seconds (tests
    pass their own)."""

    def __init__(
        self, total: int, what: str, *, initial: int = 0, enabled: bool = True, every_s: float = PROGRESS_EVERY_S,
        unit: str = "step", stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.what, self.unit = int(total), what, unit
        self.n = self.first = int(initial)
        self.every_s, self.clock = float(every_s), clock
        self.values: dict[str, str] = {}
        self.lines = enabled and not _is_terminal(self.stream)
        self.bar = None
        if enabled and not self.lines:
            self.bar = tqdm(total=self.total, initial=self.n, desc=what, unit=unit, file=self.stream,
                            dynamic_ncols=True)
        self.start = self.last = clock()
        self.closed = False
        if self.lines:
            self._print()

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines and self.clock() - self.last >= self.every_s:
            self._print()

    def note(self, **values: str) -> None:
        """Values shown beside the count from now on (``loss="1.2e-03"``), like tqdm's postfix."""
        self.values.update(values)
        if self.bar is not None:
            self.bar.set_postfix(self.values)

    def close(self) -> None:
        """End the bar, or print the last line (once)."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            self._print()

    def line(self) -> str:
        """The progress line as it would be printed now (without the ``inrsr:`` prefix)."""
        elapsed = self.clock() - self.start
        percent = int(100 * self.n / self.total) if self.total else 100
        parts = [f"{self.what} {self.unit} {self.n}/{self.total} ({percent} %)"]
        parts += [f"{k} {v}" for k, v in self.values.items()]
        parts.append(f"{format_seconds(elapsed)} elapsed")
        if not self.closed and self.first < self.n < self.total:
            parts.append(f"ETA {format_seconds(elapsed / (self.n - self.first) * (self.total - self.n))}")
        return ", ".join(parts)

    def _print(self) -> None:
        say(self.line(), self.stream)
        self.last = self.clock()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
