"""Display planes: world-aligned whatever the volume's orientation, left of the subject on the
left, exact values at voxel centres, NaN outside the field of view."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.report.planes import display_planes, foreground_centre_mm, on_plane, plane_world_points


def blob_volume(flip_x: bool):
    """A 41³ volume of 1 mm voxels centred on the world origin with one bright voxel at world
    (−15, 5, 0) mm: the subject's left (RAS x < 0). ``flip_x`` stores x the other way (LAS)."""
    affine = np.diag([-1.0 if flip_x else 1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [20.0 if flip_x else -20.0, -20.0, -20.0]
    data = np.zeros((41, 41, 41), dtype=np.float32)
    i = int(round((-15.0 - affine[0, 3]) / affine[0, 0]))
    data[i, 25, 20] = 1.0
    return data, affine


@pytest.mark.parametrize("flip_x", [False, True])
def test_left_is_left_and_anterior_is_up(flip_x):
    data, affine = blob_volume(flip_x)
    planes = {p.name: p for p in display_planes(data.shape, affine, np.array([-15.0, 5.0, 0.0]))}
    axial = on_plane(data, affine, planes["axial"], 0)  # (across = x, up = y)
    i, j = np.unravel_index(np.argmax(axial), axial.shape)
    world = plane_world_points(planes["axial"])[i, j]
    assert world == pytest.approx([-15.0, 5.0, 0.0], abs=1e-6)
    assert i < axial.shape[0] // 2  # left half of the picture
    assert j > axial.shape[1] // 2  # anterior: upper half
    sagittal = on_plane(data, affine, planes["sagittal"], 0)  # (across = y, up = z)
    assert np.unravel_index(np.argmax(sagittal), sagittal.shape) == (25, 20)


def test_values_at_voxel_centres_and_nan_outside():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(12, 10, 8)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    planes = display_planes(data.shape, affine, np.array([6.0, 4.0, 8.0]))
    coronal = planes[1]
    assert coronal.name == "coronal" and coronal.spacing_mm == pytest.approx(2.0)
    for order in (0, 1, 3):
        img = on_plane(data, affine, coronal, order)
        assert img.shape == (12, 8)
        assert img == pytest.approx(data[:, 2, :], abs=1e-4)  # y = 4 mm is voxel 2
    outside = display_planes(data.shape, affine, np.array([6.0, 50.0, 8.0]))[1]
    assert np.isnan(on_plane(data, affine, outside, 1)).all()


def test_default_point_is_the_centre_of_the_foregrounds():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[2:5, 2:5, 2:5] = True
    affine = np.eye(4)
    affine[:3, 3] = [100.0, 0.0, 0.0]
    assert foreground_centre_mm([(mask, affine)]) == pytest.approx([103.0, 3.0, 3.0])
    assert foreground_centre_mm([(np.zeros_like(mask), affine)]) == pytest.approx([104.5, 4.5, 4.5])
