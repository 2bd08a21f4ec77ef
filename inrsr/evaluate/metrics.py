"""Image quality against a ground truth: PSNR, SSIM (two conventions) and mutual information."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from inrsr.mi import mutual_information

__all__ = ["evaluate", "psnr"]


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two equally shaped samples."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


# skimage's Gaussian SSIM window (σ = 1.5 voxels, truncated at 3.5 σ) reaches this far from its centre.
SSIM_RADIUS_VOX = 5


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, smap = structural_similarity(
        a.astype(np.float64), b.astype(np.float64), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, full=True,
    )
    return smap


def _minmax(v: np.ndarray, full: np.ndarray | None = None) -> np.ndarray:
    """``v`` mapped to [0, 1] by the min and max of ``full`` (default: of ``v`` itself)."""
    full = v if full is None else full
    lo, hi = float(full.min()), float(full.max())
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def _mask_crop(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``pad`` voxels (clipped to the array)."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(0, n) for n in mask.shape)
    lo, hi = np.maximum(idx.min(axis=0) - pad, 0), np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


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

    SSIM maps are computed only on the mask's bounding box grown by the window radius: the in-mask
    mean needs nothing beyond it, and in the paper convention both volumes are 0 outside the mask,
    where SSIM is exactly 1, so the whole-volume mean is recovered exactly (and much faster).
    """
    pred = np.asarray(pred, dtype=np.float32)
    truth = np.asarray(truth, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    lo, hi = np.percentile(truth[mask], [lo_pct, hi_pct])
    scale = float(hi - lo) if hi > lo else 1.0
    box = _mask_crop(mask, SSIM_RADIUS_VOX)
    m, pc, tc = mask[box], pred[box], truth[box]
    p, t = (pc - lo) / scale, (tc - lo) / scale
    pp, tp = _minmax(pc, pred) * m, _minmax(tc, truth) * m
    outside = mask.size - m.size  # voxels beyond the box: SSIM 1 in the paper convention
    return {
        "psnr": psnr(p[m], t[m]),
        "ssim": float(_ssim_map(t, p)[m].mean()),
        # both are 0 beyond the box: the whole-volume MSE is the box's scaled by its share of voxels
        "psnr_paper": psnr(pp, tp) + 10.0 * np.log10(mask.size / m.size),
        "ssim_paper": float((_ssim_map(tp, pp).sum() + outside) / mask.size),
        "mi": mutual_information(pred[mask], truth[mask], bins),
    }
