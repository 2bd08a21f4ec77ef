"""Spline interpolation baselines: cubic interpolation between the kept slices of a stack."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.affines import from_matvec
from nibabel.processing import resample_from_to

from inrsr.baselines.interpolate import cubic_between_slices, interpolate_to_grid
from inrsr.geometry import Grid, rotation_from_vector
from inrsr.evaluate.consistency import held_out_slices


def test_cubic_between_slices_is_exact_for_a_cubic_profile():
    z = np.arange(12, dtype=np.float64)
    data = np.broadcast_to(0.01 * z**3 - 0.2 * z**2 + z, (3, 4, 12)).astype(np.float32)
    held = held_out_slices(12, 3)
    pred = cubic_between_slices(data, 2, held)
    np.testing.assert_allclose(pred, data, atol=1e-4)
    noisy = data.copy()
    noisy[:, :, held] = 0.0  # held-out values are never used
    np.testing.assert_allclose(cubic_between_slices(noisy, 2, held), data, atol=1e-4)


def test_interpolation_is_the_same_with_any_thread_count(shared_data):
    """The grid is split between threads along its first axis; every block reads the whole
    stack, so an oblique stack resampled onto a 1 mm grid comes out the same to float rounding
    (each block's voxel-to-stack map is composed on its own)."""
    img = nib.load(str(shared_data / "brats_gli_00001" / "t2w.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)[40:200, 40:200, 20:140:4]
    tilt = np.eye(4)
    tilt[:3, :3] = rotation_from_vector(np.radians([8.0, -5.0, 3.0]))  # oblique to the grid
    stack_affine = tilt @ img.affine @ from_matvec(np.eye(3), [40, 40, 20]) @ np.diag([1.0, 1.0, 4.0, 1.0])
    grid = Grid((150, 150, 120), img.affine @ from_matvec(np.eye(3), [45, 45, 20]))
    one = interpolate_to_grid(data, stack_affine, grid, threads=1)
    assert np.isfinite(one).all() and one.std() > 0
    for n in (2, 3):
        np.testing.assert_allclose(interpolate_to_grid(data, stack_affine, grid, threads=n), one, rtol=1e-5, atol=1e-3)
    nearest = [interpolate_to_grid(data, stack_affine, grid, order=0, threads=n) for n in (1, 2)]
    assert np.mean(nearest[0] != nearest[1]) < 1e-5  # only exact ties between two voxels may flip


def test_axis_aligned_cubic_matches_scipy_with_permuted_flipped_axes(shared_data):
    """A grid whose axes run along the stack's (here permuted and flipped, with thick slices along
    the second stack axis) is resampled one axis at a time; the result is scipy's cubic spline,
    edges included: the grid reaches beyond the stack on every side, by 2 to 18 stack voxels
    (beyond scipy's 12 voxels of padding, too)."""
    img = nib.load(str(shared_data / "brats_gli_00001" / "t2w.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)[60:180, 30:150:4, 40:120].copy()  # 4 mm along the second axis
    swap = np.array([[0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    stack_affine = swap @ from_matvec(np.diag([1.0, 4.0, 1.0]), [3.0, -2.0, 5.0])
    grid = Grid((110, 140, 150), from_matvec(np.diag([-1.0, 1.0, 1.0]), [10.0, -15.0, -12.0]))
    fast = interpolate_to_grid(data, stack_affine, grid)
    generic = np.asarray(resample_from_to(nib.Nifti1Image(data, stack_affine), (grid.shape, grid.affine),
                                          order=3, mode="nearest").dataobj, dtype=np.float32)
    assert fast.shape == grid.shape and generic.std() > 0
    np.testing.assert_allclose(fast, generic, rtol=0, atol=1e-5 * float(np.abs(generic).max()))
