"""One optimisation step of a fit: a batch of voxels through the forward model, the loss (MSE per
contrast plus the smoothness penalty), the registration pull, and Adam's update."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from inrsr.acquisition.forward import profile_forward, voxel_profile_points
from inrsr.config import FitConfig
from inrsr.fit.smoothness import smoothness_of, smoothness_points
from inrsr.register.poses import alignment_gradient

if TYPE_CHECKING:
    from inrsr.field.network import Field
    from inrsr.fit.optimiser import Adam
    from inrsr.register.poses import StackPoses

__all__ = ["StepData", "voxel_base_sums", "training_forward", "train_step"]


@dataclass
class StepData:
    """What every step of one fit reads, on the fit's device.

    coords (N, 3), values (N,), contrast_id (N,), stack_id (N,): the training voxels (see
    :class:`inrsr.samples.training_set.TrainingSet`); offsets (S, K, 3) and weights (S, K): each
    stack's profile points. With registration, ``mi_driven`` (S,) marks the stacks pulled by MI
    towards ``ref_contrast`` and ``data_blind`` (S,) those whose data must not move them (see
    :func:`inrsr.register.poses.registration_roles`). ``reg_jitter`` and ``reg_step`` (normalised units)
    place the smoothness points. ``width_scale`` (S,), when set, multiplies each stack's profile
    offsets: the learnable slice widths of :mod:`inrsr.fit.thickness` (their absolute value is used).
    ``base_sums`` (N,), when set, holds each voxel's profile-weighted base value (see
    :func:`voxel_base_sums`), which the steps then read instead of sampling the base volume."""

    coords: torch.Tensor
    values: torch.Tensor
    contrast_id: torch.Tensor
    stack_id: torch.Tensor
    offsets: torch.Tensor
    weights: torch.Tensor
    n_contrasts: int
    reg_jitter: float
    reg_step: float
    mi_driven: torch.Tensor | None = None
    data_blind: torch.Tensor | None = None
    ref_contrast: int = 0
    width_scale: torch.Tensor | None = None
    base_sums: torch.Tensor | None = None


# Voxels per chunk when the base's profile sums are computed (K points each).
BASE_SUM_CHUNK = 65536


@torch.no_grad()
def voxel_base_sums(model: "Field", data: StepData) -> torch.Tensor:
    """``(N,)``: each training voxel's profile-weighted mean of its own contrast's base, times the
    base weight, in network units: the part of :func:`training_forward`'s prediction that does
    not change while the field learns, as long as the voxels' profile points stay where they are
    (no registration, no learned slice widths). ``model`` must have a base."""
    sums = torch.empty_like(data.values)
    for start in range(0, sums.shape[0], BASE_SUM_CHUNK):
        idx = slice(start, start + BASE_SUM_CHUNK)
        s, c = data.stack_id[idx], data.contrast_id[idx]
        weights = data.weights[s]
        b, k = weights.shape
        pts = (data.coords[idx][:, None, :] + data.offsets[s]).reshape(b * k, 3)
        own = model.base(pts).gather(1, c.repeat_interleave(k)[:, None]).view(b, k)
        sums[idx] = model.base_weight * (own * weights).sum(dim=1)
    return sums


def training_forward(
    model: "Field", points: torch.Tensor, contrast_id: torch.Tensor, weights: torch.Tensor, extra: torch.Tensor,
    base_sums: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's pass through the field: :func:`~inrsr.acquisition.forward.profile_forward`'s
    predictions ``(B,)`` of voxels with profile ``points`` (B, K, 3), ``contrast_id`` (B,) and
    ``weights`` (B, K), and every contrast at the ``extra`` points ``(M, 3)`` → ``(M, C)``.
    ``base_sums`` (B,): the voxels' :func:`voxel_base_sums`, when the base is not to be sampled
    at ``points`` again (shared-trunk variants).

    The shared-trunk variants take all points through the encoding and the trunk at once (one
    call instead of two costs less on the CPU)."""
    if model.variant == "single":
        return profile_forward(model, points, contrast_id, weights), model(extra)
    b, k = weights.shape
    x = torch.cat([points.reshape(b * k, 3), extra])
    vals = model(x) if base_sums is None else model.network_output(x)
    own = vals[: b * k].gather(1, contrast_id.repeat_interleave(k)[:, None]).view(b, k)
    pred = (own.float() * weights).sum(dim=1)
    if base_sums is None:
        return pred, vals[b * k :]
    return pred + base_sums, model.plus_fixed(vals[b * k :], extra)


def train_step(
    model: "Field", poses: "StackPoses | None", optimiser: "Adam", data: StepData, idx: torch.Tensor,
    config: FitConfig, generator: torch.Generator, autocast: contextlib.AbstractContextManager,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Adam step on the voxels ``idx``: the sum over contrasts of each contrast's MSE on its
    own voxels, plus ``reg_weight`` times the smoothness penalty at points near the first
    ``reg_points`` of them; with ``poses``, the MI pull of :func:`alignment_gradient` is added to
    the poses' gradients. Returns the loss and, per contrast, the summed squared errors and the
    voxel count of the batch."""
    c, s = data.contrast_id[idx], data.stack_id[idx]
    offsets = data.offsets[s]
    if data.width_scale is not None:
        offsets = offsets * data.width_scale.abs()[s][:, None, None]
    pts = voxel_profile_points(data.coords[idx], offsets, s, poses)
    by_mi = data.mi_driven[s] if data.mi_driven is not None else None
    data_pts = pts if data.data_blind is None else torch.where(data.data_blind[s][:, None, None], pts.detach(), pts)
    reg_pts = data.coords.new_empty(0, 3)
    if config.reg_weight > 0:
        reg_pts = smoothness_points(data.coords[idx[: config.reg_points]], data.reg_jitter, data.reg_step, generator)
    # the base sums hold only while the profile points stay where they were computed (the trainer
    # makes none for moving stacks; learned widths, set afterwards, move the points too)
    base_sums = data.base_sums[idx] if data.base_sums is not None and data.width_scale is None else None
    with autocast:
        pred, reg_vals = training_forward(model, data_pts, c, data.weights[s], reg_pts, base_sums)
    sq = (pred.float() - data.values[idx]) ** 2
    per_sum = torch.zeros(data.n_contrasts, device=sq.device).index_add_(0, c, sq)
    per_n = torch.bincount(c, minlength=data.n_contrasts).to(sq.dtype)
    loss = (per_sum / per_n.clamp(min=1)).sum()  # MSE per contrast on its own voxels
    if config.reg_weight > 0:
        loss = loss + config.reg_weight * smoothness_of(reg_vals, config.reg_norm).float()
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    if by_mi is not None and bool(by_mi.any()):
        alignment_gradient(model, poses, data.coords[idx], data.offsets[s], s, by_mi, data.values[idx],
                           data.ref_contrast, data.weights[s], autocast)
    optimiser.step()
    return loss, per_sum, per_n
