"""Simulated thick stacks: voxel centres land exactly where the values were taken (no half-voxel shift)."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.acquisition.simulate import simulate_stack, view_axis
from inrsr.geometry import apply_affine, voxel_sizes_mm
from tests.test_geometry import AFFINES, make_affine, rotation


def ramp_volume(shape, affine, direction):
    """Intensity = world coordinate (mm) along ``direction``: any shift shows up as a value error."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return (apply_affine(affine, idx) @ direction).astype(np.float32)


@pytest.mark.parametrize("name", ["ras", "flipped", "oblique"])
@pytest.mark.parametrize("profile", ["point", "box", "gaussian"])
@pytest.mark.parametrize("n", [40, 43])
def test_simulated_values_sit_at_the_stack_voxel_centres(name, profile, n):
    hr = make_affine((1.0, 1.0, 1.0), flips=(-1, 1, 1) if name != "ras" else (1, 1, 1),
                     rot=rotation("x", 12) if name == "oblique" else np.eye(3))
    shape = (12, 14, n)
    direction = hr[:3, 2] / np.linalg.norm(hr[:3, 2])  # along the thick axis
    vol = ramp_volume(shape, hr, direction)
    lr, lr_aff = simulate_stack(vol, hr, 2, 4, profile)
    np.testing.assert_allclose(voxel_sizes_mm(lr_aff), [1, 1, 4], atol=1e-9)
    expected = ramp_volume(lr.shape, lr_aff, direction)
    # interior (a cubic spline with zero padding is only exact away from the ends)
    inner = (slice(1, -1), slice(1, -1), slice(2, -2))
    np.testing.assert_allclose(lr[inner], expected[inner], atol=0.01)


def test_slab_is_block_mean_and_point_matches_nibabel_grid_count():
    aff = np.eye(4)
    vol = np.random.default_rng(0).normal(size=(4, 5, 17)).astype(np.float32)
    lr, _ = simulate_stack(vol, aff, 2, 4, "box")
    assert lr.shape == (4, 5, 4)
    np.testing.assert_allclose(lr[..., 1], vol[..., 4:8].mean(axis=-1), atol=1e-6)
    lr_p, _ = simulate_stack(vol, aff, 2, 4, "point")
    assert lr_p.shape == (4, 5, 5)


def test_thin_and_overlapping_boxes_stay_centred_on_their_blocks():
    vol = np.random.default_rng(1).normal(size=(3, 4, 16)).astype(np.float32)
    gap, aff_gap = simulate_stack(vol, np.eye(4), 2, 4, "box", 2)  # 2 mm slices, 4 mm apart
    thick, aff_thick = simulate_stack(vol, np.eye(4), 2, 4, "box")
    np.testing.assert_allclose(aff_gap, aff_thick)
    np.testing.assert_allclose(gap[..., 1], vol[..., 5:7].mean(axis=-1), atol=1e-6)
    over, _ = simulate_stack(vol, np.eye(4), 2, 4, "box", 6)  # 6 mm slices overlap by 2 mm
    np.testing.assert_allclose(over[..., 1], vol[..., 3:9].mean(axis=-1), atol=1e-6)
    np.testing.assert_allclose(over[..., 0], vol[..., 0:5].sum(axis=-1) / 6, atol=1e-6)  # zero beyond the volume
    from inrsr.errors import InputError

    with pytest.raises(InputError, match="whole number of voxels of the parity of the factor 4"):
        simulate_stack(vol, np.eye(4), 2, 4, "box", 3)


def test_views_pick_world_axes_on_real_orientations(shared_data):
    import nibabel as nib

    brats = nib.load(str(shared_data / "brats_gli_00001" / "t1c.nii.gz")).affine  # LPS
    ms = nib.load(str(shared_data / "open_ms" / "patient07" / "t1.nii.gz")).affine  # LAS
    for aff in (brats, ms):
        assert view_axis(aff, "axial") == 2
        assert view_axis(aff, "coronal") == 1
        assert view_axis(aff, "sagittal") == 0
    assert view_axis(AFFINES["permuted"], "axial") == 0


@pytest.mark.parametrize("profile, thickness, option", [("point", 1.2, []), ("box", 4.8, []),
                                                       ("box", 2.4, ["--thickness", "2.4"]),
                                                       ("gaussian", 3.0, ["--thickness", "3"])])
def test_simulate_cli_writes_the_slice_thickness_a_fit_reads_back(tmp_path, profile, thickness, option):
    import json

    import nibabel as nib
    from click.testing import CliRunner

    from inrsr.cli import main
    from inrsr.io.stack import load_stack

    hr = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((10, 12, 16), dtype=np.float32),
                             make_affine((1.2, 1.2, 1.2))), str(hr))
    out = tmp_path / "lr.nii.gz"
    r = CliRunner().invoke(main, ["simulate", str(hr), "--axis", "2", "--factor", "4", "--profile", profile,
                                  *option, "-o", str(out)])
    assert r.exit_code == 0, r.output
    sidecar = json.loads((tmp_path / "lr.json").read_text())
    assert sidecar["SliceThickness"] == pytest.approx(thickness) and sidecar["Sources"] == [str(hr)]
    stack = load_stack(str(out), "t1")
    assert stack.slice_spacing_mm == pytest.approx(4.8) and stack.slice_thickness_mm == pytest.approx(thickness)
    r = CliRunner().invoke(main, ["simulate", str(hr), "--axis", "2", "-o", str(tmp_path / "other.nii.gz")])
    assert r.exit_code == 0
    (tmp_path / "other.nii.gz").unlink()  # only the sidecar is left: still refused without --overwrite
    r = CliRunner().invoke(main, ["simulate", str(hr), "--axis", "2", "-o", str(tmp_path / "other.nii.gz")])
    assert r.exit_code != 0 and "other.json: output exists" in r.stderr
