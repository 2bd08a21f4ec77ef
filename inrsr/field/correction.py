"""Data consistency after the fit: each stack's residual, back-projected along its slice profile.

A fitted field reproduces its stacks' voxels only approximately: predicted through the forward
model (the slice profile), each voxel is off by a small residual ``r = measured − predicted``.
Back-projection (one step of iterative back-projection, as in classic super-resolution) adds
each voxel's residual to the field where that voxel measured it:

* **box** and **gaussian** profiles: a point takes the residual of the nearest slice when it lies
  within half the slice thickness (the FWHM for gaussian) of that slice's centre plane, and 0 in
  the gaps between thin slices; within the slice plane the residual is interpolated linearly.
  Where slabs tile the stack (thickness = spacing), every point takes its slab's residual and, on
  a grid whose slices subdivide the slabs, every slab's mean becomes the measured voxel exactly;
* **point** profiles (the field at the voxel centre): the residual is interpolated linearly across
  slices too, so the field passes through the measured samples and the correction fades between.

Where several stacks share a contrast, their corrections are averaged where they overlap.
Residuals are computed on each stack's foreground only (0 elsewhere), in network units, by
:func:`stack_residuals`.

The correction never takes a point beyond its contrast's measured range (the lowest and highest
value of that contrast's foreground voxels) unless the uncorrected field is already there: a
residual spread over a slice's support can overshoot next to a sharp edge, most where the
profile is wider than the truth (docs/design.md, "Data consistency").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from inrsr.acquisition.forward import resimulate
from inrsr.acquisition.profiles import half_support_voxels
from inrsr.config import FitConfig
from inrsr.geometry import normalised_to_voxel_matrix, sample_volume, voxel_to_sampler
from inrsr.io.stack import Stack
from inrsr.samples.training_set import Subject

if TYPE_CHECKING:
    from inrsr.field.network import Field

__all__ = ["StackResiduals", "stack_residuals"]


class StackResiduals(nn.Module):
    """Per-stack residual volumes and how to read them at normalised points.

    Buffers (``k`` = stack index): ``residual_k`` (X, Y, Z) float32 on the stack's voxel grid, in
    network units; ``to_voxel_k`` (3, 4) the map from normalised coordinates to its continuous
    voxel indices (see :func:`inrsr.geometry.normalised_to_voxel_matrix`); ``meta`` (K, 3) float32
    rows of (contrast index, slice axis, half support in slice spacings, see
    :func:`inrsr.acquisition.profiles.half_support_voxels`); ``bounds`` (C, 2) float32, each
    contrast's measured range in network units (lowest, highest), or ``None`` (models saved
    before the bound existed: no bound).
    """

    def __init__(self, residuals: list[torch.Tensor], to_voxel: list[torch.Tensor], meta: torch.Tensor,
                 n_contrasts: int, bounds: torch.Tensor | None = None):
        super().__init__()
        if not len(residuals) == len(to_voxel) == meta.shape[0]:
            raise ValueError("one residual volume, map and meta row per stack")
        if bounds is not None and tuple(bounds.shape) != (n_contrasts, 2):
            raise ValueError(f"bounds must be ({n_contrasts}, 2), got {tuple(bounds.shape)}")
        self.n_contrasts = n_contrasts
        for k, (r, m) in enumerate(zip(residuals, to_voxel)):
            self.register_buffer(f"residual_{k}", r.float().contiguous())
            self.register_buffer(f"to_voxel_{k}", m.float().contiguous())
        self.register_buffer("meta", meta.float())
        self.register_buffer("bounds", None if bounds is None else bounds.float().contiguous())

    @classmethod
    def empty_like_state(cls, state: dict[str, torch.Tensor], prefix: str, n_contrasts: int) -> "StackResiduals":
        """A placeholder whose buffers have the shapes found in ``state`` (for loading a checkpoint)."""
        meta = state[prefix + "meta"]
        n = meta.shape[0]
        return cls(
            [torch.empty_like(state[f"{prefix}residual_{k}"]) for k in range(n)],
            [torch.empty_like(state[f"{prefix}to_voxel_{k}"]) for k in range(n)],
            torch.empty_like(meta), n_contrasts,
            torch.empty_like(state[prefix + "bounds"]) if prefix + "bounds" in state else None,
        )

    def corrected(
        self, uncorrected: torch.Tensor, x: torch.Tensor, contrast_id: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The field ``uncorrected`` (every contrast ``(N, C)``, or each point's own ``(N,)`` with
        ``contrast_id``) at normalised points ``x`` (N, 3) plus its back-projected residual,
        kept within the contrast's measured range or, where the uncorrected field lies beyond it,
        between the range and the uncorrected value."""
        values = self(x)
        if contrast_id is not None:
            values = values.gather(1, contrast_id[:, None])[:, 0]
        plain = uncorrected.float()
        if self.bounds is None:
            return plain + values
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        if contrast_id is not None:
            lo, hi = lo[contrast_id], hi[contrast_id]
        return torch.minimum(torch.maximum(plain + values, torch.minimum(lo, plain)), torch.maximum(hi, plain))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` normalised points → ``(N, C)``: each contrast's back-projected residual,
        averaged over the stacks of that contrast whose field of view holds the point (0 where none).

        A point belongs to a stack's field of view when it lies within half a voxel of its outer
        voxel centres (there it reads the nearest edge value) and, for box and gaussian profiles,
        within a slice's support.
        """
        x = x.float()
        total = x.new_zeros(x.shape[0], self.n_contrasts)
        count = x.new_zeros(x.shape[0], self.n_contrasts)
        for k, (contrast, axis, half) in enumerate(self.meta.tolist()):
            contrast, axis = int(contrast), int(axis)
            vol, m = getattr(self, f"residual_{k}"), getattr(self, f"to_voxel_{k}")
            u = x @ m[:, :3].T + m[:, 3]
            size = torch.tensor(vol.shape, dtype=u.dtype, device=u.device)
            inside = ((u >= -0.5) & (u <= size - 0.5)).all(dim=1)
            if half >= 0:  # the nearest slice, where its profile reaches
                nearest = torch.floor(u[:, axis] + 0.5)
                inside &= (u[:, axis] - nearest).abs() <= half + 1e-4
                u[:, axis] = nearest
            u = torch.minimum(torch.clamp(u, min=0.0), size - 1)
            val = sample_volume(vol[None], voxel_to_sampler(u, size))[0]
            total[:, contrast] += torch.where(inside, val, torch.zeros_like(val))
            count[:, contrast] += inside.to(val.dtype)
        return total / count.clamp(min=1.0)


@torch.no_grad()
def stack_residuals(
    model: "Field", stacks: list[Stack], subject: Subject, config: FitConfig,
    exclude: list[np.ndarray | None] | None = None, device: str | None = None,
) -> StackResiduals:
    """Every stack's residual (measured − predicted through its slice profile, network units) on
    its foreground voxels, minus ``exclude`` (per stack, boolean voxel masks or ``None``); 0
    elsewhere. ``stacks`` must be placed where the fit put them (registration included) and in
    the order of ``subject.foregrounds``. The residuals are taken from ``model`` without any
    correction it already carries; each contrast's bounds are the range of its stacks'
    foreground voxels, ``exclude`` left out."""
    residuals, maps, meta = [], [], []
    bounds = np.tile([np.inf, -np.inf], (len(subject.contrasts), 1))
    with model.without_correction():
        for k, (s, (mask, _)) in enumerate(zip(stacks, subject.foregrounds)):
            where = mask if exclude is None or exclude[k] is None else mask & ~exclude[k]
            pred = resimulate(model, s, subject, config, where=where, device=device)
            scale = subject.scales[s.contrast]
            r = np.zeros(s.shape, dtype=np.float32)
            measured = scale.forward(s.data[where])
            r[where] = measured - scale.forward(pred[where])
            c = subject.contrasts.index(s.contrast)
            if measured.size:
                bounds[c] = min(bounds[c, 0], float(measured.min())), max(bounds[c, 1], float(measured.max()))
            residuals.append(torch.from_numpy(r))
            maps.append(torch.from_numpy(normalised_to_voxel_matrix(s.affine, subject.normaliser).astype(np.float32)))
            half = half_support_voxels(config.slice_profile, s.slice_thickness_mm, s.slice_spacing_mm)
            meta.append([c, s.slice_axis, half])
    bounds[bounds[:, 0] > bounds[:, 1]] = [-np.inf, np.inf]  # no measured voxel: no residual, nothing to bound
    module = StackResiduals(residuals, maps, torch.tensor(meta, dtype=torch.float32), len(subject.contrasts),
                            torch.from_numpy(bounds.astype(np.float32)))
    return module.to(next(model.parameters()).device)
