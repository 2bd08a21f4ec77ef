"""Distance to the nearest measured point: exact values on a stack with gaps, beyond its last
slice and outside its in-plane field of view, in any orientation, and several stacks together."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.geometry import apply_affine, rotation_from_vector
from inrsr.report.coverage import MeasuredBox, distance_to_measured_mm, support_summary

SHAPE = (10, 10, 5)  # 1 × 1 mm in-plane, slices 4 mm apart along array axis 2 (z = 0, 4, …, 16 mm)
AFFINE = np.diag([1.0, 1.0, 4.0, 1.0])


def distances(points_vox_mm, thickness_mm, affine=AFFINE):
    box = MeasuredBox(SHAPE, affine, 2, thickness_mm)
    return distance_to_measured_mm(np.asarray(points_vox_mm, dtype=np.float64), [box])


def test_thin_slices_leave_gaps_and_nothing_is_measured_beyond_the_stack():
    # (x, y, z) world mm with the identity-like affine: x, y = voxel index; z = 4 × slice index
    d = distances([[2, 3, 8], [2, 3, 8.4], [2, 3, 10], [2, 3, 20], [12, 3, 10], [2.3, 3.4, 8]], thickness_mm=1.0)
    # centre; inside the 1 mm slice; midway between slices (2 mm from either centre, 0.5 mm is
    # measured); 4 mm past the last slice; 3 mm past the last in-plane column and in a gap
    assert d == pytest.approx([0.0, 0.0, 1.5, 3.5, np.hypot(2.5, 1.5), 0.0], abs=1e-6)


def test_contiguous_slices_measure_the_whole_field_of_view():
    d = distances([[2, 3, 10], [0, 9, 0], [-0.5, 9.5, 17.9], [2, 3, 18.5]], thickness_mm=4.0)
    assert d == pytest.approx([0.0, 0.0, 0.0, 0.5], abs=1e-6)


def test_orientation_does_not_change_distances():
    rot = np.eye(4)
    rot[:3, :3] = rotation_from_vector(np.deg2rad([10.0, -25.0, 40.0]))
    rot[:3, 3] = [30.0, -12.0, 5.0]
    points = np.array([[2, 3, 10], [2, 3, 20], [12, 3, 10], [4, 4, 6.1]], dtype=np.float64)
    plain = distances(points, 1.0)
    moved = distances(apply_affine(rot, points), 1.0, rot @ AFFINE)
    assert moved == pytest.approx(plain, abs=1e-6)


def test_a_second_stack_fills_the_first_ones_gaps():
    shifted = AFFINE.copy()
    shifted[2, 3] = 2.0  # slices at z = 2, 6, …: midway between the first stack's slices
    z = np.linspace(0, 16, 161)
    points = np.stack([np.full_like(z, 4), np.full_like(z, 4), z], axis=1)
    one = distance_to_measured_mm(points, [MeasuredBox(SHAPE, AFFINE, 2, 1.0)])
    both = distance_to_measured_mm(points, [MeasuredBox(SHAPE, AFFINE, 2, 1.0), MeasuredBox(SHAPE, shifted, 2, 1.0)])
    assert one.max() == pytest.approx(1.5, abs=1e-6)
    assert both.max() == pytest.approx(0.5, abs=1e-6)


def test_support_summary_counts_points_beyond_each_threshold():
    s = support_summary(np.array([0.0, 0.5, 2.0, 6.0]))
    assert s["points"] == 4
    assert s["beyond_1mm"] == pytest.approx(0.5)
    assert s["beyond_5mm"] == pytest.approx(0.25)
    assert s["median_mm"] == pytest.approx(1.25)
