"""Image quality against a ground truth: PSNR, SSIM (two conventions) and mutual information."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from .mi import mutual_information

__all__ = ["evaluate", "psnr"]


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two equally shaped samples."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, smap = structural_similarity(
        a.astype(np.float64), b.astype(np.float64), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, full=True,
    )
    return smap


def _minmax(v: np.ndarray) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def evaluate(
    pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5,
    bins: int = 32,
) -> dict[str, float]:
    """Quality of ``pred`` against ``truth`` on the same grid.

    * ``psnr``, ``ssim`` (main): both volumes scaled by one linear map taken from the truth —
      ``(v - p_lo) / (p_hi - p_lo)`` with the truth's ``lo_pct``/``hi_pct`` percentiles inside
      ``mask`` — then PSNR over mask voxels (peak 1) and the mean of the SSIM map (Gaussian window
      σ = 1.5 voxels) over mask voxels.
    * ``psnr_paper``, ``ssim_paper`` (McGinnis et al. convention): each volume min-max normalised
      on its own, voxels outside ``mask`` set to 0, PSNR and mean SSIM over the whole volume.
    * ``mi``: mutual information (nats, ``bins`` bins) between pred and truth inside ``mask``.
    """
    pred = np.asarray(pred, dtype=np.float32)
    truth = np.asarray(truth, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    lo, hi = np.percentile(truth[mask], [lo_pct, hi_pct])
    scale = float(hi - lo) if hi > lo else 1.0
    p, t = (pred - lo) / scale, (truth - lo) / scale
    smap = _ssim_map(t, p)
    pp, tp = _minmax(pred) * mask, _minmax(truth) * mask
    return {
        "psnr": psnr(p[mask], t[mask]),
        "ssim": float(smap[mask].mean()),
        "psnr_paper": psnr(pp, tp),
        "ssim_paper": float(_ssim_map(tp, pp).mean()),
        "mi": mutual_information(pred[mask], truth[mask], bins),
    }
