"""Interpolation baselines sampled on an output grid."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage
from scipy.interpolate import CubicSpline

from inrsr.geometry import Grid, axis_aligned_map, grid_rows

__all__ = ["interpolate_to_grid", "cubic_between_slices"]


# Output voxels below which one thread does the whole grid (a thread's start-up outweighs the work).
_MIN_VOXELS_PER_THREAD = 1 << 20
# Voxels of edge values that scipy pads a stack with before its spline prefilter in mode "nearest"
# (scipy.ndimage._interpolation._prepad_for_spline_filter); the separable path pads the same way.
_SPLINE_PAD = 12


def interpolate_to_grid(
    data: np.ndarray, affine: np.ndarray, grid: Grid, order: int = 3, threads: int | None = None
) -> np.ndarray:
    """Spline interpolation (``order`` 3: cubic B-spline, 0: nearest) of a stack at ``grid``'s centres.

    Points beyond the stack's outermost voxel centres take the nearest edge value (no dark rim).
    ``threads`` (``None`` or 0: the CPUs this process may use; at most one per 2²⁰ output voxels) share
    the grid's first axis; each resamples its block of the grid from the whole stack, so the
    result does not depend on the thread count beyond float rounding.

    When each grid axis runs along one stack axis (the usual case: a grid aligned with the stack,
    axes possibly permuted or flipped), the cubic spline is evaluated one axis at a time: the same
    tensor-product spline, prefilter and edge rule as scipy's, with 4 + 4 + 4 instead of 4 × 4 × 4
    coefficients per voxel, on one thread; the two agree to float32 rounding.
    """
    if order == 3:
        axes = axis_aligned_map(affine, grid.affine)
        if axes is not None:
            return _separable_cubic(np.asarray(data, dtype=np.float32), axes, grid.shape)
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


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """The four cubic B-spline weights of coefficients ``floor − 1 … floor + 2`` at fractional
    positions ``t`` in [0, 1)."""
    t2, t3 = t * t, t * t * t
    return [(1.0 - t) ** 3 / 6.0, (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
            (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0, t3 / 6.0]


def _spline_along(coef: np.ndarray, axis: int, coords: np.ndarray) -> np.ndarray:
    """The cubic spline of coefficients ``coef`` (padded by :data:`_SPLINE_PAD`) along ``axis`` at
    stack voxel coordinates ``coords``; coordinates beyond the padding take its edge (scipy's
    mode "nearest")."""
    n = coef.shape[axis]
    c = np.clip(coords + _SPLINE_PAD, 0.0, n - 1.0)
    first = np.floor(c)
    shape = [1] * coef.ndim
    shape[axis] = -1
    out = None
    for k, w in enumerate(_cubic_weights(c - first)):
        idx = np.clip(first.astype(np.int64) - 1 + k, 0, n - 1)
        part = np.take(coef, idx, axis=axis) * w.astype(np.float32).reshape(shape)
        out = part if out is None else np.add(out, part, out=out)
    return out


def _separable_cubic(data: np.ndarray, axes: list[tuple[int, float, float]], shape: tuple[int, int, int]) -> np.ndarray:
    """Cubic B-spline resampling of ``data`` one axis at a time (``axes``: those of
    :func:`~inrsr.geometry.axis_aligned_map`), the axes that shrink the array first."""
    padded = np.pad(data.astype(np.float64), _SPLINE_PAD, mode="edge")
    coef = ndimage.spline_filter(padded, 3, output=np.float64, mode="nearest").astype(np.float32)
    for a in sorted(range(3), key=lambda a: shape[a] / coef.shape[axes[a][0]]):
        p, scale, offset = axes[a]
        coef = _spline_along(coef, p, scale * np.arange(shape[a]) + offset)
    return np.ascontiguousarray(np.transpose(coef, [p for p, _, _ in axes]))


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
