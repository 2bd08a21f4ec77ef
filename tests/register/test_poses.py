"""Rigid stack transforms: the learnable poses and their world matrices."""

from __future__ import annotations

import numpy as np
import torch

from inrsr.geometry import Normaliser, apply_affine
from inrsr.register.poses import StackPoses


def test_poses_move_points_as_their_world_matrices_do_and_the_reference_never_moves():
    normaliser = Normaliser(np.array([5.0, -3.0, 10.0]), 90.0)
    centres = torch.tensor([[0.1, 0.0, -0.2], [-0.3, 0.2, 0.1], [0.0, 0.4, 0.0]])
    poses = StackPoses(centres, fixed=1, mm_per_unit=normaliser.scale_mm)
    with torch.no_grad():
        poses.rotation_deg.copy_(torch.tensor([[3.0, -2.0, 1.0], [5.0, 5.0, 5.0], [0.0, 4.0, -1.0]]))
        poses.shift_mm.copy_(torch.tensor([[2.0, 0.5, -1.0], [9.0, 9.0, 9.0], [-3.0, 0.0, 1.0]]))
    world = np.random.default_rng(0).uniform(-60, 60, size=(50, 3))
    x = torch.from_numpy(normaliser(world).astype(np.float32))
    offsets = torch.zeros(50, 1, 3)
    matrices = poses.world_matrices(normaliser)
    np.testing.assert_allclose(matrices[1], np.eye(4), atol=1e-7)
    for k in range(3):
        with torch.no_grad():
            moved = poses(x, offsets, torch.full((50,), k))[:, 0].double().numpy()
        np.testing.assert_allclose(normaliser.to_world(moved), apply_affine(matrices[k], world), atol=2e-3)


def test_profile_offsets_rotate_with_their_stack():
    poses = StackPoses(torch.zeros(2, 3), fixed=0, mm_per_unit=1.0)
    with torch.no_grad():
        poses.rotation_deg[1] = torch.tensor([0.0, 0.0, 90.0])
    offsets = torch.tensor([[[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]])
    pts = poses(torch.zeros(1, 3), offsets, torch.tensor([1]))
    torch.testing.assert_close(pts[0, 1], torch.tensor([0.0, 0.1, 0.0]), atol=1e-6, rtol=0)
