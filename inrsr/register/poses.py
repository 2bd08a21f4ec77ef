"""Learnable rigid motion of each input stack, for joint registration while fitting the field.

A stack whose header puts voxel ``p`` at world position ``x`` (normalised units) is modelled as
having imaged the field at ``T_s(x) = R_s (x - c_s) + c_s + t_s``: a rotation ``R_s`` about the
centre ``c_s`` of the stack's field of view, then a shift ``t_s``. One stack (the reference) is
held fixed, so the field lives in that stack's world frame. Parameters are stored in degrees and
mm so that one Adam step size means the same motion on every subject.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from inrsr.geometry import Normaliser, rigid_matrix, rigid_points, rotation_matrices_deg

__all__ = ["StackPoses"]



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
