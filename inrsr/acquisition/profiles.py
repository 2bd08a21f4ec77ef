"""Slice profiles: how much each point across a slice contributes to one thick voxel.

One vocabulary everywhere (CLI, configs, simulation, SMORE, docs): a profile is

* ``point``: the voxel is the signal at its centre (a thin slice; between slices, nothing);
* ``box``: the voxel is the mean of the signal over its slice thickness (a slab);
* ``gaussian``: the voxel is a Gaussian-weighted mean across the slice, FWHM = slice thickness.

Widths are the slice thickness (FWHM for ``gaussian``) in mm along the slice normal. ``slab``, the
former name of ``box`` in ``inrsr simulate``, is still accepted with a warning (see
:func:`profile_name`).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from inrsr.config import SLICE_PROFILES
from inrsr.errors import InputError, InputWarning
from inrsr.geometry import Normaliser, fwhm_to_sigma, slice_normal

if TYPE_CHECKING:
    from inrsr.io.stack import Stack

__all__ = [
    "PROFILES", "FORMER_NAMES", "profile_name", "profile_quadrature", "profile_density", "stack_profile_offsets",
    "half_support_voxels",
]

PROFILES = SLICE_PROFILES  # ("point", "box", "gaussian"), also FitConfig's choices
# Former spellings, accepted with a warning for one release.
FORMER_NAMES = {"slab": "box"}


def profile_name(name: str, option: str = "--profile", allowed: tuple[str, ...] = PROFILES) -> str:
    """The profile called ``name``: one of ``allowed``, or a former spelling of one (with an
    :class:`~inrsr.errors.InputWarning`); :class:`~inrsr.errors.InputError` otherwise."""
    if name in FORMER_NAMES and FORMER_NAMES[name] in allowed:
        new = FORMER_NAMES[name]
        warnings.warn(f"{option} {name} is a former name of {option} {new}; use {new}", InputWarning, stacklevel=2)
        return new
    if name not in allowed:
        raise InputError(f"{option} must be one of {', '.join(allowed)}, got {name!r}")
    return name


def profile_quadrature(kind: str, thickness_mm: float, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature of a slice profile across the slice: positions (mm, along the slice normal,
    relative to the voxel centre) and weights summing to 1.

    ``point``: one point at the centre. ``box``: the midpoints of ``n_points`` equal parts of
    ``[-t/2, t/2]``, equal weights (exact for a slab simulated as the mean of ``n_points`` thin
    slices). ``gaussian``: ``n_points`` midpoints of equal parts of ``[-t, t]`` (±2.35 σ) weighted
    by a Gaussian with FWHM ``t``.
    """
    if kind == "point" or n_points == 1:
        return np.zeros(1), np.ones(1)
    u = (np.arange(n_points) + 0.5) / n_points - 0.5  # midpoints of equal parts of [-1/2, 1/2]
    if kind == "box":
        return u * thickness_mm, np.full(n_points, 1.0 / n_points)
    if kind == "gaussian":
        pos = 2.0 * u * thickness_mm
        w = np.exp(-0.5 * (pos / (fwhm_to_sigma(thickness_mm))) ** 2)
        return pos, w / w.sum()
    raise ValueError(f"unknown slice profile {kind!r}")


def profile_density(x: np.ndarray, fwhm: float, kind: str) -> np.ndarray:
    """The continuous profile (unit area) at offsets ``x`` from a slice centre, in any unit that
    ``fwhm`` shares: ``gaussian``, the normal density of that FWHM; ``box``, ``1/fwhm`` on
    ``|x| ≤ fwhm/2``."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "gaussian":
        sigma = fwhm_to_sigma(fwhm)
        return np.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi))
    if kind == "box":
        return (np.abs(x) <= fwhm / 2.0) / fwhm
    raise ValueError(f"profile must be gaussian or box, got {kind!r}")


def stack_profile_offsets(
    stacks: list["Stack"], kind: str, n_points: int, normaliser: Normaliser
) -> tuple[np.ndarray, np.ndarray]:
    """Per stack, profile points as normalised offsets along its slice normal, and their weights."""
    k = 1 if kind == "point" else n_points
    offsets = np.zeros((len(stacks), k, 3), dtype=np.float32)
    weights = np.zeros((len(stacks), k), dtype=np.float32)
    for i, s in enumerate(stacks):
        normal = slice_normal(s.affine)
        pos_mm, w = profile_quadrature(kind, s.slice_thickness_mm, n_points)
        offsets[i] = pos_mm[:, None] * normal[None, :] / normaliser.scale_mm
        weights[i] = w
    return offsets, weights


def half_support_voxels(profile: str, thickness_mm: float, spacing_mm: float) -> float:
    """Half the through-plane support of a voxel's back-projected residual, in slice spacings
    (0.5: the slabs tile the stack); negative for ``point`` profiles (linear across slices)."""
    if profile == "point":
        return -1.0
    return 0.5 * thickness_mm / spacing_mm
