"""Per-contrast robust intensity scaling to the network's range, and its inverse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IntensityScale", "fit_intensity_scale"]


@dataclass(frozen=True)
class IntensityScale:
    """Linear map of input intensity units to network units: ``(v - lo) / (hi - lo)``."""

    lo: float
    hi: float

    def forward(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float32) - self.lo) / (self.hi - self.lo)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float32) * (self.hi - self.lo) + self.lo

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi}


def fit_intensity_scale(
    images: list[np.ndarray], foregrounds: list[np.ndarray], lo_pct: float = 1.0, hi_pct: float = 99.5
) -> IntensityScale:
    """Robust scale for one contrast from all of its stacks.

    ``lo`` is the ``lo_pct`` percentile of all voxels (≈ the background level), ``hi`` the
    ``hi_pct`` percentile of the foreground voxels, so isolated bright outliers do not compress
    the tissue range the way a min/max scaling would.
    """
    everything = np.concatenate([np.ravel(b) for b in images])
    fg = np.concatenate([np.ravel(f) for f in foregrounds])
    lo = float(np.percentile(everything, lo_pct))
    hi = float(np.percentile(fg, hi_pct)) if fg.size else float(everything.max())
    if not hi > lo:
        hi = float(everything.max())
    if not hi > lo:
        hi = lo + 1.0
    return IntensityScale(lo, hi)
