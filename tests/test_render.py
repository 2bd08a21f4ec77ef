"""Rendering a field on a voxel grid: the foreground rule (nearest voxel of any stack's mask), the
background level outside it, chunking, and the output's shape and units."""

from __future__ import annotations

import numpy as np
import torch

from inrsr.config import preset
from inrsr.field.network import build_field
from inrsr.geometry import Grid, Normaliser, apply_affine, grid_points_world
from inrsr.render import inside_foreground, render_grid
from inrsr.samples.intensity import IntensityScale

# a 4 × 3 × 2 stack: 2 × 2 mm pixels, 5 mm slices, first voxel centre at (10, 0, -5) mm
STACK = np.diag([2.0, 2.0, 5.0, 1.0])
STACK[:3, 3] = [10.0, 0.0, -5.0]


def stack_mask(*voxels: tuple[int, int, int]) -> np.ndarray:
    m = np.zeros((4, 3, 2), bool)
    for v in voxels:
        m[v] = True
    return m


def test_inside_foreground_takes_the_nearest_voxel_of_any_mask():
    mask = stack_mask((1, 1, 0), (3, 1, 0))
    points = np.array([
        apply_affine(STACK, [1, 1, 0]),  # a foreground voxel centre
        apply_affine(STACK, [1.45, 1.4, 0.45]),  # nearest voxel (1, 1, 0)
        apply_affine(STACK, [2, 1, 0]),  # a background voxel
        apply_affine(STACK, [1.55, 1, 0]),  # nearest voxel (2, 1, 0)
        apply_affine(STACK, [-1, 1, 0]),  # outside the field of view (index -1 must not wrap to 3)
        apply_affine(STACK, [4, 1, 0]),  # outside, past the last voxel
        apply_affine(STACK, [1, 1, 2]),  # outside along the slice axis
    ])
    np.testing.assert_array_equal(inside_foreground(points, [(mask, STACK)]),
                                  [True, True, False, False, False, False, False])
    # a second stack, shifted by one voxel along x: its voxel (1, 1, 0) is the first's (2, 1, 0)
    shifted = STACK.copy()
    shifted[0, 3] += 2.0
    np.testing.assert_array_equal(inside_foreground(points, [(mask, STACK), (stack_mask((1, 1, 0)), shifted)]),
                                  [True, True, True, True, False, False, False])
    assert not inside_foreground(points, []).any()


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
    inside = inside_foreground(world, [(mask, STACK)]).reshape(grid.shape)
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
