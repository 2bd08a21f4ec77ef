"""Geometry: voxel ↔ world (mm) maps, bounding boxes, normalisation and output grids.

Conventions
-----------
* World coordinates are the NIfTI scanner frame (RAS+ mm) given by each image's 4×4 affine:
  ``world = affine @ [i, j, k, 1]`` maps the *centre* of voxel ``(i, j, k)``.
* A voxel covers ``±0.5`` voxel around its centre, so an image's field of view (FOV) is the box
  spanned by its voxel corners, ``-0.5 … n-0.5`` in voxel units along each axis.
* The network sees *normalised* coordinates: ``(world - centre_mm) / half_extent_mm`` with one
  isotropic scale for all axes, so that frequencies mean the same thing in every direction.

* Slice profiles are described by their full width at half maximum (FWHM, mm); a Gaussian's
  standard deviation is :func:`fwhm_to_sigma` of it.
* Volumes are read at arbitrary points by one sampler, :func:`sample_volume` (trilinear, edge
  values beyond the outermost voxel centres), from continuous voxel indices. Its coordinates come
  either from a matrix (:func:`voxel_to_sampler_matrix`, composed once) or from voxel indices on
  tensors (:func:`voxel_to_sampler`); both compute the same map.

Everything here is a pure function of arrays and affines (NumPy; the few torch functions work
on tensors so that gradients flow through them). Affine products and inverses are made here; the
rest of the package only applies the matrices these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the functions that need it; reading files does not
    import torch

__all__ = [
    "apply_affine",
    "voxel_sizes_mm",
    "direction_cosines",
    "slice_axis",
    "world_axis_of",
    "voxel_centres_world",
    "fov_corners_world",
    "Box",
    "union_box",
    "overlap_fraction",
    "Normaliser",
    "Grid",
    "isotropic_grid",
    "grid_points_world",
    "flat_voxel_points",
    "grid_rows",
    "rescaled_affine",
    "axis_resampled_affine",
    "world_to_voxel_index",
    "axis_aligned_map",
    "rotation_from_vector",
    "rigid_matrix",
    "rigid_error",
    "compose",
    "slice_normal",
    "normalised_to_voxel_matrix",
    "normalised_to_sampler_matrix",
    "world_to_voxel_matrix",
    "voxel_to_sampler_matrix",
    "voxel_to_sampler",
    "sample_volume",
    "skew",
    "rotation_matrices_deg",
    "rigid_points",
    "inverse_rigid_points",
    "FWHM_PER_SIGMA",
    "fwhm_to_sigma",
]

# How far from a scaled permutation (relative to its largest entry) a voxel-to-voxel map may be and
# still count as axis-aligned (see axis_aligned_map).
AXIS_ALIGNED_TOL = 1e-9

# FWHM of a Gaussian in units of its standard deviation: 2·sqrt(2·ln 2) ≈ 2.3548.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def fwhm_to_sigma(fwhm: float) -> float:
    """Standard deviation of a Gaussian with full width at half maximum ``fwhm`` (same unit)."""
    return fwhm / FWHM_PER_SIGMA


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4×4 affine to points of shape ``(..., 3)``; returns the same shape (float64)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:3, :3].T + affine[:3, 3]


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel spacing in mm along each array axis: the norms of the affine's columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


def direction_cosines(affine: np.ndarray) -> np.ndarray:
    """3×3 matrix whose column ``a`` is the unit world direction of array axis ``a``."""
    affine = np.asarray(affine, dtype=np.float64)
    return affine[:3, :3] / voxel_sizes_mm(affine)


def slice_axis(affine: np.ndarray) -> int:
    """Array axis with the largest spacing (the thick, through-plane axis of a 2D stack).

    Ties (an isotropic volume) resolve to the last axis, the usual slice axis of NIfTI files.
    """
    sizes = voxel_sizes_mm(affine)
    return int(np.flatnonzero(np.isclose(sizes, sizes.max(), rtol=1e-3))[-1])


def world_axis_of(affine: np.ndarray, world_axis: int) -> int:
    """Array axis whose direction is closest to world axis ``world_axis`` (0=x/L-R, 1=y/A-P, 2=z/S-I)."""
    return int(np.argmax(np.abs(direction_cosines(affine)[world_axis])))


def voxel_centres_world(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape ``(*shape[:3], 3)``, C order."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape[:3]], indexing="ij"), axis=-1)
    return apply_affine(affine, idx)


def fov_corners_world(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of the 8 outer corners of the voxel grid, shape ``(8, 3)``."""
    lo_hi = [(-0.5, n - 0.5) for n in shape[:3]]
    corners = np.array(list(product(*lo_hi)), dtype=np.float64)
    return apply_affine(affine, corners)


@dataclass(frozen=True)
class Box:
    """An oriented box: ``lo_mm``/``hi_mm`` are bounds along the columns of ``rotation``.

    ``rotation`` (3×3, orthonormal columns, may include a reflection) maps box-frame coordinates to
    world directions: ``world = rotation @ u`` for a box-frame point ``u``.
    """

    rotation: np.ndarray
    lo_mm: np.ndarray
    hi_mm: np.ndarray

    @property
    def extent_mm(self) -> np.ndarray:
        return self.hi_mm - self.lo_mm

    @property
    def centre_world(self) -> np.ndarray:
        return self.rotation @ ((self.lo_mm + self.hi_mm) / 2.0)

    def to_dict(self) -> dict:
        return {k: np.asarray(getattr(self, k)).tolist() for k in ("rotation", "lo_mm", "hi_mm")}

    @classmethod
    def from_dict(cls, d: dict) -> "Box":
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in ("rotation", "lo_mm", "hi_mm")))


def union_box(
    images: list[tuple[tuple[int, ...], np.ndarray]], rotation: np.ndarray | None = None
) -> Box:
    """Smallest box in the frame ``rotation`` that holds the FOV of every ``(shape, affine)``.

    ``rotation`` defaults to the direction cosines of the first image, so the box is aligned with
    the first stack's axes.
    """
    if rotation is None:
        rotation = direction_cosines(images[0][1])
    corners = np.concatenate([fov_corners_world(s, a) for s, a in images])
    u = corners @ rotation  # world → box frame (rotation is orthonormal)
    return Box(np.asarray(rotation, dtype=np.float64), u.min(axis=0), u.max(axis=0))


def overlap_fraction(
    a: tuple[tuple[int, ...], np.ndarray], b: tuple[tuple[int, ...], np.ndarray]
) -> float:
    """Volume of the intersection of two FOVs (in ``a``'s frame) over the smaller FOV's volume.

    Both FOVs are boxed in ``a``'s axes (``b``'s box is conservative when it is oblique to ``a``).
    0 means disjoint.
    """
    rot = direction_cosines(a[1])
    box_a, box_b = union_box([a], rot), union_box([b], rot)
    inter = np.clip(np.minimum(box_a.hi_mm, box_b.hi_mm) - np.maximum(box_a.lo_mm, box_b.lo_mm), 0, None)
    smaller = min(np.prod(box_a.extent_mm), np.prod(box_b.extent_mm))
    return float(np.prod(inter) / smaller) if smaller > 0 else 0.0


@dataclass(frozen=True)
class Normaliser:
    """Maps world mm to network coordinates: ``(world - centre_mm) / scale_mm``.

    Built from a box so that the whole box lands inside ``[-1, 1]`` along every world axis, with one
    isotropic scale (half the largest world extent of the box's corners).
    """

    centre_mm: np.ndarray
    scale_mm: float

    @classmethod
    def from_box(cls, box: Box) -> "Normaliser":
        corners_u = np.array(list(product(*zip(box.lo_mm, box.hi_mm))), dtype=np.float64)
        corners = corners_u @ box.rotation.T
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        return cls((lo + hi) / 2.0, float((hi - lo).max() / 2.0))

    def __call__(self, world_mm: np.ndarray) -> np.ndarray:
        return (np.asarray(world_mm, dtype=np.float64) - self.centre_mm) / self.scale_mm

    def to_world(self, coords: np.ndarray) -> np.ndarray:
        """The inverse map: normalised coordinates → world mm (float64)."""
        return np.asarray(coords, dtype=np.float64) * self.scale_mm + self.centre_mm

    def to_world_matrix(self) -> np.ndarray:
        """:meth:`to_world` as a 4×4 homogeneous matrix (for composing with voxel affines)."""
        m = np.eye(4)
        m[:3, :3] *= self.scale_mm
        m[:3, 3] = self.centre_mm
        return m

    def to_dict(self) -> dict:
        return {"centre_mm": np.asarray(self.centre_mm).tolist(), "scale_mm": self.scale_mm}

    @classmethod
    def from_dict(cls, d: dict) -> "Normaliser":
        return cls(np.asarray(d["centre_mm"], dtype=np.float64), float(d["scale_mm"]))


@dataclass(frozen=True)
class Grid:
    """A voxel grid: array ``shape`` and the 4×4 ``affine`` mapping voxel centres to world mm."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def n_vox(self) -> int:
        return int(np.prod(self.shape))


def isotropic_grid(box: Box, spacing_mm: float) -> Grid:
    """Isotropic grid of ``spacing_mm`` voxels aligned with ``box.rotation`` that covers ``box``.

    The number of voxels along each axis is ``ceil(extent / spacing)``; the grid is centred on the
    box, so it overhangs the box by less than one voxel in total per axis.
    """
    if not spacing_mm > 0:
        raise ValueError(f"spacing must be positive, got {spacing_mm}")
    n = np.maximum(np.ceil(box.extent_mm / spacing_mm - 1e-6), 1).astype(int)
    first_centre_u = (box.lo_mm + box.hi_mm) / 2.0 - (n - 1) * spacing_mm / 2.0
    affine = np.eye(4)
    affine[:3, :3] = box.rotation * spacing_mm
    affine[:3, 3] = box.rotation @ first_centre_u
    return Grid((int(n[0]), int(n[1]), int(n[2])), affine)


def flat_voxel_points(affine: np.ndarray, shape: tuple[int, ...], flat: np.ndarray) -> np.ndarray:
    """``affine`` applied to the voxels of an array of ``shape`` with flat C-order indices ``flat``
    (``(N,)``): their world coordinates (mm) for a voxel-to-world affine, ``(N, 3)`` float64."""
    return apply_affine(affine, np.stack(np.unravel_index(flat, shape[:3]), axis=-1))


def grid_points_world(grid: Grid, start: int, stop: int) -> np.ndarray:
    """World coordinates (mm) of the voxel centres with flat C-order indices ``start … stop-1``."""
    return flat_voxel_points(grid.affine, grid.shape, np.arange(start, stop))


def grid_rows(grid: Grid, start: int, stop: int) -> Grid:
    """The block of ``grid`` made of its voxels ``start … stop-1`` along the first array axis, with
    the same voxel centres in world mm."""
    affine = np.array(grid.affine, dtype=np.float64)
    affine[:3, 3] += start * affine[:3, 0]
    return Grid((stop - start, *grid.shape[1:]), affine)


def rescaled_affine(
    affine: np.ndarray, shape: tuple[int, ...], axis: int, factor: int, keep: str
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of a grid whose spacing along array ``axis`` is ``factor`` times coarser.

    ``keep="centre"``: nibabel's ``rescale_affine`` with ``ceil(n / factor)`` voxels: old voxel
    ``(n-1)//2`` and new voxel ``(n_new-1)//2`` share their centre (the "point" protocol of the
    shared data README).
    ``keep="blocks"``: new voxel ``i`` is the block of old voxels ``factor*i … factor*i+factor-1``,
    centred on them; the count is ``n // factor`` (the "slab" protocol; a remainder is dropped).
    """
    shape3 = [int(s) for s in shape[:3]]
    n_old = shape3[axis]
    if keep == "centre":
        n_new = int(np.ceil(n_old / factor))
        shift_vox_old = (n_old - 1) // 2 - ((n_new - 1) // 2) * factor
    elif keep == "blocks":
        n_new = n_old // factor
        shift_vox_old = (factor - 1) / 2.0
    else:
        raise ValueError(f"keep must be 'centre' or 'blocks', got {keep!r}")
    shape3[axis] = n_new
    return axis_resampled_affine(affine, axis, factor, shift_vox_old), (shape3[0], shape3[1], shape3[2])


def axis_resampled_affine(affine: np.ndarray, axis: int, spacing_factor: float, first_centre_vox: float) -> np.ndarray:
    """Affine of a grid that differs from ``affine``'s only along array ``axis``: its spacing is
    ``spacing_factor`` times the old one (below 1: finer) and its first voxel centre lies at old
    voxel coordinate ``first_centre_vox`` along that axis."""
    new = np.array(affine, dtype=np.float64)
    new[:3, axis] = affine[:3, axis] * spacing_factor
    new[:3, 3] = affine[:3, 3] + affine[:3, axis] * first_centre_vox
    return new


def world_to_voxel_index(affine: np.ndarray, world_mm: np.ndarray) -> np.ndarray:
    """Nearest voxel indices (int64, ``(..., 3)``) of world points in the grid of ``affine``."""
    return np.rint(apply_affine(world_to_voxel_matrix(affine), world_mm)).astype(np.int64)


def axis_aligned_map(affine: np.ndarray, grid_affine: np.ndarray) -> list[tuple[int, float, float]] | None:
    """Per axis of the grid of ``grid_affine``, ``(axis, scale, offset)`` such that the grid's voxel
    ``i`` along it lies at voxel coordinate ``scale · i + offset`` along ``axis`` of the grid of
    ``affine`` (whatever its other indices), or ``None`` when the voxel-to-voxel map is not a scaled
    permutation of the axes (the grids are oblique to each other)."""
    m = world_to_voxel_matrix(np.asarray(affine, dtype=np.float64)) @ np.asarray(grid_affine, dtype=np.float64)
    r = m[:3, :3]
    big = np.abs(r) > AXIS_ALIGNED_TOL * np.abs(r).max()
    if not (big.sum(axis=0) == 1).all() or not (big.sum(axis=1) == 1).all():
        return None
    axes = []
    for a in range(3):
        p = int(np.flatnonzero(big[:, a])[0])
        axes.append((p, float(r[p, a]), float(m[p, 3])))
    return axes


def rotation_from_vector(rotvec_rad: np.ndarray) -> np.ndarray:
    """3×3 rotation by ``|v|`` radians about the unit axis ``v/|v|`` (Rodrigues' formula)."""
    v = np.asarray(rotvec_rad, dtype=np.float64)
    theta = float(np.linalg.norm(v))
    if theta < 1e-12:
        return np.eye(3)
    k = v / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * (kx @ kx)


def rigid_matrix(rotation: np.ndarray, translation_mm: np.ndarray, centre_mm: np.ndarray) -> np.ndarray:
    """4×4 world → world map ``x ↦ R (x - c) + c + t``: rotation ``R`` about ``centre_mm``, then
    a shift of ``translation_mm`` (all in world mm)."""
    rot = np.asarray(rotation, dtype=np.float64)
    c = np.asarray(centre_mm, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = c - rot @ c + np.asarray(translation_mm, dtype=np.float64)
    return m


def rigid_error(estimate: np.ndarray, truth: np.ndarray, points_mm: np.ndarray) -> tuple[float, float]:
    """How far a 4×4 rigid ``estimate`` is from ``truth``: the mean distance (mm) between where
    the two send ``points_mm`` (``(N, 3)`` world), and the angle (degrees) of the residual
    rotation ``R_est R_truthᵀ``."""
    moved = apply_affine(estimate, points_mm) - apply_affine(truth, points_mm)
    residual = estimate[:3, :3] @ truth[:3, :3].T
    cos = np.clip((np.trace(residual) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.linalg.norm(moved, axis=1).mean()), float(np.degrees(np.arccos(cos)))


def compose(*affines: np.ndarray) -> np.ndarray:
    """The product ``A @ B @ …`` of 4×4 affines: the map that applies the last one first."""
    out = np.asarray(affines[0], dtype=np.float64)
    for a in affines[1:]:
        out = out @ np.asarray(a, dtype=np.float64)
    return out


def slice_normal(affine: np.ndarray) -> np.ndarray:
    """Unit normal (world frame) of the slice planes spanned by the two in-plane array axes,
    oriented along the slice axis (differs from the slice axis only for sheared affines)."""
    cols = direction_cosines(affine)
    a = slice_axis(affine)
    u, v = (cols[:, i] for i in range(3) if i != a)
    n = np.cross(u, v)
    n /= np.linalg.norm(n)
    return n if n @ cols[:, a] >= 0 else -n


def normalised_to_voxel_matrix(affine: np.ndarray, normaliser: Normaliser) -> np.ndarray:
    """(3, 4) map of normalised coordinates → world mm → continuous voxel indices of ``affine``."""
    return (world_to_voxel_matrix(affine) @ normaliser.to_world_matrix())[:3]


def world_to_voxel_matrix(affine: np.ndarray) -> np.ndarray:
    """4×4 map of world mm → continuous voxel indices of ``affine`` (its inverse)."""
    return np.linalg.inv(affine)


def normalised_to_sampler_matrix(shape: tuple[int, ...], affine: np.ndarray, normaliser: Normaliser) -> np.ndarray:
    """(3, 4) map of normalised coordinates → world mm → voxel indices of the grid ``(shape,
    affine)`` → sampling coordinates of :func:`sample_volume` (rows in (k, j, i) order)."""
    return (voxel_to_sampler_matrix(shape) @ world_to_voxel_matrix(affine) @ normaliser.to_world_matrix())[:3]


def voxel_to_sampler_matrix(shape: tuple[int, ...]) -> np.ndarray:
    """4×4 map of continuous voxel indices ``(i, j, k)`` of a ``shape`` volume to the sampling
    coordinates of :func:`sample_volume`: ``[-1, 1]`` between the outermost voxel centres, in
    reversed ``(k, j, i)`` order (the order ``torch.nn.functional.grid_sample`` reads)."""
    extent = np.maximum(np.asarray(shape[:3], dtype=np.float64) - 1.0, 1.0)
    to_unit = np.diag([*(2.0 / extent), 1.0])
    to_unit[:3, 3] = -1.0
    to_unit[:3] = to_unit[:3][::-1]
    return to_unit


def voxel_to_sampler(vox: "torch.Tensor", shape: "torch.Tensor") -> "torch.Tensor":
    """:func:`voxel_to_sampler_matrix` applied to ``(N, 3)`` continuous voxel indices (tensor),
    for a volume of ``shape`` (a tensor of the three sizes, same dtype)."""
    return (2.0 * vox / (shape - 1).clamp(min=1) - 1.0).flip(-1)


def sample_volume(volume: "torch.Tensor", coords: "torch.Tensor") -> "torch.Tensor":
    """Trilinear samples of ``volume`` (``(C, X, Y, Z)``) at ``(N, 3)`` sampling coordinates (see
    :func:`voxel_to_sampler`); beyond the outermost voxel centres the edge value. Returns ``(C, N)``;
    differentiable in ``coords`` and ``volume``."""
    import torch.nn.functional as F

    out = F.grid_sample(volume[None], coords.view(1, -1, 1, 1, 3), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0, :, :, 0, 0]


def skew(v: "torch.Tensor") -> "torch.Tensor":
    """``(S, 3)`` vectors → ``(S, 3, 3)`` cross-product matrices."""
    import torch

    z = torch.zeros_like(v[:, 0])
    return torch.stack([
        torch.stack([z, -v[:, 2], v[:, 1]], -1),
        torch.stack([v[:, 2], z, -v[:, 0]], -1),
        torch.stack([-v[:, 1], v[:, 0], z], -1),
    ], dim=1)


def rotation_matrices_deg(rotvec_deg: "torch.Tensor") -> "torch.Tensor":
    """``(S, 3)`` rotation vectors (axis × angle in degrees) → ``(S, 3, 3)`` rotations (tensor,
    differentiable); the torch twin of :func:`rotation_from_vector`."""
    import torch

    return torch.linalg.matrix_exp(skew(rotvec_deg * (np.pi / 180.0)))


def rigid_points(points: "torch.Tensor", rotation: "torch.Tensor", shift: "torch.Tensor",
                 centre: "torch.Tensor") -> "torch.Tensor":
    """``R (x - c) + c + t`` for ``(B, 3)`` points with per-point ``(B, 3, 3)`` rotations and
    ``(B, 3)`` shifts and centres (the map of :func:`rigid_matrix`, on tensors)."""
    import torch

    return torch.einsum("bij,bj->bi", rotation, points - centre) + centre + shift


def inverse_rigid_points(points: "torch.Tensor", rotation: "torch.Tensor", shift: "torch.Tensor",
                         centre: "torch.Tensor") -> "torch.Tensor":
    """``Rᵀ (y - c - t) + c`` for ``(N, 3)`` points and one ``(3, 3)`` rotation: the inverse of
    :func:`rigid_points` (where a point that the rigid map sends to ``y`` came from)."""
    return (points - centre - shift) @ rotation + centre
