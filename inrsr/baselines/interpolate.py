"""Interpolation baselines sampled on an output grid."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy.interpolate import CubicSpline

from inrsr.geometry import Grid, grid_rows

__all__ = ["interpolate_to_grid", "cubic_between_slices"]


# Output voxels below which one thread does the whole grid (a thread's start-up outweighs the work).
_MIN_VOXELS_PER_THREAD = 1 << 20


def interpolate_to_grid(
    data: np.ndarray, affine: np.ndarray, grid: Grid, order: int = 3, threads: int | None = None
) -> np.ndarray:
    """Spline interpolation (``order`` 3: cubic B-spline, 0: nearest) of a stack at ``grid``'s centres.

    Points beyond the stack's outermost voxel centres take the nearest edge value (no dark rim).
    ``threads`` (``None`` or 0: the CPUs this process may use; at most one per 2²⁰ output voxels) share
    the grid's first axis; each resamples its block of the grid from the whole stack, so the
    result does not depend on the thread count beyond float rounding.
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    n = threads if threads else len(os.sched_getaffinity(0))
    n = max(1, min(n, grid.shape[0], grid.n_vox // _MIN_VOXELS_PER_THREAD))
    if n == 1:
        return _resampled(img, grid, order)
    edges = np.linspace(0, grid.shape[0], n + 1).round().astype(int)
    blocks = [grid_rows(grid, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    with ThreadPoolExecutor(n) as pool:  # scipy's spline resampling releases the GIL
        return np.concatenate(list(pool.map(lambda g: _resampled(img, g, order), blocks)), axis=0)


def _resampled(img: nib.Nifti1Image, grid: Grid, order: int) -> np.ndarray:
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
