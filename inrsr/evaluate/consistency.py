"""Quality without ground truth (``inrsr check``): how well re-simulated stacks reproduce their
voxels, and which slices a held-out test leaves out.

* **Self-consistency**: every input stack predicted from the field through its own forward model
  (its slice profile, at its possibly registered position, :func:`inrsr.acquisition.forward.resimulate`)
  and compared with its voxels. Low error means the field explains the data; it does not prove
  the field is right between slices.
* **Held-out slices**: every ``k``-th slice of a stack is left out of a refit and predicted; cubic
  interpolation between the kept slices is scored on the same voxels, so the two can be compared
  on real data where no isotropic truth exists. It is pessimistic for both: the gaps the methods
  must bridge are twice the real slice spacing next to each held-out slice.
* **Left-out stacks**: a stack whose contrast another stack also has is left out of a refit
  entirely and predicted from the others.

The job that runs these checks on a saved model is :func:`inrsr.jobs.check.check_model`.
"""

from __future__ import annotations

import numpy as np

from inrsr.evaluate.metrics import psnr

__all__ = ["stack_scores", "held_out_slices"]


def stack_scores(pred: np.ndarray, data: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How well ``pred`` reproduces ``data`` on ``mask`` voxels: ``psnr`` (dB, peak = the data's
    1–99.5 % percentile range on the mask), ``nrmse`` (RMSE over that range) and Pearson ``corr``."""
    p, d = pred[mask].astype(np.float64), data[mask].astype(np.float64)
    lo, hi = np.percentile(d, [1.0, 99.5])
    scale = float(hi - lo) if hi > lo else 1.0
    rmse = float(np.sqrt(np.mean((p - d) ** 2)))
    corr = float(np.corrcoef(p, d)[0, 1]) if p.size > 1 and p.std() > 0 and d.std() > 0 else float("nan")
    return {"psnr": psnr(p / scale, d / scale), "nrmse": rmse / scale, "corr": corr, "voxels": int(mask.sum())}


def held_out_slices(n_slices: int, every: int) -> np.ndarray:
    """Indices of the slices held out: every ``every``-th slice, never the first or the last (so
    each has kept neighbours on both sides)."""
    if every < 2:
        raise ValueError(f"every must be at least 2, got {every}")
    idx = np.arange(every // 2, n_slices - 1, every)
    return idx[idx > 0]
