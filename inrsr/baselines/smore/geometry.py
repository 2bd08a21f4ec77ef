"""Geometry of one anisotropic volume for SMORE: its thick axis, spacings, slice ratio and profile
width, the refined grid, and where low- and high-resolution rows lie (in HR rows, see the frames
in :mod:`inrsr.baselines.smore`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inrsr.baselines.smore.config import SmoreConfig
from inrsr.errors import InputError
from inrsr.geometry import axis_resampled_affine, slice_axis, voxel_sizes_mm

__all__ = ["SmoreGeometry", "check_volume", "hr_affine", "lr_positions", "hr_positions", "MIN_RATIO",
           "INPLANE_TOLERANCE"]

MIN_RATIO = 1.2  # below this the volume counts as isotropic
INPLANE_TOLERANCE = 0.05  # largest relative difference between the two in-plane spacings


@dataclass(frozen=True)
class SmoreGeometry:
    """Thick axis, spacings and slice profile width of one volume.

    thick_axis : array axis with the largest voxel size; inplane_axes : the other two, in order.
    slice_spacing_mm : ``b``; inplane_spacing_mm : ``a`` (mean of the two in-plane spacings).
    ratio : ``r = b / a`` (need not be an integer). n_thick : slices; n_hr : ``round(n_thick · r)``.
    thickness_mm : slice thickness; fwhm_px : profile FWHM (or box width) in HR rows, thickness / a.
    """

    thick_axis: int
    inplane_axes: tuple[int, int]
    slice_spacing_mm: float
    inplane_spacing_mm: float
    ratio: float
    n_thick: int
    n_hr: int
    thickness_mm: float
    fwhm_px: float


def check_volume(shape: tuple[int, ...], affine: np.ndarray, config: SmoreConfig) -> SmoreGeometry:
    """The :class:`SmoreGeometry` of a volume ``(shape, affine)``, or :class:`InputError` when SMORE
    cannot run on it: not anisotropic (``r < 1.2``), non-square in-plane pixels (spacings more than
    5 % apart), fewer than 2 slices, in-plane size below the patch size, or a ratio too large for
    the patch (fewer than 2 low-resolution rows per patch)."""
    shape3 = tuple(int(s) for s in shape[:3])
    sizes = voxel_sizes_mm(affine)
    t = slice_axis(affine)
    p, q = (ax for ax in range(3) if ax != t)
    ap, aq, b = float(sizes[p]), float(sizes[q]), float(sizes[t])
    a = 0.5 * (ap + aq)
    ratio = b / a
    if ratio < MIN_RATIO:
        raise InputError(
            f"not anisotropic: slice spacing {b:.3g} mm is {ratio:.3g}× the in-plane spacing {a:.3g} mm "
            f"(SMORE needs at least {MIN_RATIO}×)"
        )
    if abs(ap - aq) > INPLANE_TOLERANCE * min(ap, aq):
        raise InputError(
            f"in-plane spacings {ap:.3g} mm and {aq:.3g} mm differ by more than {INPLANE_TOLERANCE:.0%} "
            f"(SMORE needs square in-plane pixels)"
        )
    n = shape3[t]
    if n < 2:
        raise InputError(f"only {n} slice along the thick axis {t}; SMORE needs at least 2")
    if min(shape3[p], shape3[q]) < config.patch_size:
        raise InputError(
            f"in-plane size {shape3[p]}×{shape3[q]} voxels is smaller than the training patch "
            f"({config.patch_size} voxels; use a smaller --patch)"
        )
    if 2.0 * ratio > config.patch_size:
        raise InputError(f"slice ratio {ratio:.3g} is too large for --patch {config.patch_size} "
                         f"(a patch must hold at least 2 thick slices)")
    thickness = float(config.thickness_mm) if config.thickness_mm > 0 else b
    return SmoreGeometry(t, (p, q), b, a, ratio, n, int(round(n * ratio)), thickness, thickness / a)


def hr_affine(affine: np.ndarray, thick_axis: int, ratio: float) -> np.ndarray:
    """Voxel → world affine of the refined grid whose thick axis has spacing ``b / ratio``.

    The thick-axis spacing is divided by ``ratio`` and the origin moves to the centre of the first
    HR row (:func:`inrsr.geometry.axis_resampled_affine`), ``−0.5 + 0.5/ratio`` thick voxels from
    the first slice's centre (the slab of slice 0 starts half a slice before its centre). The other
    axes are unchanged.
    """
    return axis_resampled_affine(affine, thick_axis, 1.0 / ratio, -0.5 + 0.5 / ratio)


def lr_positions(n_lr: int, ratio: float) -> np.ndarray:
    """Centres (in HR rows) of the low-resolution samples ``0 … n_lr−1``: ``k·r + (r−1)/2``."""
    return np.arange(n_lr, dtype=np.float64) * ratio + (ratio - 1.0) / 2.0


def hr_positions(n_hr: int, ratio: float) -> np.ndarray:
    """Positions (in low-resolution sample indices) of the HR rows ``0 … n_hr−1``: ``(j + 0.5)/r − 0.5``."""
    return (np.arange(n_hr, dtype=np.float64) + 0.5) / ratio - 0.5
