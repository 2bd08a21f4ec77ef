"""World coordinates, boxes, grids and rescaled affines for flipped, permuted and oblique affines; rotations
and rigid maps."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine as nib_apply, rescale_affine

from inrsr.geometry import (
    Grid,
    Normaliser,
    apply_affine,
    flat_voxel_points,
    fov_corners_world,
    grid_points_world,
    grid_rows,
    isotropic_grid,
    overlap_fraction,
    rescaled_affine,
    rigid_error,
    rigid_matrix,
    rotation_from_vector,
    slice_axis,
    union_box,
    voxel_centres_world,
    voxel_sizes_mm,
    world_axis_of,
    world_to_voxel_index,
)


def rotation(ax: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[ax]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def make_affine(zooms, perm=(0, 1, 2), flips=(1, 1, 1), rot=np.eye(3), origin=(10.0, -20.0, 5.0)) -> np.ndarray:
    a = np.zeros((4, 4))
    cols = np.eye(3)[:, list(perm)] * np.array(flips) * np.array(zooms)
    a[:3, :3] = rot @ cols
    a[:3, 3] = origin
    a[3, 3] = 1
    return a


AFFINES = {
    "ras": make_affine((1.0, 1.0, 4.0)),
    "flipped": make_affine((0.8, 0.8, 4.0), flips=(-1, 1, -1)),
    "permuted": make_affine((0.9, 3.0, 0.9), perm=(2, 0, 1)),
    "oblique": make_affine((1.0, 1.2, 5.0), flips=(-1, 1, 1), rot=rotation("x", 17) @ rotation("z", -8)),
}


@pytest.mark.parametrize("name", AFFINES)
def test_voxel_centres_match_affine(name):
    aff = AFFINES[name]
    shape = (5, 6, 7)
    world = voxel_centres_world(shape, aff)
    assert world.shape == (5, 6, 7, 3)
    for ijk in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
        np.testing.assert_allclose(world[ijk], nib_apply(aff, ijk), atol=1e-9)
    # the voxel index of a centre maps back exactly
    np.testing.assert_array_equal(world_to_voxel_index(aff, world[2, 3, 1]), [2, 3, 1])
    flat = np.ravel_multi_index(([2, 4, 0], [3, 5, 0], [1, 6, 0]), shape)  # any order of flat indices
    np.testing.assert_allclose(flat_voxel_points(aff, shape, flat), world[[2, 4, 0], [3, 5, 0], [1, 6, 0]], atol=1e-9)


@pytest.mark.parametrize("name,expected", [("ras", 2), ("flipped", 2), ("permuted", 1), ("oblique", 2)])
def test_slice_axis_and_spacing(name, expected):
    aff = AFFINES[name]
    assert slice_axis(aff) == expected
    np.testing.assert_allclose(voxel_sizes_mm(aff), nib.affines.voxel_sizes(aff))


def test_world_axis_of_permuted():
    aff = AFFINES["permuted"]  # array axis 0 → world z, 1 → world x, 2 → world y
    assert [world_axis_of(aff, w) for w in range(3)] == [1, 2, 0]


@pytest.mark.parametrize("name", AFFINES)
def test_union_box_holds_every_corner_and_grid_covers_it(name):
    a, b = AFFINES[name], AFFINES["oblique"]
    images = [((10, 12, 8), a), ((9, 9, 9), b)]
    box = union_box(images)
    for shape, aff in images:
        u = fov_corners_world(shape, aff) @ box.rotation
        assert np.all(u >= box.lo_mm - 1e-9) and np.all(u <= box.hi_mm + 1e-9)
    grid = isotropic_grid(box, 0.7)
    # grid axes are the first image's axes, isotropic at 0.7 mm
    np.testing.assert_allclose(voxel_sizes_mm(grid.affine), [0.7] * 3)
    np.testing.assert_allclose(grid.affine[:3, :3] / 0.7, box.rotation, atol=1e-12)
    g = fov_corners_world(grid.shape, grid.affine) @ box.rotation
    assert np.all(g.min(axis=0) <= box.lo_mm + 1e-9) and np.all(g.max(axis=0) >= box.hi_mm - 1e-9)
    assert np.all(g.max(axis=0) - g.min(axis=0) < box.extent_mm + 0.7 + 1e-9)


def test_normaliser_maps_box_into_unit_cube():
    box = union_box([((20, 30, 10), AFFINES["oblique"])])
    norm = Normaliser.from_box(box)
    corners = fov_corners_world((20, 30, 10), AFFINES["oblique"])
    x = norm(corners)
    assert np.abs(x).max() == pytest.approx(1.0)
    assert np.all(np.abs(x) <= 1 + 1e-12)
    np.testing.assert_allclose(norm.to_world(x), corners, atol=1e-9)


@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("n", [155, 240, 7])
def test_rescaled_affine_centre_is_nibabels(name, n):
    aff = AFFINES[name]
    shape = [8, 9, 10]
    shape[1] = n
    new, new_shape = rescaled_affine(aff, tuple(shape), 1, 4, keep="centre")
    zooms = voxel_sizes_mm(aff).copy()
    zooms[1] *= 4
    np.testing.assert_allclose(new, rescale_affine(aff, shape, zooms, new_shape), atol=1e-9)
    assert new_shape[1] == int(np.ceil(n / 4))


@pytest.mark.parametrize("name", AFFINES)
def test_rescaled_affine_blocks_centres_on_block_means(name):
    aff = AFFINES[name]
    new, new_shape = rescaled_affine(aff, (6, 7, 11), 2, 4, keep="blocks")
    assert new_shape == (6, 7, 2)
    for i in range(2):
        block = [nib_apply(aff, (3, 2, 4 * i + k)) for k in range(4)]
        np.testing.assert_allclose(nib_apply(new, (3, 2, i)), np.mean(block, axis=0), atol=1e-9)


def test_overlap_fraction():
    a = ((10, 10, 10), make_affine((1, 1, 1), origin=(0, 0, 0)))
    b = ((10, 10, 10), make_affine((1, 1, 1), origin=(5, 0, 0)))
    c = ((10, 10, 10), make_affine((1, 1, 1), origin=(50, 0, 0)))
    assert overlap_fraction(a, b) == pytest.approx(0.5)
    assert overlap_fraction(a, c) == 0.0


def test_rotation_from_vector_is_a_rotation_about_its_axis():
    v = np.radians(30.0) * np.array([0.0, 0.0, 1.0])
    r = rotation_from_vector(v)
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [np.cos(np.pi / 6), np.sin(np.pi / 6), 0.0], atol=1e-12)
    w = np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(rotation_from_vector(w) @ w, w, atol=1e-12)
    np.testing.assert_allclose(rotation_from_vector(w) @ rotation_from_vector(w).T, np.eye(3), atol=1e-12)


def test_rigid_matrix_keeps_its_centre_and_rigid_error_measures_it():
    c = np.array([10.0, -5.0, 3.0])
    m = rigid_matrix(rotation_from_vector(np.radians([2.0, 1.0, -1.0])), [1.0, 2.0, 2.0], c)
    np.testing.assert_allclose(apply_affine(m, c), c + [1.0, 2.0, 2.0], atol=1e-12)
    shift, angle = rigid_error(m, np.eye(4), c[None])
    assert abs(shift - 3.0) < 1e-9 and abs(angle - np.linalg.norm([2.0, 1.0, -1.0])) < 1e-9
    assert rigid_error(m, m, np.zeros((4, 3))) == (0.0, 0.0)


def test_grid_rows_keep_the_voxel_centres_of_the_grid():
    grid = Grid((7, 5, 4), rigid_matrix(rotation_from_vector(np.radians([10.0, -20.0, 5.0])), [3.0, -2.0, 40.0],
                                        np.zeros(3)) @ np.diag([0.9, 1.1, 3.0, 1.0]))
    rows = grid_rows(grid, 2, 5)
    assert rows.shape == (3, 5, 4)
    per_row = grid.n_vox // grid.shape[0]
    np.testing.assert_allclose(grid_points_world(rows, 0, rows.n_vox), grid_points_world(grid, 2 * per_row, 5 * per_row),
                               atol=1e-9)
