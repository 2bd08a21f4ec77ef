"""Early stopping on a plateau of the mutual information between predicted contrasts."""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["MIPlateau"]


class MIPlateau:
    """The buffer rule of McGinnis et al. (2023).

    Keep the last ``buffer`` MI values; their mean absolute change between consecutive
    evaluations is the *activity*. Training stops when the activity moves by less than ``tol``
    from one evaluation to the next, i.e. when MI has settled into a steady trend. The rule is
    only applied once ``max(buffer, min_evals)`` values have been seen (the authors' code starts
    from a zero-filled buffer instead, which makes the first evaluations meaningless).
    """

    def __init__(self, buffer: int = 4, tol: float = 1e-4, min_evals: int = 4):
        if buffer < 2:
            raise ValueError("buffer must hold at least 2 values")
        self.values: deque[float] = deque(maxlen=buffer)
        self.tol = tol
        self.min_evals = max(buffer, min_evals)
        self.n_seen = 0
        self.activity: float | None = None

    def update(self, mi: float) -> bool:
        """Record one MI value; return True when training should stop."""
        self.values.append(float(mi))
        self.n_seen += 1
        if len(self.values) < self.values.maxlen:
            return False
        current = float(np.mean(np.abs(np.diff(np.asarray(self.values)))))
        previous, self.activity = self.activity, current
        return self.n_seen >= self.min_evals and previous is not None and abs(current - previous) < self.tol

    def state(self) -> dict:
        """Everything needed to continue monitoring after a resume."""
        return {"values": list(self.values), "n_seen": self.n_seen, "activity": self.activity}

    def load_state(self, state: dict) -> None:
        self.values.clear()
        self.values.extend(state["values"])
        self.n_seen, self.activity = int(state["n_seen"]), state["activity"]
