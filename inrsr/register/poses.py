"""Learnable rigid motion of each input stack, for joint registration while fitting the field,
and the MI pull that aligns stacks whose contrast differs from the reference stack's.

A stack whose header puts voxel ``p`` at world position ``x`` (normalised units) is modelled as
having imaged the field at ``T_s(x) = R_s (x - c_s) + c_s + t_s``: a rotation ``R_s`` about the
centre ``c_s`` of the stack's field of view, then a shift ``t_s``. One stack (the reference) is
held fixed, so the field lives in that stack's world frame. Parameters are stored in degrees and
mm so that one Adam step size means the same motion on every subject.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from inrsr.acquisition.forward import profile_forward
from inrsr.geometry import Normaliser, rigid_matrix, rigid_points, rotation_matrices_deg
from inrsr.mi import soft_mutual_information

if TYPE_CHECKING:
    from inrsr.field.network import Field
    from inrsr.samples.training_set import TrainingSet

__all__ = ["StackPoses", "registration_roles", "alignment_gradient"]


class StackPoses(nn.Module):
    """One rigid transform per stack acting on normalised coordinates; stack ``fixed`` is the identity.

    Parameters
    ----------
    centres : ``(S, 3)`` normalised centres of the stacks' fields of view (rotation centres).
    fixed : index of the reference stack, which never moves.
    mm_per_unit : world mm per normalised unit (converts the shifts, stored in mm).
    """

    def __init__(self, centres: torch.Tensor, fixed: int, mm_per_unit: float):
        super().__init__()
        n = centres.shape[0]
        if not 0 <= fixed < n:
            raise ValueError(f"reference stack {fixed} out of range for {n} stacks")
        self.rotation_deg = nn.Parameter(torch.zeros(n, 3))
        self.shift_mm = nn.Parameter(torch.zeros(n, 3))
        free = torch.ones(n, 1)
        free[fixed] = 0.0
        self.register_buffer("free", free)
        self.register_buffer("centres", centres.float().clone())
        self.mm_per_unit = float(mm_per_unit)

    def rotations(self) -> torch.Tensor:
        """``(S, 3, 3)`` rotation matrices (the reference's is the identity)."""
        return rotation_matrices_deg(self.rotation_deg * self.free)

    def shifts(self) -> torch.Tensor:
        """``(S, 3)`` shifts in normalised units (zero for the reference)."""
        return self.shift_mm * self.free / self.mm_per_unit

    def forward(self, x: torch.Tensor, offsets: torch.Tensor, stack_id: torch.Tensor) -> torch.Tensor:
        """Where each voxel's profile points really are: ``x`` ``(B, 3)`` voxel centres,
        ``offsets`` ``(B, K, 3)`` profile offsets along the slice normal (rotated with the stack),
        ``stack_id`` ``(B,)`` → ``(B, K, 3)`` normalised points."""
        rot, c = self.rotations()[stack_id], self.centres[stack_id]
        moved = rigid_points(x.float(), rot, self.shifts()[stack_id], c)
        return moved[:, None, :] + torch.einsum("bij,bkj->bki", rot, offsets.float())

    @torch.no_grad()
    def world_matrices(self, normaliser: Normaliser) -> list[np.ndarray]:
        """Per stack, the 4×4 world (mm) map from where its header places a point to where the
        fit found it: apply it to the stack's affine (``M @ affine``) to register the stack."""
        rot = self.rotations().cpu().double().numpy()
        shift = (self.shift_mm * self.free).cpu().double().numpy()
        centres = normaliser.to_world(self.centres.cpu().double().numpy())
        return [rigid_matrix(r, t, c) for r, t, c in zip(rot, shift, centres)]


def registration_roles(train: "TrainingSet", fixed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Which stacks MI pulls and which their own data cannot move, when registering.

    Stacks that share a contrast with another stack are aligned by their data. Every stack whose
    contrast differs from the reference stack's is also pulled by the MI between its voxels and
    the reference contrast predicted through its forward model; for a stack with a contrast of
    its own that is the only pull (its own head would follow it anywhere). Returns ``mi_driven``
    (S,), ``data_blind`` (S,) and the reference contrast's index."""
    n_stacks = int(train.profile_weights.shape[0])
    stack_contrast = [int(train.contrast_id[train.stack_id == k][0]) for k in range(n_stacks)]
    ref_contrast = stack_contrast[fixed]
    mi_driven = torch.tensor([c != ref_contrast for c in stack_contrast], device=device)
    data_blind = torch.tensor([stack_contrast.count(c) == 1 for c in stack_contrast], device=device)
    return mi_driven, data_blind, ref_contrast


def alignment_gradient(
    model: "Field",
    poses: StackPoses,
    x: torch.Tensor,
    offsets: torch.Tensor,
    stack_id: torch.Tensor,
    select: torch.Tensor,
    values: torch.Tensor,
    ref_contrast: int,
    weights: torch.Tensor,
    autocast: contextlib.AbstractContextManager,
    max_points: int = 4096,
) -> None:
    """Add to the poses' gradients that of ``-MI`` between the selected voxels' values and the
    reference contrast predicted at their moved profile points (voxel centres ``x``, ``offsets``,
    as in :meth:`StackPoses.forward`): a similarity that needs no shared intensity scale. The
    field's own parameters get no gradient from it."""
    sel = select.nonzero(as_tuple=True)[0][:max_points]
    if sel.numel() < 64:
        return
    with autocast:
        pts = poses(x[sel], offsets[sel], stack_id[sel])
        ref = profile_forward(model, pts, torch.full_like(sel, ref_contrast), weights[sel])
    mi = soft_mutual_information(values[sel].float().clamp(0, 1), ref.float().clamp(0, 1), torch.ones_like(values[sel]))
    params = [poses.rotation_deg, poses.shift_mm]
    grads = torch.autograd.grad(-mi, params)
    for p, g in zip(params, grads):
        p.grad = g if p.grad is None else p.grad + g
