"""Mutual information between two intensity samples, from their joint histogram."""

from __future__ import annotations

import numpy as np

__all__ = ["mutual_information"]


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """MI in nats between paired samples ``a`` and ``b`` (any shape, same size).

    Each variable is binned into ``bins`` equal bins over its own [min, max];
    ``MI = Σ p(a,b) log(p(a,b) / (p(a) p(b)))``. Identical samples give the entropy of the binned
    variable (≤ log(bins)); independent samples give ≈ 0 (a small positive bias for few samples).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size != b.size:
        raise ValueError(f"MI needs paired samples, got sizes {a.size} and {b.size}")
    if a.size == 0:
        return 0.0
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    p = joint / joint.sum()
    pa, pb = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))
