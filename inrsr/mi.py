"""Mutual information between two intensity samples: from a joint histogram (to monitor and to
score), and from a Parzen-window histogram that is differentiable (to register)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["mutual_information", "soft_mutual_information"]


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


def soft_mutual_information(a: "torch.Tensor", b: "torch.Tensor", weights: "torch.Tensor", bins: int = 32) -> "torch.Tensor":
    """Differentiable MI (nats) of paired samples in ``[0, 1]``, from a Parzen-window joint
    histogram: each sample spreads over bins with a Gaussian of one bin's width. ``weights``
    (same length, ≥ 0) counts each pair (0 leaves it out)."""
    import torch

    centres = (torch.arange(bins, dtype=a.dtype, device=a.device) + 0.5) / bins
    sigma = 1.0 / bins

    def parzen(v: "torch.Tensor") -> "torch.Tensor":
        w = torch.exp(-0.5 * ((v[:, None] - centres[None, :]) / sigma) ** 2)
        return w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)

    pa, pb = parzen(a) * weights[:, None], parzen(b)
    joint = pa.T @ pb
    joint = joint / joint.sum().clamp(min=1e-12)
    ma, mb = joint.sum(dim=1, keepdim=True), joint.sum(dim=0, keepdim=True)
    ratio = joint / (ma @ mb).clamp(min=1e-12)
    return (joint * torch.log(ratio.clamp(min=1e-12))).sum()
