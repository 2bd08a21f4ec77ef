"""Interpolation baselines sampled on an output grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from .geometry import Grid

__all__ = ["interpolate_to_grid"]


def interpolate_to_grid(data: np.ndarray, affine: np.ndarray, grid: Grid, order: int = 3) -> np.ndarray:
    """Spline interpolation (``order`` 3: cubic B-spline, 0: nearest) of a stack at ``grid``'s centres.

    Points beyond the stack's outermost voxel centres take the nearest edge value (no dark rim).
    """
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    out = resample_from_to(img, (grid.shape, grid.affine), order=order, mode="nearest")
    return np.asarray(out.dataobj, dtype=np.float32)
