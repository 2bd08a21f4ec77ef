"""Two short real fits through the CLI, on a crop of the shared BraTS case written to a temp dir.

t1c → axial thick stack, t2w → coronal thick stack (factor 4). Slab protocol (each thick voxel is
the mean of 4 slices): the ``default`` preset (box slice profile) fits them for a short step budget
and renders on the t1c crop's grid. Asserts: exact output geometry, quality above nearest neighbour
and against cubic (stated margin), model re-sampling, logs and MI curve. Point protocol (1 mm
slices 4 mm apart, thickness from ``inrsr simulate``'s sidecar): ``default`` fits over 40 % of the
cubic base; t1 gains over cubic and t2 stays within a stated margin of it. The back-projected
residuals of ``--data-consistency`` improve on the network alone.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from inrsr.baselines.interpolate import interpolate_to_grid
from inrsr.cli import main
from inrsr.evaluate.metrics import evaluate
from inrsr.field.checkpoint import load_checkpoint
from inrsr.geometry import Grid, fov_corners_world, union_box, voxel_sizes_mm
from inrsr.io.grids import reference_grid
from inrsr.render import render_subject
from tests.conftest import away_from_faces

# The short CPU fit in this test must beat cubic's PSNR inside the brain by this much (measured:
# +0.99 dB t1, +1.41 dB t2 at 400 steps, back-projected residuals included; commit c6e0a21).
CUBIC_GAIN_DB = 0.3
STEPS = 400
# Point protocol (1 mm slices 4 mm apart), 800 steps on the crop over 40 % of the cubic base: t1
# must gain POINT_T1_GAIN_DB over cubic, and both contrasts stay within these margins of cubic.
# Measured (t1 / t2): PSNR +0.78 / −0.04 dB, SSIM +0.005 / −0.009 (commit c6e0a21; with the
# 64-wide heads and 25 % background before it: +0.74 / −0.44 dB). On this 80 mm crop the coronal
# t2 stack has 20 planes, too few for the network's share of the image (README, "Limitations");
# on the full BraTS volume `make bench` measures t2 above cubic in PSNR and SSIM. Before data
# consistency (commit 41385b0, 2026-11-22), the fit measured over the whole base +0.37 / +0.15 dB, half −0.30, a quarter −0.86 (t2).
POINT_T1_GAIN_DB = 0.3
POINT_PSNR_MARGIN_DB = 0.3
POINT_SSIM_MARGIN = 0.02
POINT_STEPS = 800
# Slab fit: the back-projected residuals must add this much PSNR (and some SSIM) to the network's
# own output in both contrasts. Measured: +0.06 / +0.20 dB, SSIM +0.006 / +0.006 (t1 / t2).
BACKPROJECT_GAIN_DB = 0.02
HALF = np.array([40, 40, 32])  # crop half-size in voxels (1 mm)


def crop(img: nib.Nifti1Image, centre: np.ndarray) -> nib.Nifti1Image:
    lo = centre - HALF
    data = np.asarray(img.dataobj, dtype=np.float32)[lo[0]:lo[0] + 2 * HALF[0], lo[1]:lo[1] + 2 * HALF[1],
                                                      lo[2]:lo[2] + 2 * HALF[2]]
    return nib.Nifti1Image(data, img.affine @ np.vstack([np.c_[np.eye(3), lo], [0, 0, 0, 1]]), img.header)


def fit_crop(shared_data, tmp, protocol: str, steps: int):
    """Crop BraTS t1c/t2w around the brain, simulate t1 axial + t2 coronal stacks (factor 4) with
    ``inrsr simulate`` (which writes each stack's slice thickness), and fit them with ``default``."""
    t1 = nib.load(str(shared_data / "brats_gli_00001" / "t1c.nii.gz"))
    t2 = nib.load(str(shared_data / "brats_gli_00001" / "t2w.nii.gz"))
    brain = np.asarray(t1.dataobj) > 0
    centre = np.round(np.argwhere(brain).mean(axis=0)).astype(int)
    for name, img in (("t1", t1), ("t2", t2)):
        nib.save(crop(img, centre), str(tmp / f"{name}_hr.nii.gz"))
    runner = CliRunner()
    for name, view in (("t1", "axial"), ("t2", "coronal")):
        r = runner.invoke(main, ["simulate", str(tmp / f"{name}_hr.nii.gz"), "--view", view, "--factor", "4",
                                 "--profile", protocol, "-o", str(tmp / f"{name}_lr.nii.gz")])
        assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["fit", "--t1", str(tmp / "t1_lr.nii.gz"), "--t2", str(tmp / "t2_lr.nii.gz"),
                             "--ref", str(tmp / "t1_hr.nii.gz"), "-o", str(tmp / "out"), "--quiet",
                             "--max-steps", str(steps), "--no-early-stopping", "--mi-every", "50"])
    assert r.exit_code == 0, r.output
    return tmp


def scores(folder, name: str, prediction=None) -> tuple[dict, dict, dict]:
    """PSNR/SSIM of inrsr (``prediction``, default the fit's output), nearest and cubic against the
    crop's truth, away from the crop's faces (where the field extrapolates beyond a stack's
    outermost slice and cubic copies the edge)."""
    truth_img = nib.load(str(folder / f"{name}_hr.nii.gz"))
    truth = truth_img.get_fdata(dtype=np.float32)
    lr = nib.load(str(folder / f"{name}_lr.nii.gz"))
    grid = Grid(truth.shape, truth_img.affine)
    mask = away_from_faces(truth > 0)
    pred = nib.load(str(prediction or folder / "out" / f"{name}.nii.gz")).get_fdata(dtype=np.float32)
    low = lr.get_fdata(dtype=np.float32)
    return (evaluate(pred, truth, mask), evaluate(interpolate_to_grid(low, lr.affine, grid, 0), truth, mask),
            evaluate(interpolate_to_grid(low, lr.affine, grid, 3), truth, mask))


@pytest.fixture(scope="module")
def fitted(shared_data, tmp_path_factory):
    return fit_crop(shared_data, tmp_path_factory.mktemp("fit"), "slab", STEPS)


@pytest.fixture(scope="module")
def fitted_point(shared_data, tmp_path_factory):
    return fit_crop(shared_data, tmp_path_factory.mktemp("fit_point"), "point", POINT_STEPS)


def test_output_is_exactly_on_the_reference_grid(fitted):
    ref = nib.load(str(fitted / "t1_hr.nii.gz"))
    for name in ("t1", "t2"):
        out = nib.load(str(fitted / "out" / f"{name}.nii.gz"))
        assert out.shape == ref.shape
        assert out.get_data_dtype() == np.float32
        # every voxel centre within 0.01 mm: compare the corners of the grid (affine is linear)
        corners = np.array([[0, 0, 0], np.array(ref.shape) - 1])
        np.testing.assert_allclose(nib.affines.apply_affine(out.affine, corners),
                                   nib.affines.apply_affine(ref.affine, corners), atol=0.01)
        assert int(out.header["sform_code"]) == int(ref.header["sform_code"])
        assert int(out.header["qform_code"]) == int(ref.header["qform_code"])
        assert out.header.get_xyzt_units()[0] == "mm"


@pytest.mark.parametrize("name", ["t1", "t2"])
def test_quality_above_nearest_and_cubic(fitted, name):
    m, nearest, cubic = scores(fitted, name)
    print(name, "inrsr", m["psnr"], "nearest", nearest["psnr"], "cubic", cubic["psnr"])
    assert m["psnr"] > nearest["psnr"]
    assert m["psnr"] > cubic["psnr"] + CUBIC_GAIN_DB
    # outputs are in the input's intensity units: the brain's median matches the truth's within 10 %
    truth = nib.load(str(fitted / f"{name}_hr.nii.gz")).get_fdata(dtype=np.float32)
    pred = nib.load(str(fitted / "out" / f"{name}.nii.gz")).get_fdata(dtype=np.float32)
    assert abs(np.median(pred[truth > 0]) / np.median(truth[truth > 0]) - 1) < 0.1


@pytest.mark.parametrize("name", ["t1", "t2"])
def test_thin_slices_with_gaps_fit_over_part_of_the_cubic_base(fitted_point, name):
    cfg = json.loads((fitted_point / "out" / "config.json").read_text())
    sidecar = json.loads((fitted_point / f"{name}_lr.json").read_text())
    assert cfg["base"] == "cubic" and cfg["base_weight"] == 0.4 and sidecar["SliceThickness"] == 1
    assert "base.volume" in torch.load(fitted_point / "out" / "model.pt", weights_only=True)["state_dict"]
    m, _, cubic = scores(fitted_point, name)
    print(name, "inrsr", m["psnr"], m["ssim"], "cubic", cubic["psnr"], cubic["ssim"])
    assert m["psnr"] > cubic["psnr"] - POINT_PSNR_MARGIN_DB and m["ssim"] > cubic["ssim"] - POINT_SSIM_MARGIN
    if name == "t1":
        assert m["psnr"] > cubic["psnr"] + POINT_T1_GAIN_DB


def test_back_projected_residuals_bring_the_field_closer_to_the_truth(fitted):
    """``default`` adds the stacks' back-projected residuals after the fit (``--data-consistency``):
    rendered without them, the network alone is further from the truth in both contrasts."""
    model, config, subject, _, _ = load_checkpoint(fitted / "out" / "model.pt")
    assert config.data_consistency and model.correction is not None
    grid, _ = reference_grid(fitted / "t1_hr.nii.gz")
    with model.without_correction():
        alone = render_subject(model, grid, subject, config)
    log = json.loads((fitted / "out" / "log.json").read_text())
    assert log["seconds"]["data_consistency"] > 0
    for name in ("t1", "t2"):
        nib.save(nib.Nifti1Image(alone[name], grid.affine), str(fitted / f"alone_{name}.nii.gz"))
        with_bp, _, _ = scores(fitted, name)
        without = scores(fitted, name, fitted / f"alone_{name}.nii.gz")[0]
        print(name, "with", with_bp, "without", without)
        assert with_bp["psnr"] > without["psnr"] + BACKPROJECT_GAIN_DB and with_bp["ssim"] > without["ssim"]


def test_logs_and_mi_curve(fitted):
    log = json.loads((fitted / "out" / "log.json").read_text())
    assert log["steps"] == STEPS and log["stopped_by"] == "limit" and not log["stopped_early"]
    assert len(log["epochs"]) == log["epochs_run"] >= 5
    first, last = log["epochs"][0], log["epochs"][-1]
    assert last["loss_t1"] < first["loss_t1"] and last["loss_t2"] < first["loss_t2"]
    assert len(log["mi_curve"]) >= 3 and all(0 < m["mi"] < np.log(32) for m in log["mi_curve"])
    assert (fitted / "out" / "mi.png").stat().st_size > 1000
    assert (fitted / "out" / "log.csv").read_text().startswith("epoch,steps,loss_t1,loss_t2,lr,mi,seconds")
    cfg = json.loads((fitted / "out" / "config.json").read_text())
    assert cfg["max_steps"] == STEPS and cfg["early_stopping"] is False and cfg["slice_profile"] == "box"


def test_sample_reproduces_fit_and_resamples(fitted):
    runner = CliRunner()
    r = runner.invoke(main, ["sample", "--model", str(fitted / "out" / "model.pt"), "--ref",
                             str(fitted / "t1_hr.nii.gz"), "-o", str(fitted / "again")])
    assert r.exit_code == 0, r.output
    for name in ("t1", "t2"):
        a = nib.load(str(fitted / "out" / f"{name}.nii.gz")).get_fdata()
        b = nib.load(str(fitted / "again" / f"{name}.nii.gz")).get_fdata()
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
    r = runner.invoke(main, ["sample", "--model", str(fitted / "out" / "model.pt"), "--resolution", "2",
                             "-o", str(fitted / "iso2")])
    assert r.exit_code == 0, r.output
    iso = nib.load(str(fitted / "iso2" / "t1.nii.gz"))
    np.testing.assert_allclose(voxel_sizes_mm(iso.affine), [2, 2, 2], atol=1e-4)
    # the isotropic grid covers the union of the stacks' fields of view (by less than one voxel
    # more per axis) and is aligned with the first stack
    lows = [nib.load(str(fitted / f"{n}_lr.nii.gz")) for n in ("t1", "t2")]
    box = union_box([(im.shape, im.affine) for im in lows])
    grid_fov = fov_corners_world(iso.shape, iso.affine) @ box.rotation
    assert np.all(grid_fov.min(axis=0) <= box.lo_mm + 1e-3) and np.all(grid_fov.max(axis=0) >= box.hi_mm - 1e-3)
    assert np.all(np.array(iso.shape) * 2 < box.extent_mm + 2)
    first = lows[0].affine
    np.testing.assert_allclose(iso.affine[:3, :3] / 2, first[:3, :3] / voxel_sizes_mm(first), atol=1e-6)
