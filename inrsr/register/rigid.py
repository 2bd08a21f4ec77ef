"""Rigid alignment of one stack to another by maximising their mutual information.

Used to start ``--register`` close to the answer: stacks of different contrasts share no intensity
scale, and a field fitted to each contrast's own data alone cannot tell where the other contrast
is. The result is the same kind of transform that :class:`inrsr.register.poses.StackPoses` learns: a stack
whose header places a point at ``x`` (world mm) really imaged ``T(x) = R (x - c) + c + t``, with
``c`` the centre of the stack's field of view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from inrsr.geometry import (
    flat_voxel_points, fov_corners_world, fwhm_to_sigma, inverse_rigid_points, rigid_matrix, rotation_matrices_deg,
    sample_volume, voxel_sizes_mm, voxel_to_sampler, world_to_voxel_matrix,
)
from inrsr.mi import soft_mutual_information

__all__ = ["RigidResult", "similarity", "align_rigid"]


@dataclass(frozen=True)
class RigidResult:
    """A rigid transform as ``rotation_deg`` (rotation vector, degrees) about ``centre_mm`` then
    ``shift_mm``; ``matrix`` is the same as a 4×4 world map; ``mi`` the final similarity (nats)."""

    rotation_deg: np.ndarray
    shift_mm: np.ndarray
    centre_mm: np.ndarray
    matrix: np.ndarray
    mi: float


def _unit_range(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``values`` mapped to [0, 1] by the 1st and 99th percentiles of ``reference``, clipped."""
    lo, hi = np.percentile(reference, [1.0, 99.0])
    return np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def _sampler(volume: np.ndarray, affine: np.ndarray):
    """``f(world (N, 3) float64 tensor) → (values, inside)``: trilinear samples of ``volume`` at
    world points (edge values beyond it) and whether each point lies within its field of view."""
    to_vox = torch.from_numpy(world_to_voxel_matrix(affine))
    size = torch.tensor(volume.shape, dtype=torch.float64)
    vol = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float64))[None]

    def sample(world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vox = world @ to_vox[:3, :3].T + to_vox[:3, 3]
        inside = ((vox > -0.5) & (vox < size - 0.5)).all(dim=1).to(torch.float64)
        return sample_volume(vol, voxel_to_sampler(vox, size))[0], inside

    return sample


def _foreground_sample(mask: np.ndarray, affine: np.ndarray, points: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
    """Up to ``points`` foreground voxels of ``mask`` (flat indices, sorted) and their world positions."""
    rng = np.random.default_rng(seed)
    fg = np.flatnonzero(mask.ravel())
    pick = np.sort(rng.choice(fg, min(points, fg.size), replace=False))
    return pick, torch.from_numpy(flat_voxel_points(affine, mask.shape, pick))


def _smoothed(data: np.ndarray, affine: np.ndarray, fwhm_mm: float) -> np.ndarray:
    """``data`` blurred by a Gaussian of ``fwhm_mm`` (mm, converted per axis by the voxel size)."""
    return ndimage.gaussian_filter(np.asarray(data, dtype=np.float32), fwhm_to_sigma(fwhm_mm) / voxel_sizes_mm(affine))


def similarity(
    fixed: np.ndarray, fixed_affine: np.ndarray, fixed_mask: np.ndarray, moving: np.ndarray,
    moving_affine: np.ndarray, fwhm_mm: float = 4.0, points: int = 20000,
) -> tuple[float, float]:
    """MI (nats) of two images where their headers place them, both blurred by ``fwhm_mm``,
    sampled at ``fixed``'s foreground voxels; and the fraction of those inside ``moving``."""
    pick, world = _foreground_sample(fixed_mask, fixed_affine, points, 0)
    f_s = _smoothed(fixed, fixed_affine, fwhm_mm).ravel()[pick]
    m_s = _smoothed(moving, moving_affine, fwhm_mm)
    values, inside = _sampler(_unit_range(m_s, m_s[m_s > np.percentile(m_s, 50)]), moving_affine)(world)
    if float(inside.sum()) < 100:
        return 0.0, float(inside.mean())
    return float(soft_mutual_information(torch.from_numpy(_unit_range(f_s, f_s)), values, inside)), float(inside.mean())


def align_rigid(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    fixed_mask: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    levels_mm: tuple[float, ...] = (8.0, 4.0, 2.0),
    iterations: int = 150,
    points: int = 40000,
    step: float = 0.2,
    seed: int = 0,
) -> RigidResult:
    """The rigid transform of ``moving`` (about its field of view's centre) that maximises the MI
    between the two images, coarse to fine.

    At each level both images are smoothed by a Gaussian of ``levels_mm`` FWHM (in mm, per axis
    from each image's own spacing); the moving image is sampled (trilinear) at up to ``points``
    foreground voxel centres of the fixed image, and Adam with step ``step`` (mm and degrees,
    decayed along a cosine) runs ``iterations`` times on the rotation and shift. Samples that
    fall outside the moving image are left out. Deterministic for a given ``seed``.
    """
    pick, world = _foreground_sample(fixed_mask, fixed_affine, points, seed)
    centre = fov_corners_world(moving.shape, moving_affine).mean(axis=0)
    rotation_deg = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    shift_mm = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    c = torch.from_numpy(centre)
    mi = torch.tensor(0.0)
    for fwhm in levels_mm:
        f_s = _smoothed(fixed, fixed_affine, fwhm).ravel()[pick]
        m_s = _smoothed(moving, moving_affine, fwhm)
        a = torch.from_numpy(_unit_range(f_s, f_s))
        sample = _sampler(_unit_range(m_s, m_s[m_s > np.percentile(m_s, 50)]), moving_affine)
        optimiser = torch.optim.Adam([rotation_deg, shift_mm], lr=step)
        for it in range(iterations):
            for group in optimiser.param_groups:
                group["lr"] = step * 0.5 * (1.0 + math.cos(math.pi * it / iterations))
            rot = rotation_matrices_deg(rotation_deg[None])[0]
            # the moving image's header position of each true position y: T⁻¹(y) = Rᵀ (y - c - t) + c
            b, inside = sample(inverse_rigid_points(world, rot, shift_mm, c))
            mi = soft_mutual_information(a, b, inside)
            optimiser.zero_grad()
            (-mi).backward()
            optimiser.step()
    with torch.no_grad():
        rot = rotation_matrices_deg(rotation_deg[None])[0].numpy()
    r_deg, t_mm = rotation_deg.detach().numpy().copy(), shift_mm.detach().numpy().copy()
    return RigidResult(r_deg, t_mm, centre, rigid_matrix(rot, t_mm, centre), float(mi.detach()))
