"""Interpolation baselines sampled on an output grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy.interpolate import CubicSpline

from inrsr.geometry import Grid

__all__ = ["interpolate_to_grid", "cubic_between_slices"]


def interpolate_to_grid(data: np.ndarray, affine: np.ndarray, grid: Grid, order: int = 3) -> np.ndarray:
    """Spline interpolation (``order`` 3: cubic B-spline, 0: nearest) of a stack at ``grid``'s centres.

    Points beyond the stack's outermost voxel centres take the nearest edge value (no dark rim).
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    out = resample_from_to(img, (grid.shape, grid.affine), order=order, mode="nearest")
    return np.asarray(out.dataobj, dtype=np.float32)


def cubic_between_slices(data: np.ndarray, axis: int, held: np.ndarray) -> np.ndarray:
    """Slices ``held`` of ``data`` along ``axis`` predicted by a cubic spline (not-a-knot) through
    the kept slices at their positions; other slices are returned as they are."""
    n = data.shape[axis]
    kept = np.setdiff1d(np.arange(n), held)
    moved = np.moveaxis(np.asarray(data, dtype=np.float64), axis, 0)
    spline = CubicSpline(kept, moved[kept], axis=0)
    out = moved.copy()
    out[held] = spline(held)
    return np.moveaxis(out, 0, axis).astype(np.float32)
