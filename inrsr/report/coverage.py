"""Support of the field: how far each output point is from the nearest point a voxel measured.

A voxel of a stack measures a box around its centre: one voxel spacing wide in-plane (the
in-plane voxels tile the plane) and one slice thickness (the profile's FWHM) along the slice
axis. Where the thickness equals the spacing, the stack measures its whole field of view and the
distance is 0 inside it; thin slices with gaps, and everything beyond the first and last slice
or outside the in-plane field of view, lie at some distance: there the field interpolates or
invents. The distance to a contrast is the smallest over that contrast's stacks (several stacks
of one contrast fill each other's gaps).
"""

from __future__ import annotations

import numpy as np

from inrsr.geometry import apply_affine, voxel_sizes_mm, world_to_voxel_matrix

__all__ = ["MeasuredBox", "distance_to_measured_mm", "support_summary", "SUPPORT_THRESHOLDS_MM"]

# Distances the report counts: beyond 1 mm the field fills a gap between measurements; beyond
# 5 mm it extrapolates well outside any of them.
SUPPORT_THRESHOLDS_MM = (1.0, 5.0)


class MeasuredBox:
    """What one stack measured: its grid (``shape``, voxel → world ``affine``, where
    registration placed it) and the thickness (mm) of its slices along ``slice_axis``."""

    def __init__(self, shape: tuple[int, ...], affine: np.ndarray, slice_axis: int, thickness_mm: float):
        self.shape = np.asarray(shape[:3], dtype=np.float64)
        self.to_voxel = world_to_voxel_matrix(affine)
        self.spacing_mm = voxel_sizes_mm(affine)
        half = np.full(3, 0.5)  # half a voxel in-plane, in voxels
        half[slice_axis] = 0.5 * thickness_mm / self.spacing_mm[slice_axis]
        self.half_vox = half

    def distance_mm(self, world_mm: np.ndarray) -> np.ndarray:
        """Distance (mm) from each point ``(..., 3)`` to the nearest point measured by a voxel.

        Along each array axis the nearest voxel centre is the rounded voxel coordinate clamped
        to the grid; the part of the offset beyond the voxel's half-width counts, in mm; the axes
        are orthogonal, so the distance is the root sum of squares."""
        vox = apply_affine(self.to_voxel, world_mm)
        nearest = np.clip(np.rint(vox), 0, self.shape - 1)
        beyond = np.maximum(np.abs(vox - nearest) - self.half_vox, 0.0) * self.spacing_mm
        return np.sqrt((beyond**2).sum(axis=-1))


def distance_to_measured_mm(world_mm: np.ndarray, boxes: list[MeasuredBox], chunk: int = 1 << 20) -> np.ndarray:
    """Smallest distance (mm) from each point ``(N, 3)`` to what any of ``boxes`` measured (a
    contrast's stacks), computed ``chunk`` points at a time. Returns ``(N,)`` float32."""
    out = np.empty(world_mm.shape[0], dtype=np.float32)
    for start in range(0, world_mm.shape[0], chunk):
        pts = world_mm[start : start + chunk]
        out[start : start + chunk] = np.min([b.distance_mm(pts) for b in boxes], axis=0)
    return out


def support_summary(distances_mm: np.ndarray) -> dict[str, float]:
    """Median and 95th percentile of the distances (mm) and, for each of
    :data:`SUPPORT_THRESHOLDS_MM`, the fraction of points beyond it (``beyond_1mm``, …)."""
    d = np.asarray(distances_mm, dtype=np.float64)
    if d.size == 0:
        return {"points": 0}
    out = {"points": int(d.size), "median_mm": float(np.median(d)), "p95_mm": float(np.percentile(d, 95))}
    for t in SUPPORT_THRESHOLDS_MM:
        out[f"beyond_{t:g}mm"] = float(np.mean(d > t))
    return out
