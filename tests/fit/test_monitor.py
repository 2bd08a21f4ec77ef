"""The fit's MI monitor: the early-stopping buffer rule (the paper's plateau test)."""

from __future__ import annotations

import numpy as np

from inrsr.fit.monitor import MIPlateau


def test_plateau_stops_and_trend_does_not():
    stopper = MIPlateau(buffer=4, tol=1e-4, min_evals=4)
    # constant MI: activity 0, then 0 again → stop at the 5th value (first with a previous activity)
    decisions = [stopper.update(0.5) for _ in range(6)]
    assert decisions.index(True) == 4
    # MI still changing at a changing rate never stops
    stopper = MIPlateau(buffer=4, tol=1e-4, min_evals=4)
    values = 1.0 - np.exp(-np.arange(12) / 3.0)
    assert not any(stopper.update(v) for v in values[:10])
    # settles: decreasing activity eventually below tolerance
    stopper = MIPlateau(buffer=4, tol=1e-4, min_evals=4)
    values = 1.0 - np.exp(-np.arange(80) / 3.0)
    stops = [stopper.update(v) for v in values]
    assert any(stops) and 10 < stops.index(True) < 40


def test_min_evals_delays_stopping():
    stopper = MIPlateau(buffer=2, tol=1e-3, min_evals=10)
    decisions = [stopper.update(0.3) for _ in range(12)]
    assert decisions.index(True) == 9
