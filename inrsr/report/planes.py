"""The three display planes of the report: world-aligned axial, coronal and sagittal planes
through one point, and any volume sampled on them.

A plane is a :class:`~inrsr.geometry.Grid` one voxel thick whose axes follow the world's (RAS)
axes, so every stack, whatever its own orientation, and every output appear in the same
orientation: left of the subject on the left of the picture (neurological convention), anterior
or superior at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inrsr.geometry import Grid, apply_affine, fov_corners_world, world_to_voxel_matrix

__all__ = ["Plane", "PLANES", "display_planes", "plane_world_points", "sample_on_plane", "foreground_centre_mm",
           "on_plane", "prefiltered"]

# name → (world axis held fixed, world axis across the picture, world axis up the picture)
PLANES = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}
# Longest side of a displayed plane, pixels: finer output grids are shown at this size.
MAX_PIXELS = 360


@dataclass(frozen=True)
class Plane:
    """One display plane: ``name``, the world ``point`` (mm) it passes through and its ``grid``
    (shape ``(across, up, 1)``, spacing ``spacing_mm``; pixel ``[i, j]`` is ``i`` steps right and
    ``j`` steps up from the lower-left corner)."""

    name: str
    point_mm: np.ndarray
    grid: Grid
    spacing_mm: float

    @property
    def extent_mm(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) world mm of the pixel edges, for ``imshow(extent=…)``."""
        fixed, across, up = PLANES[self.name]
        a = self.grid.affine
        lo_x, lo_y = a[across, 3] - self.spacing_mm / 2, a[up, 3] - self.spacing_mm / 2
        nx, ny = self.grid.shape[:2]
        return lo_x, lo_x + nx * self.spacing_mm, lo_y, lo_y + ny * self.spacing_mm


def display_planes(shape: tuple[int, ...], affine: np.ndarray, point_mm: np.ndarray,
                   spacing_mm: float | None = None) -> list[Plane]:
    """Axial, coronal and sagittal planes through ``point_mm`` covering the world bounding box of
    the grid ``(shape, affine)`` (usually the output grid). Pixels are ``spacing_mm`` wide
    (default: the grid's finest spacing, coarsened so that no side exceeds :data:`MAX_PIXELS`)."""
    corners = fov_corners_world(shape, affine)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    if spacing_mm is None:
        spacing_mm = float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).min())
        spacing_mm = max(spacing_mm, float((hi - lo).max()) / MAX_PIXELS)
    n = np.maximum(np.ceil((hi - lo) / spacing_mm - 1e-6), 1).astype(int)
    planes = []
    for name, (fixed, across, up) in PLANES.items():
        a = np.zeros((4, 4))
        a[across, 0] = a[up, 1] = spacing_mm
        a[fixed, 2] = 1.0
        a[across, 3] = lo[across] + spacing_mm / 2
        a[up, 3] = lo[up] + spacing_mm / 2
        a[fixed, 3] = point_mm[fixed]
        a[3, 3] = 1.0
        planes.append(Plane(name, np.asarray(point_mm, dtype=np.float64),
                            Grid((int(n[across]), int(n[up]), 1), a), spacing_mm))
    return planes


def plane_world_points(plane: Plane) -> np.ndarray:
    """World coordinates (mm) of the plane's pixel centres, shape ``(across, up, 3)``."""
    nx, ny = plane.grid.shape[:2]
    ij = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), [0], indexing="ij"), axis=-1)[:, :, 0]
    return apply_affine(plane.grid.affine, ij)


def prefiltered(data: np.ndarray, order: int) -> np.ndarray:
    """The spline coefficients :func:`sample_on_plane` needs for ``order`` ≥ 2 (computed once per
    volume and reused for its three planes); the data itself for order 0 and 1."""
    data = np.asarray(data, dtype=np.float32)
    return ndimage.spline_filter(data, order=order, mode="nearest", output=np.float32) if order >= 2 else data


def sample_on_plane(coefficients: np.ndarray, affine: np.ndarray, plane: Plane, order: int) -> np.ndarray:
    """A volume (voxel → world ``affine``; ``coefficients`` from :func:`prefiltered`) sampled at
    the plane's pixel centres with a spline of ``order`` (0: nearest neighbour, the voxels as
    acquired; 3: cubic). Pixels outside the volume's field of view (beyond half a voxel past its
    outermost centres) are NaN. Returns ``(across, up)`` float32."""
    world = plane_world_points(plane)
    vox = apply_affine(world_to_voxel_matrix(affine), world)
    shape = np.asarray(coefficients.shape[:3])
    inside = np.all((vox >= -0.5) & (vox <= shape - 0.5), axis=-1)
    coords = np.moveaxis(vox, -1, 0)
    values = ndimage.map_coordinates(coefficients, coords, order=order, mode="nearest", prefilter=False)
    return np.where(inside, values, np.nan).astype(np.float32)


def on_plane(data: np.ndarray, affine: np.ndarray, plane: Plane, order: int) -> np.ndarray:
    """:func:`sample_on_plane` of raw ``data`` (prefiltering it here: use :func:`prefiltered`
    once when a volume is shown on several planes)."""
    return sample_on_plane(prefiltered(data, order), affine, plane, order)


def foreground_centre_mm(masks: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """World point (mm) the report's planes pass through by default: the mean of each stack's
    foreground centroid (``masks``: ``(mask, voxel → world affine)`` per stack); the centre of
    the first stack's field of view when no foreground voxel exists."""
    centres = [apply_affine(a, np.argwhere(m).mean(axis=0)) for m, a in masks if m.any()]
    if not centres:
        m, a = masks[0]
        return fov_corners_world(m.shape, a).mean(axis=0)
    return np.mean(centres, axis=0)
