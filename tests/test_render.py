"""Rendering a field on a voxel grid: the foreground rule (nearest voxel of any stack's mask), the
background level outside it, chunking, and the output's shape and units."""

from __future__ import annotations

import numpy as np
import torch

from inrsr.config import preset
from inrsr.field.network import build_field
from nibabel.affines import from_matvec

from inrsr.geometry import Grid, Normaliser, apply_affine, grid_points_world, rotation_from_vector
from inrsr.render import foreground_on_grid, render_grid
from inrsr.samples.intensity import IntensityScale

# a 4 × 3 × 2 stack: 2 × 2 mm pixels, 5 mm slices, first voxel centre at (10, 0, -5) mm
STACK = np.diag([2.0, 2.0, 5.0, 1.0])
STACK[:3, 3] = [10.0, 0.0, -5.0]


def stack_mask(*voxels: tuple[int, int, int]) -> np.ndarray:
    m = np.zeros((4, 3, 2), bool)
    for v in voxels:
        m[v] = True
    return m


def nearest_mask_value(world: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The rule spelled out point by point: the mask voxel nearest to each world point, False
    outside the mask's field of view."""
    ijk = np.rint(apply_affine(np.linalg.inv(affine), world)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(mask.shape)), axis=1)
    out = np.zeros(len(ijk), dtype=bool)
    out[ok] = mask[ijk[ok, 0], ijk[ok, 1], ijk[ok, 2]]
    return out


def test_foreground_on_grid_takes_the_nearest_voxel_of_any_mask():
    mask = stack_mask((1, 1, 0), (3, 1, 0))
    # a grid on the stack's voxels, one more on each side: outside the field of view is background
    # (index -1 must not wrap round to the last voxel)
    around = Grid((6, 5, 4), STACK @ from_matvec(np.eye(3), [-1.0, -1.0, -1.0]))
    want = np.zeros(around.shape, dtype=bool)
    want[1:5, 1:4, 1:3] = mask
    np.testing.assert_array_equal(foreground_on_grid(around, [(mask, STACK)]), want)
    # centres 0.45 voxel from a voxel's take it, 0.55 from it take the next one
    for shift, moved in ((0.45, 0), (0.55, 1)):
        grid = Grid((6, 5, 4), STACK @ from_matvec(np.eye(3), [-1.0 + shift, -1.0 + 0.4, -1.0 + 0.45]))
        np.testing.assert_array_equal(foreground_on_grid(grid, [(mask, STACK)]), np.roll(want, -moved, axis=0))
    # a second stack, shifted by one voxel along x: its voxel (1, 1, 0) is the first's (2, 1, 0)
    shifted = STACK.copy()
    shifted[0, 3] += 2.0
    both = want.copy()
    both[3, 2, 1] = True
    np.testing.assert_array_equal(foreground_on_grid(around, [(mask, STACK), (stack_mask((1, 1, 0)), shifted)]), both)
    assert not foreground_on_grid(around, []).any()


def test_foreground_on_grid_follows_the_rule_on_permuted_and_oblique_grids():
    """Grids whose axes run along the stack's in another order or direction are read one index
    array per axis, oblique ones point by point; both give the nearest-voxel rule."""
    rng = np.random.default_rng(3)
    mask = rng.random((9, 7, 5)) < 0.5
    flip = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    tilt = rotation_from_vector(np.radians([10.0, -7.0, 4.0]))
    grids = [Grid((12, 20, 22), from_matvec(flip * 1.3, [25.0, -3.1, -9.7])),
             Grid((14, 12, 10), from_matvec(tilt * 1.7, [7.0, -4.0, -12.0]))]
    for grid in grids:
        got = foreground_on_grid(grid, [(mask, STACK)], chunk=500)
        want = nearest_mask_value(grid_points_world(grid, 0, grid.n_vox), mask, STACK).reshape(grid.shape)
        assert 0 < want.sum() < grid.n_vox
        np.testing.assert_array_equal(got, want)


def test_render_grid_writes_the_background_level_outside_the_foreground():
    cfg = preset("fast", encoding="fourier", n_frequencies=8, width=16, depth=1, head_width=8, base="none")
    field = build_field(["t1", "t2"], cfg, mm_per_unit=20.0)
    normaliser = Normaliser(np.array([14.0, 2.0, -2.5]), 20.0)
    scales = {"t1": IntensityScale(10.0, 110.0), "t2": IntensityScale(-5.0, 45.0)}
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    affine[:3, 3] = [9.0, -1.0, -5.0]
    grid = Grid((5, 4, 3), affine)  # overlaps the stack's field of view in part
    mask = stack_mask((1, 1, 0), (2, 1, 0), (2, 1, 1))
    out = render_grid(field, grid, normaliser, scales, chunk=7, foreground=[(mask, STACK)])
    world = grid_points_world(grid, 0, grid.n_vox)
    inside = foreground_on_grid(grid, [(mask, STACK)])
    assert 0 < inside.sum() < grid.n_vox
    with torch.no_grad():
        net = field(torch.from_numpy(normaliser(world).astype(np.float32))).numpy()
    assert sorted(out) == ["t1", "t2"]
    for c, name in enumerate(["t1", "t2"]):
        img = out[name]
        assert img.shape == grid.shape and img.dtype == np.float32
        background = scales[name].inverse(0.0)
        assert background == scales[name].lo
        assert (img[~inside] == background).all()
        want = scales[name].inverse(net[:, c]).reshape(grid.shape)
        np.testing.assert_allclose(img[inside], want[inside], rtol=1e-5, atol=1e-4)
        assert (np.abs(img[inside] - background) > 1e-3).all()
    # without a foreground, every voxel is the field; chunking does not change the values
    everywhere = render_grid(field, grid, normaliser, scales, chunk=grid.n_vox)
    for c, name in enumerate(["t1", "t2"]):
        np.testing.assert_allclose(everywhere[name], scales[name].inverse(net[:, c]).reshape(grid.shape),
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(everywhere[name][inside], out[name][inside], rtol=1e-6)
