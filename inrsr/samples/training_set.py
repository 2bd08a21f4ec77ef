"""Training tensors from validated stacks: normalised coordinates, scaled values, contrast ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .geometry import Box, Normaliser, apply_affine, direction_cosines, fov_corners_world, slice_axis, union_box
from .intensity import IntensityScale, fit_intensity_scale
from .io import Stack
from .masks import estimate_foreground

if TYPE_CHECKING:  # prior.py imports this module
    from .prior import BaseVolume

__all__ = ["Subject", "TrainingSet", "describe_subject", "build_training_set", "slice_profile", "profile_offsets"]

# FWHM of a Gaussian in units of its standard deviation: 2·sqrt(2·ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass
class Subject:
    """What fitting and rendering need to know about the inputs, beyond the network weights.

    ``contrasts`` are in order of first appearance among the stacks; ``box`` is the union of all
    stacks' fields of view in the first stack's axes; ``normaliser`` maps world mm into the
    network's coordinates; ``scales`` maps each contrast's intensities into network units;
    ``foregrounds`` holds each stack's ``(mask, affine)``, used to restrict rendering.
    """

    contrasts: list[str]
    box: Box
    normaliser: Normaliser
    scales: dict[str, IntensityScale]
    foregrounds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


@dataclass
class TrainingSet:
    """Flat training tensors (``N`` points) plus a fixed foreground subsample for the MI monitor.

    coords : (N, 3) float32, normalised coordinates of voxel centres.
    values : (N,) float32, voxel intensities in network units.
    contrast_id : (N,) int64, index into ``Subject.contrasts``.
    stack_id : (N,) int64, index of the source stack.
    mi_coords : (M, 3) float32, normalised coordinates of foreground voxel centres.
    profile_offsets : (S, K, 3) float32, per stack, the normalised offsets from a voxel centre of
        the ``K`` points whose weighted mean models that voxel (all zero for point sampling).
    profile_weights : (S, K) float32, their weights (each row sums to 1).
    stack_centres : (S, 3) float32, normalised centres of the stacks' fields of view.
    mm_per_unit : world mm per normalised unit (the normaliser's scale).
    gap_mm : the largest slice spacing among the stacks, mm (how far apart sampled planes can be).
    base : the prior the network learns a residual over (:mod:`inrsr.prior`), or ``None``.
    """

    coords: torch.Tensor
    values: torch.Tensor
    contrast_id: torch.Tensor
    stack_id: torch.Tensor
    mi_coords: torch.Tensor
    profile_offsets: torch.Tensor
    profile_weights: torch.Tensor
    stack_centres: torch.Tensor
    mm_per_unit: float
    gap_mm: float
    base: "BaseVolume | None" = None

    def __len__(self) -> int:
        return int(self.values.shape[0])


def _foregrounds(stacks: list[Stack]) -> list[np.ndarray]:
    return [s.mask if s.mask is not None else estimate_foreground(s.data) for s in stacks]


def describe_subject(stacks: list[Stack], foregrounds: list[np.ndarray] | None = None) -> Subject:
    """Contrast list, union box, normaliser and per-contrast intensity scales of the stacks."""
    foregrounds = foregrounds if foregrounds is not None else _foregrounds(stacks)
    contrasts: list[str] = []
    for s in stacks:
        if s.contrast not in contrasts:
            contrasts.append(s.contrast)
    box = union_box([(s.shape, s.affine) for s in stacks])
    scales = {}
    for c in contrasts:
        members = [i for i, s in enumerate(stacks) if s.contrast == c]
        scales[c] = fit_intensity_scale(
            [stacks[i].data for i in members], [stacks[i].data[foregrounds[i]] for i in members]
        )
    return Subject(
        contrasts, box, Normaliser.from_box(box), scales, [(m, s.affine) for m, s in zip(foregrounds, stacks)]
    )


def slice_profile(kind: str, thickness_mm: float, n_points: int) -> tuple[np.ndarray, np.ndarray]:
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
        w = np.exp(-0.5 * (pos / (thickness_mm / FWHM_PER_SIGMA)) ** 2)
        return pos, w / w.sum()
    raise ValueError(f"unknown slice profile {kind!r}")


def _slice_normal(affine: np.ndarray) -> np.ndarray:
    """Unit normal (world frame) of the slice planes spanned by the two in-plane array axes,
    oriented along the slice axis (differs from the slice axis only for sheared affines)."""
    cols = direction_cosines(affine)
    a = slice_axis(affine)
    u, v = (cols[:, i] for i in range(3) if i != a)
    n = np.cross(u, v)
    n /= np.linalg.norm(n)
    return n if n @ cols[:, a] >= 0 else -n


def profile_offsets(
    stacks: list[Stack], kind: str, n_points: int, normaliser: Normaliser
) -> tuple[np.ndarray, np.ndarray]:
    """Per stack, profile points as normalised offsets along its slice normal, and their weights."""
    k = 1 if kind == "point" else n_points
    offsets = np.zeros((len(stacks), k, 3), dtype=np.float32)
    weights = np.zeros((len(stacks), k), dtype=np.float32)
    for i, s in enumerate(stacks):
        normal = _slice_normal(s.affine)
        pos_mm, w = slice_profile(kind, s.slice_thickness_mm, n_points)
        offsets[i] = pos_mm[:, None] * normal[None, :] / normaliser.scale_mm
        weights[i] = w
    return offsets, weights


def build_training_set(
    stacks: list[Stack],
    background_ratio: float,
    mi_points: int,
    seed: int,
    profile: str = "point",
    profile_points: int = 1,
    exclude: list[np.ndarray | None] | None = None,
) -> tuple[Subject, TrainingSet]:
    """Sample every stack's voxels into one flat training set.

    Parameters
    ----------
    stacks : validated input stacks (each with its own grid).
    background_ratio : background voxels drawn (once, at random) per foreground voxel of each
        stack; a negative value keeps every voxel (the paper's setting).
    mi_points : size of the fixed foreground subsample for the MI monitor.
    seed : seed of the background and MI subsamples.
    profile, profile_points : the slice-profile forward model (see :func:`slice_profile`); each
        stack's profile lies along its slice normal and spans its slice thickness.
    exclude : optional boolean array per stack (``None`` for none): voxels held out of training
        altogether (see :mod:`inrsr.consistency`).
    """
    rng = np.random.default_rng(seed)
    foregrounds = _foregrounds(stacks)
    subject = describe_subject(stacks, foregrounds)
    coords, values, cids, sids, fg_coords = [], [], [], [], []
    for k, (stack, fg) in enumerate(zip(stacks, foregrounds)):
        held = exclude[k] if exclude is not None and exclude[k] is not None else np.zeros(stack.shape, bool)
        flat_fg, flat_held = fg.ravel(), held.ravel()
        fg_idx = np.flatnonzero(flat_fg & ~flat_held)
        if background_ratio < 0:
            idx = np.flatnonzero(~flat_held)
        else:
            bg_idx = np.flatnonzero(~flat_fg & ~flat_held)
            n_bg = min(bg_idx.size, int(round(background_ratio * fg_idx.size)))
            idx = np.sort(np.concatenate([fg_idx, rng.choice(bg_idx, n_bg, replace=False)]))
        world = apply_affine(stack.affine, np.stack(np.unravel_index(idx, stack.shape), axis=-1))
        coords.append(subject.normaliser(world).astype(np.float32))
        values.append(subject.scales[stack.contrast].forward(stack.data.ravel()[idx]))
        cids.append(np.full(idx.size, subject.contrasts.index(stack.contrast), dtype=np.int64))
        sids.append(np.full(idx.size, k, dtype=np.int64))
        fg_world = apply_affine(stack.affine, np.stack(np.unravel_index(fg_idx, stack.shape), axis=-1))
        fg_coords.append(subject.normaliser(fg_world).astype(np.float32))
    all_fg = np.concatenate(fg_coords)
    pick = rng.choice(all_fg.shape[0], min(mi_points, all_fg.shape[0]), replace=False)
    offsets, weights = profile_offsets(stacks, profile, profile_points, subject.normaliser)
    train = TrainingSet(
        coords=torch.from_numpy(np.concatenate(coords)),
        values=torch.from_numpy(np.concatenate(values).astype(np.float32)),
        contrast_id=torch.from_numpy(np.concatenate(cids)),
        stack_id=torch.from_numpy(np.concatenate(sids)),
        mi_coords=torch.from_numpy(all_fg[np.sort(pick)]),
        profile_offsets=torch.from_numpy(offsets),
        profile_weights=torch.from_numpy(weights),
        stack_centres=torch.from_numpy(np.stack([
            subject.normaliser(fov_corners_world(s.shape, s.affine).mean(axis=0)) for s in stacks
        ]).astype(np.float32)),
        mm_per_unit=subject.normaliser.scale_mm,
        gap_mm=float(max(s.slice_spacing_mm for s in stacks)),
    )
    return subject, train
