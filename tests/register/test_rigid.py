"""MI alignment of one stack to another: the recovery of a known motion between contrasts."""

from __future__ import annotations

import numpy as np

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.geometry import fov_corners_world, rigid_error, rigid_matrix, rotation_from_vector, voxel_centres_world
from inrsr.register.rigid import align_rigid
from inrsr.samples.foreground import estimate_foreground


def test_align_rigid_recovers_a_known_motion_between_contrasts():
    vols, aff, _ = head_phantom((64, 72, 64), seed=2)
    t1, a1 = simulate_stack(vols["t1"], aff, 2, 2, "box")
    t2, a2 = simulate_stack(vols["t2"], aff, 1, 2, "box")
    centre = fov_corners_world(t2.shape, a2).mean(axis=0)
    motion = rigid_matrix(rotation_from_vector(np.radians([2.0, -1.0, 1.5])), [1.5, -2.0, 1.0], centre)
    result = align_rigid(t1, a1, estimate_foreground(t1), t2, motion @ a2, levels_mm=(6.0, 3.0), iterations=100,
                         points=20000)
    points = voxel_centres_world(t2.shape, motion @ a2)[estimate_foreground(t2, dilate_vox=0)]
    before = rigid_error(np.eye(4), np.linalg.inv(motion), points)
    after = rigid_error(result.matrix, np.linalg.inv(motion), points)
    assert before[0] > 2.0
    assert after[0] < 0.5 and after[1] < 0.5, after
