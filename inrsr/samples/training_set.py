"""Training tensors from validated stacks: normalised coordinates, scaled values, contrast ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from inrsr.acquisition.profiles import stack_profile_offsets
from inrsr.geometry import Box, Normaliser, flat_voxel_points, fov_corners_world, union_box
from inrsr.io.stack import Stack
from inrsr.samples.foreground import estimate_foreground
from inrsr.samples.intensity import IntensityScale, fit_intensity_scale

__all__ = ["Subject", "TrainingSet", "describe_subject", "build_training_set", "stack_foregrounds"]


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
    base : the prior the network learns a residual over (:mod:`inrsr.field.base`: a module
        mapping ``(N, 3)`` normalised points to ``(N, C)`` values), or ``None``.
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
    base: nn.Module | None = None

    def __len__(self) -> int:
        return int(self.values.shape[0])


def stack_foregrounds(stacks: list[Stack]) -> list[np.ndarray]:
    """Each stack's foreground: its own mask when it has one, else the estimate of
    :func:`inrsr.samples.foreground.estimate_foreground`."""
    return [s.mask if s.mask is not None else estimate_foreground(s.data) for s in stacks]


def describe_subject(stacks: list[Stack], foregrounds: list[np.ndarray] | None = None) -> Subject:
    """Contrast list, union box, normaliser and per-contrast intensity scales of the stacks."""
    foregrounds = foregrounds if foregrounds is not None else stack_foregrounds(stacks)
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





def build_training_set(
    stacks: list[Stack],
    background_ratio: float,
    mi_points: int,
    seed: int,
    profile: str = "point",
    profile_points: int = 1,
    exclude: list[np.ndarray | None] | None = None,
    foregrounds: list[np.ndarray] | None = None,
) -> tuple[Subject, TrainingSet]:
    """Sample every stack's voxels into one flat training set.

    Parameters
    ----------
    stacks : validated input stacks (each with its own grid).
    background_ratio : background voxels drawn (once, at random) per foreground voxel of each
        stack; a negative value keeps every voxel (the paper's setting).
    mi_points : size of the fixed foreground subsample for the MI monitor.
    seed : seed of the background and MI subsamples.
    profile, profile_points : the slice-profile forward model (see
        :func:`inrsr.acquisition.profiles.profile_quadrature`); each stack's profile lies along its
        slice normal and spans its slice thickness.
    exclude : optional boolean array per stack (``None`` for none): voxels held out of training
        altogether (see :mod:`inrsr.evaluate.consistency`).
    foregrounds : every stack's foreground (:func:`stack_foregrounds`), when the caller has them.
    """
    rng = np.random.default_rng(seed)
    foregrounds = foregrounds if foregrounds is not None else stack_foregrounds(stacks)
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
        world = flat_voxel_points(stack.affine, stack.shape, idx)
        coords.append(subject.normaliser(world).astype(np.float32))
        values.append(subject.scales[stack.contrast].forward(stack.data.ravel()[idx]))
        cids.append(np.full(idx.size, subject.contrasts.index(stack.contrast), dtype=np.int64))
        sids.append(np.full(idx.size, k, dtype=np.int64))
        fg_world = flat_voxel_points(stack.affine, stack.shape, fg_idx)
        fg_coords.append(subject.normaliser(fg_world).astype(np.float32))
    all_fg = np.concatenate(fg_coords)
    pick = rng.choice(all_fg.shape[0], min(mi_points, all_fg.shape[0]), replace=False)
    offsets, weights = stack_profile_offsets(stacks, profile, profile_points, subject.normaliser)
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
