"""The grid outputs are written on: exactly a reference image's grid, or an isotropic grid over
a box (see :func:`inrsr.geometry.isotropic_grid`)."""

from __future__ import annotations

import math
import os

import numpy as np

from inrsr.errors import InputError
from inrsr.geometry import Box, Grid, isotropic_grid, union_box, voxel_sizes_mm
from inrsr.io.nifti import HeaderCodes, load_image
from inrsr.resources import check_memory, render_bytes

__all__ = ["reference_grid", "output_grid", "stack_output_grid", "check_grid_memory", "MAX_OUTPUT_VOXELS"]

# The largest output grid accepted (voxels), whatever the memory.
MAX_OUTPUT_VOXELS = 2_000_000_000


def reference_grid(path: str | os.PathLike, max_memory_gb: float | None = None) -> tuple[Grid, HeaderCodes]:
    """Exactly the voxel grid of the image at ``path``, and its header codes."""
    data, img = load_image(path, "reference image", max_memory_gb)
    return Grid(tuple(int(n) for n in data.shape), np.asarray(img.affine, dtype=np.float64)), HeaderCodes.from_header(img.header)


def check_grid_memory(grid: Grid, n_volumes: int, max_memory_gb: float | None = None) -> None:
    """Refuse a grid whose ``n_volumes`` rendered volumes would not fit in memory (see
    :func:`inrsr.resources.check_memory` and :func:`~inrsr.resources.render_bytes`) or that has
    more than :data:`MAX_OUTPUT_VOXELS` voxels."""
    dims = "×".join(map(str, grid.shape))
    if grid.n_vox > MAX_OUTPUT_VOXELS:
        raise InputError(f"output grid {dims} has {grid.n_vox} voxels (at most {MAX_OUTPUT_VOXELS}); "
                         "choose a coarser --resolution")
    check_memory(render_bytes(grid.n_vox, n_volumes),
                 f"output grid {dims} ({n_volumes} volume{'s' if n_volumes > 1 else ''})", max_memory_gb,
                 "choose a coarser --resolution, or raise --max-memory (GB)")


def output_grid(
    box: Box, ref: str | None, resolution_mm: float | None, default_spacing_mm: float, n_volumes: int = 1,
    max_memory_gb: float | None = None,
) -> tuple[Grid, HeaderCodes | None]:
    """The grid to render on: exactly ``ref``'s grid, or an isotropic grid covering ``box``;
    checked to hold ``n_volumes`` rendered volumes within the memory budget (see
    :func:`check_grid_memory`).

    Returns the grid and, for ``ref``, its header codes (so outputs carry the reference's codes).
    """
    if ref is not None:
        if resolution_mm is not None:
            raise InputError("--ref and --resolution are exclusive: the reference fixes the grid")
        grid, codes = reference_grid(ref, max_memory_gb)
    else:
        spacing = default_spacing_mm if resolution_mm is None else resolution_mm
        if not (math.isfinite(spacing) and spacing > 0):
            raise InputError(f"--resolution must be a positive number of mm, got {resolution_mm}")
        extent = float(np.max(np.asarray(box.hi_mm) - np.asarray(box.lo_mm)))
        if extent / spacing > 1e5:
            raise InputError(f"--resolution {spacing:g} mm gives over 100000 voxels along an axis; choose a coarser one")
        grid, codes = isotropic_grid(box, float(spacing)), None
    check_grid_memory(grid, n_volumes, max_memory_gb)
    return grid, codes


def stack_output_grid(
    shape: tuple[int, ...], affine: np.ndarray, ref: str | None, resolution_mm: float | None,
    max_memory_gb: float | None = None,
) -> tuple[Grid, HeaderCodes | None]:
    """:func:`output_grid` for one stack: ``ref``'s grid, or an isotropic grid over the stack's
    field of view at ``resolution_mm`` (default: its finest spacing)."""
    box = union_box([(shape, affine)])
    return output_grid(box, ref, resolution_mm, float(voxel_sizes_mm(affine).min()), 1, max_memory_gb)
