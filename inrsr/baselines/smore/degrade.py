"""The one-axis degradation SMORE learns to undo: HR rows blurred by the slice profile and sampled
at the low-resolution positions, and the cubic interpolation back to HR rows."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

from inrsr.baselines.smore.geometry import hr_positions, lr_positions
from inrsr.geometry import FWHM_PER_SIGMA, fwhm_to_sigma

__all__ = ["profile_weights", "degradation_matrix", "interpolation_matrix", "degrade_rows",
           "interpolate_rows"]



def _second_antiderivative(x: np.ndarray, fwhm_px: float, profile: str) -> np.ndarray:
    """``Q`` with ``Q''`` the slice profile (:func:`~inrsr.acquisition.profiles.profile_density`)
    and ``Q(−∞) = 0`` (``Q(x) → x`` for large ``x``)."""
    if fwhm_px <= 1e-6:  # a delta profile
        return np.maximum(x, 0.0)
    if profile == "gaussian":
        sigma = fwhm_to_sigma(fwhm_px)
        u = x / sigma
        return x * ndtr(u) + sigma * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    half = fwhm_px / 2.0
    inside = (np.clip(x, -half, half) + half) ** 2 / (2.0 * fwhm_px)
    return np.where(x > half, x, inside)


def profile_weights(offsets_px: np.ndarray, fwhm_px: float, profile: str) -> np.ndarray:
    """Weight of the HR row at ``offsets_px`` (HR rows) from a thick slice's centre.

    The HR rows are taken as samples of a signal that is linear between them, so the weight is the
    slice profile convolved with the linear-interpolation hat: ``Q(x+1) − 2Q(x) + Q(x−1)``. The
    weights of all rows sum to 1 for any fractional centre, and a linear signal is reproduced exactly
    at the centre (for a symmetric profile).
    """
    x = np.asarray(offsets_px, dtype=np.float64)
    q = lambda v: _second_antiderivative(v, fwhm_px, profile)  # noqa: E731
    return np.clip(q(x + 1.0) - 2.0 * q(x) + q(x - 1.0), 0.0, None)


def _support_px(fwhm_px: float, profile: str) -> float:
    if profile == "gaussian":
        return 6.0 * fwhm_px / FWHM_PER_SIGMA + 1.0  # ±6σ, plus the hat
    return fwhm_px / 2.0 + 1.0


def degradation_matrix(n_rows: int, ratio: float, fwhm_px: float, profile: str) -> np.ndarray:
    """Matrix ``(n_lr, n_rows)`` that blurs ``n_rows`` HR rows with the slice profile and samples
    them at :func:`lr_positions` (``n_lr = floor(n_rows / r)``: every sample's slab lies inside).

    Rows beyond the ends repeat the edge row. Each row of the matrix sums to 1.
    """
    n_lr = int(math.floor(n_rows / ratio + 1e-9))
    mat = np.zeros((n_lr, n_rows), dtype=np.float64)
    reach = _support_px(fwhm_px, profile)
    for k, centre in enumerate(lr_positions(n_lr, ratio)):
        rows = np.arange(math.floor(centre - reach), math.ceil(centre + reach) + 1)
        np.add.at(mat[k], np.clip(rows, 0, n_rows - 1), profile_weights(rows - centre, fwhm_px, profile))
    return mat / mat.sum(axis=1, keepdims=True)


def interpolation_matrix(n_lr: int, n_hr: int, ratio: float) -> np.ndarray:
    """Matrix ``(n_hr, n_lr)``: cubic B-spline interpolation of ``n_lr`` samples at the HR rows'
    :func:`hr_positions`, beyond the outermost samples the nearest edge value (the same rule as
    :func:`inrsr.baselines.interpolate.interpolate_to_grid`, so it equals the cubic baseline along this axis)."""
    coords = hr_positions(n_hr, ratio)[None, :]
    eye = np.eye(n_lr, dtype=np.float64)
    cols = [ndimage.map_coordinates(eye[k], coords, order=3, mode="nearest") for k in range(n_lr)]
    return np.stack(cols, axis=1)


def degrade_rows(image: np.ndarray, ratio: float, fwhm_px: float, profile: str) -> np.ndarray:
    """Low-resolution rows of a 2D (or stacked ``(..., rows, cols)``) image: the slice profile
    applied along the rows (axis -2) and samples taken at :func:`lr_positions`."""
    mat = degradation_matrix(image.shape[-2], ratio, fwhm_px, profile).astype(np.float32)
    return np.matmul(mat, image.astype(np.float32))


def interpolate_rows(low: np.ndarray, n_hr: int, ratio: float) -> np.ndarray:
    """Cubic interpolation of low-resolution rows (axis -2) back to ``n_hr`` HR rows."""
    mat = interpolation_matrix(low.shape[-2], n_hr, ratio).astype(np.float32)
    return np.matmul(mat, low.astype(np.float32))
