"""MI alignment of one stack to another: the differentiable MI and the recovery of a known motion."""

from __future__ import annotations

import numpy as np
import torch

from inrsr.geometry import fov_corners_world, rigid_error, rigid_matrix, rotation_from_vector, voxel_centres_world
from inrsr.masks import estimate_foreground
from inrsr.phantom import head_phantom
from inrsr.register import align_rigid, soft_mutual_information
from inrsr.simulate import simulate_stack


def test_soft_mi_is_high_for_dependent_samples_and_differentiable():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5000, generator=g, dtype=torch.float64)
    ones = torch.ones_like(a)
    same = soft_mutual_information(a, 1.0 - a, ones)
    indep = soft_mutual_information(a, torch.rand(5000, generator=g, dtype=torch.float64), ones)
    assert same > 1.5 and indep < 0.2
    b = a.clone().requires_grad_(True)
    soft_mutual_information(a, b, ones).backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    # a zero weight leaves a pair out
    half = torch.cat([torch.ones(2500), torch.zeros(2500)]).double()
    mixed = torch.cat([a[:2500], torch.rand(2500, generator=g, dtype=torch.float64)])
    torch.testing.assert_close(soft_mutual_information(a, mixed, half),
                               soft_mutual_information(a[:2500], a[:2500], ones[:2500]))


def test_align_rigid_recovers_a_known_motion_between_contrasts():
    vols, aff, _ = head_phantom((64, 72, 64), seed=2)
    t1, a1 = simulate_stack(vols["t1"], aff, 2, 2, "slab")
    t2, a2 = simulate_stack(vols["t2"], aff, 1, 2, "slab")
    centre = fov_corners_world(t2.shape, a2).mean(axis=0)
    motion = rigid_matrix(rotation_from_vector(np.radians([2.0, -1.0, 1.5])), [1.5, -2.0, 1.0], centre)
    result = align_rigid(t1, a1, estimate_foreground(t1), t2, motion @ a2, levels_mm=(6.0, 3.0), iterations=100,
                         points=20000)
    points = voxel_centres_world(t2.shape, motion @ a2)[estimate_foreground(t2, dilate_vox=0)]
    before = rigid_error(np.eye(4), np.linalg.inv(motion), points)
    after = rigid_error(result.matrix, np.linalg.inv(motion), points)
    assert before[0] > 2.0
    assert after[0] < 0.5 and after[1] < 0.5, after
