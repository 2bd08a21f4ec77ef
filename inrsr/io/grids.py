"""The grid outputs are written on: exactly a reference image's grid, or an isotropic grid over
a box (see :func:`inrsr.geometry.isotropic_grid`)."""

from __future__ import annotations

import os

import numpy as np

from inrsr.errors import InputError
from inrsr.geometry import Box, Grid, isotropic_grid, union_box, voxel_sizes_mm
from inrsr.io.nifti import HeaderCodes, load_image

__all__ = ["reference_grid", "output_grid", "stack_output_grid", "MAX_OUTPUT_VOXELS"]

# The largest output grid accepted (voxels).
MAX_OUTPUT_VOXELS = 2_000_000_000


def reference_grid(path: str | os.PathLike) -> tuple[Grid, HeaderCodes]:
    """Exactly the voxel grid of the image at ``path``, and its header codes."""
    data, img = load_image(path, "reference image")
    return Grid(tuple(int(n) for n in data.shape), np.asarray(img.affine, dtype=np.float64)), HeaderCodes.from_header(img.header)


def output_grid(
    box: Box, ref: str | None, resolution_mm: float | None, default_spacing_mm: float
) -> tuple[Grid, HeaderCodes | None]:
    """The grid to render on: exactly ``ref``'s grid, or an isotropic grid covering ``box``.

    Returns the grid and, for ``ref``, its header codes (so outputs carry the reference's codes).
    """
    if ref is not None:
        if resolution_mm is not None:
            raise InputError("--ref and --resolution are exclusive: the reference fixes the grid")
        return reference_grid(ref)
    spacing = default_spacing_mm if resolution_mm is None else resolution_mm
    if not spacing > 0:
        raise InputError(f"--resolution must be positive, got {resolution_mm}")
    grid = isotropic_grid(box, float(spacing))
    if grid.n_vox > MAX_OUTPUT_VOXELS:
        raise InputError(f"--resolution {spacing} mm gives {grid.n_vox} voxels; choose a coarser resolution")
    return grid, None


def stack_output_grid(
    shape: tuple[int, ...], affine: np.ndarray, ref: str | None, resolution_mm: float | None
) -> tuple[Grid, HeaderCodes | None]:
    """:func:`output_grid` for one stack: ``ref``'s grid, or an isotropic grid over the stack's
    field of view at ``resolution_mm`` (default: its finest spacing)."""
    box = union_box([(shape, affine)])
    return output_grid(box, ref, resolution_mm, float(voxel_sizes_mm(affine).min()))
