"""An interpolated prior that the network adds to.

The field of contrast *c* is ``w · base_c(x) + network_c(x)`` (``w``: ``--base-weight``), where
``base_c`` is a cubic B-spline interpolation of that contrast's own stacks, resampled once onto an
isotropic grid covering the subject and read back by trilinear interpolation. Where the data say
little (between the sampled planes of thick slices) the network's part stays small and the field
falls back to the interpolation instead of to whatever its features happen to hold there; where
the other contrasts' stacks carry detail, the shared trunk adds it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from inrsr.baselines.interpolate import cubic_between_slices, interpolate_to_grid
from inrsr.geometry import isotropic_grid, normalised_to_sampler_matrix, sample_volume, slice_axis
from inrsr.io.stack import Stack
from inrsr.samples.training_set import Subject

__all__ = ["BaseVolume", "cubic_base", "MIN_BASE_SPACING_MM"]

# The base grid is never finer than this (memory: it is saved in model.pt); the network adds finer detail.
MIN_BASE_SPACING_MM = 1.0


class BaseVolume(nn.Module):
    """Per-contrast volumes in network intensity units, sampled trilinearly at normalised points.

    ``volume`` : (C, X, Y, Z) float32, one volume per contrast on a regular grid.
    ``to_sample`` : (3, 4) float32 affine map of normalised coordinates to ``grid_sample``'s
    ``[-1, 1]`` coordinates, already in its (Z, Y, X) order. Points outside the grid take the
    nearest border value.
    """

    def __init__(self, volume: torch.Tensor, to_sample: torch.Tensor):
        super().__init__()
        self.register_buffer("volume", volume.float().contiguous())
        self.register_buffer("to_sample", to_sample.float().contiguous())

    @classmethod
    def empty_like_state(cls, state: dict[str, torch.Tensor], prefix: str) -> "BaseVolume":
        """A placeholder whose buffers have the shapes found in ``state`` (for loading a checkpoint)."""
        return cls(torch.empty_like(state[prefix + "volume"]), torch.empty_like(state[prefix + "to_sample"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` normalised points → ``(N, C)`` interpolated values (differentiable in ``x``)."""
        g = x.float() @ self.to_sample[:, :3].T + self.to_sample[:, 3]
        return sample_volume(self.volume, g).T


def _without_held_slices(stack: Stack, held: np.ndarray) -> np.ndarray:
    """The stack's data with every slice that has a held-out voxel re-predicted from the others
    (cubic spline across slices), so that a held-out evaluation cannot see them through the base."""
    axis = slice_axis(stack.affine)
    others = tuple(i for i in range(3) if i != axis)
    slices = np.flatnonzero(held.any(axis=others))
    if slices.size == 0:
        return stack.data
    return cubic_between_slices(stack.data, axis, slices)


def cubic_base(
    stacks: list[Stack], subject: Subject, exclude: list[np.ndarray | None] | None = None, threads: int = 0
) -> BaseVolume:
    """Cubic B-spline interpolation of each contrast's stacks (averaged where a contrast has
    several) on an isotropic grid over ``subject.box`` at the finest input spacing, but no finer
    than :data:`MIN_BASE_SPACING_MM`.

    ``exclude`` (per stack, boolean voxel masks or ``None``): slices holding excluded voxels are
    replaced by a spline across the other slices, and a stack excluded entirely contributes
    nothing (its contrast must have another stack). ``threads``: those of
    :func:`~inrsr.baselines.interpolate.interpolate_to_grid` (0: every CPU this process may use).
    """
    spacing = max(MIN_BASE_SPACING_MM, min(float(min(s.spacing_mm)) for s in stacks))
    grid = isotropic_grid(subject.box, spacing)
    volumes = []
    for c in subject.contrasts:
        parts = []
        for k, s in enumerate(stacks):
            held = exclude[k] if exclude is not None else None
            if s.contrast != c or (held is not None and bool(held.all())):
                continue
            data = s.data if held is None else _without_held_slices(s, held)
            parts.append(subject.scales[c].forward(interpolate_to_grid(data, s.affine, grid, threads=threads)))
        if not parts:
            raise ValueError(f"no stack left to interpolate contrast {c!r}")
        volumes.append(np.mean(parts, axis=0))
    volume = torch.from_numpy(np.stack(volumes).astype(np.float32))
    to_sample = normalised_to_sampler_matrix(grid.shape, grid.affine, subject.normaliser)
    return BaseVolume(volume, torch.from_numpy(to_sample.astype(np.float32)))
