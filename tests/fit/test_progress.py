"""Progress on stderr: periodic ``inrsr:`` lines when it is not a terminal, a tqdm bar when it is."""

from __future__ import annotations

import io
import re

from inrsr.fit.progress import Progress, format_seconds


class Clock:
    """Seconds that the test moves forward."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_at_start_every_interval_and_at_the_end():
    stream, clock = io.StringIO(), Clock()
    bar = Progress(1100, "fit", every_s=30, stream=stream, clock=clock)
    for step in range(1, 401):
        clock.now += 0.25  # 4 steps per second
        if step == 100:
            bar.note(loss="1.23e-03", MI="0.4521")
        bar.update()
    bar.close()
    bar.close()  # once only
    assert stream.getvalue().splitlines() == [
        "inrsr: fit step 0/1100 (0 %), 0 s elapsed",
        "inrsr: fit step 120/1100 (10 %), loss 1.23e-03, MI 0.4521, 30 s elapsed, ETA 4 min 05 s",
        "inrsr: fit step 240/1100 (21 %), loss 1.23e-03, MI 0.4521, 60 s elapsed, ETA 3 min 35 s",
        "inrsr: fit step 360/1100 (32 %), loss 1.23e-03, MI 0.4521, 90 s elapsed, ETA 3 min 05 s",
        "inrsr: fit step 400/1100 (36 %), loss 1.23e-03, MI 0.4521, 1 min 40 s elapsed",
    ]


def test_a_resumed_run_estimates_from_its_own_rate_and_long_times_read_in_minutes():
    stream, clock = io.StringIO(), Clock()
    bar = Progress(1000, "smore train", initial=500, every_s=5, stream=stream, clock=clock)
    clock.now += 10
    bar.update(50)  # 5 steps per second since the start: 450 left take 90 s
    clock.now += 200
    bar.update(10)
    lines = stream.getvalue().splitlines()
    assert lines[1] == "inrsr: smore train step 550/1000 (55 %), 10 s elapsed, ETA 90 s"
    assert lines[2].endswith("3 min 30 s elapsed, ETA 25 min 40 s")  # 3.5 s per step, 440 left
    assert format_seconds(41.4) == "41 s" and format_seconds(3725) == "1 h 02 min"


def test_disabled_prints_nothing_and_lines_never_read_as_errors_or_warnings():
    stream = io.StringIO()
    bar = Progress(10, "fit", enabled=False, stream=stream)
    bar.update(10)
    bar.note(loss="1")
    bar.close()
    assert stream.getvalue() == ""
    stream, clock = io.StringIO(), Clock()
    with Progress(3, "fit", every_s=0, stream=stream, clock=clock) as bar:
        for _ in range(3):
            bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and all(line.startswith("inrsr: fit step ") for line in lines)
    assert not any(re.search(r"error:|warning:", line) for line in lines)


def test_a_terminal_gets_a_bar_instead_of_lines():
    stream = Terminal()
    bar = Progress(20, "fit", stream=stream)
    bar.update(20)
    bar.note(loss="1.0e-03")
    bar.close()
    text = stream.getvalue()
    assert "\r" in text and "20/20" in text and "inrsr:" not in text
