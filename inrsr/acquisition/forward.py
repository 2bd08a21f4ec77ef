"""The forward model: how the field makes each thick voxel of a stack (the profile-weighted mean
of the field along the voxel's slice normal), for training batches and for whole stacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from inrsr.acquisition.profiles import stack_profile_offsets
from inrsr.config import FitConfig
from inrsr.device import autocast, resolve_device, torch_threads
from inrsr.geometry import flat_voxel_points
from inrsr.io.stack import Stack

if TYPE_CHECKING:
    from inrsr.field.network import Field
    from inrsr.register.poses import StackPoses
    from inrsr.samples.training_set import Subject

__all__ = ["profile_forward", "voxel_profile_points", "resimulate"]


def profile_forward(model: "Field", points: torch.Tensor, contrast_id: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Predicted voxel values under the slice-profile forward model.

    ``points`` (B, K, 3) normalised positions of each voxel's K profile points (its centre plus
    offsets along its slice normal, see :func:`voxel_profile_points`), ``contrast_id`` (B,),
    ``weights`` (B, K). Returns (B,): ``Σ_k w_k f(p_k)``.
    """
    b, k = weights.shape
    if k == 1:
        return model.forward_own(points[:, 0], contrast_id)
    vals = model.forward_own(points.reshape(b * k, 3), contrast_id.repeat_interleave(k)).view(b, k)
    return (vals * weights).sum(dim=1)


def voxel_profile_points(
    x: torch.Tensor, offsets: torch.Tensor, stack_id: torch.Tensor, poses: "StackPoses | None"
) -> torch.Tensor:
    """``(B, K, 3)`` profile points of voxels centred at ``x`` (B, 3) with ``offsets`` (B, K, 3),
    moved by their stacks' rigid transforms when ``poses`` is given."""
    if poses is None:
        return x[:, None, :] + offsets
    return poses(x, offsets, stack_id)


@torch.no_grad()
def resimulate(
    model: "Field", stack: Stack, subject: "Subject", config: FitConfig, where: np.ndarray | None = None,
    device: str | None = None,
) -> np.ndarray:
    """The stack as the field predicts it: each voxel is the profile-weighted mean of the field of
    the stack's contrast along the slice normal (the fit's forward model), in input intensity units.

    Only voxels where ``where`` (boolean, stack shape; default all) is set are predicted; the
    others are NaN. ``stack.affine`` must already include any registration.
    """
    dev = resolve_device(config.device if device is None else device)
    model = model.to(dev).eval()
    out = np.full(stack.shape, np.nan, dtype=np.float32)
    flat = np.flatnonzero(where.ravel()) if where is not None else np.arange(out.size)
    offs, wts = stack_profile_offsets([stack], config.slice_profile, config.profile_points, subject.normaliser)
    offsets, weights = torch.from_numpy(offs[0]).to(dev), torch.from_numpy(wts[0]).to(dev)
    contrast = subject.contrasts.index(stack.contrast)
    chunk = max(1, config.render_chunk // weights.shape[0])
    values = np.empty(flat.size, dtype=np.float32)
    with torch_threads(config.threads):
        for start in range(0, flat.size, chunk):
            idx = flat[start : start + chunk]
            world = flat_voxel_points(stack.affine, stack.shape, idx)
            x = torch.from_numpy(subject.normaliser(world).astype(np.float32)).to(dev)
            pts = voxel_profile_points(x, offsets[None], None, None)
            c = torch.full((idx.size,), contrast, dtype=torch.int64, device=dev)
            with autocast(dev, config.precision):
                pred = profile_forward(model, pts, c, weights.expand(idx.size, -1))
            values[start : start + idx.size] = pred.float().cpu().numpy()
    out.ravel()[flat] = subject.scales[stack.contrast].inverse(values)
    return out
