"""Foreground (head/brain) estimation for stacks given without a mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["estimate_foreground"]


def estimate_foreground(data: np.ndarray, fraction: float = 0.05, dilate_vox: int = 1) -> np.ndarray:
    """Boolean foreground mask of a 3D image.

    A voxel is foreground when it exceeds ``p1 + fraction · (p99.5 - p1)`` (robust percentiles of
    the whole image); the result is closed and hole-filled, reduced to its largest connected
    component and dilated by ``dilate_vox`` voxels. Works for skull-stripped images (background
    ≈ 0, possibly slightly negative) and for whole-head scans (then the head is foreground).
    Morphology is in voxel units, so it is coarser along a stack's thick axis. When nothing is
    left (a noise-like or very thin image), every voxel is foreground.
    """
    data = np.asarray(data, dtype=np.float32)
    lo, hi = np.percentile(data, [1.0, 99.5])
    if hi <= lo:
        hi = float(data.max())
    mask = data > lo + fraction * (hi - lo)
    if not mask.any():
        return np.ones(data.shape, dtype=bool)
    structure = ndimage.generate_binary_structure(3, 1)
    mask = ndimage.binary_closing(mask, structure, iterations=2, border_value=0)
    labels, n = ndimage.label(mask, structure)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    mask = ndimage.binary_fill_holes(mask)
    if not mask.any():  # e.g. a few slices eroded away by the closing: no usable estimate
        return np.ones(data.shape, dtype=bool)
    if dilate_vox > 0:
        mask = ndimage.binary_dilation(mask, structure, iterations=dilate_vox)
    return mask
