"""The MI monitor: mutual information between the predicted contrasts during a fit, and early
stopping on its plateau."""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING

import numpy as np
import torch

from inrsr.mi import mutual_information

if TYPE_CHECKING:
    from inrsr.field.network import Field

__all__ = ["MIPlateau", "predict_mi"]


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


@torch.no_grad()
def predict_mi(model: "Field", coords: torch.Tensor, bins: int, chunk: int = 65536) -> dict[str, float]:
    """MI between every pair of predicted contrasts at ``coords``; ``mi`` is the pairs' mean."""
    preds = torch.cat([model(coords[i : i + chunk]) for i in range(0, coords.shape[0], chunk)]).cpu().numpy()
    out: dict[str, float] = {}
    for a, b in itertools.combinations(range(model.n_contrasts), 2):
        out[f"mi_{model.contrasts[a]}_{model.contrasts[b]}"] = mutual_information(preds[:, a], preds[:, b], bins)
    out["mi"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out
