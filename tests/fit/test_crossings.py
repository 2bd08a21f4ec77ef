"""Slice thickness judged where the slices of two stacks of one contrast cross
(inrsr/fit/crossings.py): thicknesses recovered on a crop of a shared BraTS subject and on the
head phantom for point, box, thin-slice-with-gap and Gaussian stacks, with and without noise; what
the judge measures; which stacks it serves; and that the learned estimate runs only for stacks it
does not serve."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import affine_transform

import inrsr.fit.thickness as thickness
from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.config import preset
from inrsr.errors import InputWarning
import inrsr.fit.crossings as crossings
from inrsr.fit.crossings import as_thickness_mm, crossing_widths_mm, pair_widths_mm, pixel_width_mm
from inrsr.geometry import slice_normal
from inrsr.io.stack import Stack
from tests.fit.conftest import brats_crop


@pytest.fixture(scope="module")
def t2w_crop(shared_data) -> tuple[np.ndarray, np.ndarray]:
    return brats_crop(shared_data / "brats_gli_00001" / "t2w.nii.gz")


def _pair(volume: np.ndarray, affine: np.ndarray, profile: str, thickness_vox: float | None = None,
          noise: float = 0.0, contrasts: tuple[str, str] = ("t2", "t2")) -> list[Stack]:
    """An axial and a coronal stack of ``volume``, 4 voxels apart, with Rician noise of ``noise``
    times the 99th percentile."""
    rng = np.random.default_rng(3)
    out = []
    for axis, contrast in zip((2, 1), contrasts):
        data, aff = simulate_stack(volume, affine, axis, 4, profile, thickness_vox)
        if noise:
            sd = noise * np.percentile(data, 99)
            data = np.hypot(data + rng.normal(0, sd, data.shape), rng.normal(0, sd, data.shape)).astype(np.float32)
        out.append(Stack(data, aff, contrast))
    return out


def _no_learned_fit(stacks, config, progress=False, foregrounds=None):
    raise AssertionError("the learned estimate ran")


@pytest.mark.parametrize("profile, thickness_vox, noise, truth", [
    ("point", None, 0.0, 1.0),
    ("box", 2, 0.0, 2.0),
    ("box", 4, 0.0, 4.0),
    ("box", 2, 0.02, 2.0),
    ("gaussian", None, 0.0, 4.0),
])
def test_thickness_recovered_on_a_brats_crop(t2w_crop, profile, thickness_vox, noise, truth):
    """t2w axial and coronal stacks of one profile, 4 mm apart; point samples are one 1 mm voxel
    thick, as ``inrsr simulate`` records them. Measured on whole BraTS and open_ms volumes
    (2026-12-02): the judge's widths beyond the partner's 1 mm voxels are exact to the 0.25 mm grid
    without noise (0, 1.75, 4 mm: thicknesses 1, 2.02, 4 mm) and within 0.5 mm with Rician noise of
    2 % of the 99th percentile."""
    judged_as = "gaussian" if profile == "gaussian" else "box"
    assert crossing_widths_mm(_pair(*t2w_crop, profile, thickness_vox, noise), judged_as) == pytest.approx(
        [truth, truth], abs=0.5)


def test_crossing_points_do_not_depend_on_how_the_partner_is_visited(t2w_crop):
    """The partner's voxels are visited a few planes at a time to bound the memory; one plane or
    seven planes at a time find the same points, in the same order, as the whole stack at once,
    and every point lies on one of the first stack's slice planes."""
    axial, coronal = _pair(*t2w_crop, "box", 2)
    whole = crossings.crossing_points(axial, coronal, seed=1)
    plane = coronal.data[0].size
    assert coronal.data.shape[0] % 7  # seven planes at a time leave a shorter last piece
    for chunk_voxels in (1, 7 * plane):
        pieces = crossings.crossing_points(axial, coronal, seed=1, chunk_voxels=chunk_voxels)
        assert all(np.array_equal(x, y) for x, y in zip(whole, pieces))
    assert len(whole[0]) >= crossings.MIN_POINTS
    ijk = np.linalg.solve(axial.affine, np.c_[whole[0], np.ones(len(whole[0]))].T).T[:, :3]
    assert np.allclose(ijk[:, axial.slice_axis], whole[1], atol=1e-6)


def test_the_judge_sees_the_width_beyond_the_partners_voxels(t2w_crop):
    """The judge compares a stack with its partner's voxels, which already span one in-plane voxel
    along the judged normal: point samples of 1 mm voxels judge 0 mm beyond them, and a width is
    made a thickness by adding the voxel back as a variance."""
    wa, wb, n, agreement = pair_widths_mm(*_pair(*t2w_crop, "point"), "box")
    assert n >= 2000 and [wa, wb] == pytest.approx([0.0, 0.0], abs=0.25) and agreement > 0.999
    coronal = _pair(*t2w_crop, "point")[1]
    assert pixel_width_mm(coronal, np.array([0.0, 0.0, 1.0])) == pytest.approx(1.0)
    assert as_thickness_mm(0.0, 1.0, "box") == pytest.approx(1.0)
    assert as_thickness_mm(3.0 ** 0.5, 1.0, "box") == pytest.approx(2.0)
    assert as_thickness_mm(0.0, 1.0, "gaussian") == pytest.approx(0.68, abs=0.01)  # a 1 mm box's FWHM-equivalent


def test_thickness_recovered_on_the_phantom():
    """The head phantom's t2 axial and coronal stacks, 4 mm apart. Measured (2026-12-02): the
    judge's widths 0, 1.75 and 4 mm for point samples, 2 mm slices and 4 mm boxes."""
    vols, affine, _ = head_phantom((96, 112, 96), seed=0)
    for profile, thickness_vox, truth in (("point", None, 1.0), ("box", 2, 2.0), ("box", 4, 4.0)):
        widths = crossing_widths_mm(_pair(vols["t2"], affine, profile, thickness_vox), "box")
        assert widths == pytest.approx([truth, truth], abs=0.5), profile


def test_thickness_recovered_with_tilted_slices(shared_data, t2w_crop, monkeypatch):
    """A coronal stack on the crop's grid turned by 30 degrees about L-R (the whole volume
    resampled on it, so nothing is cut off), with an axial one: normals 60 degrees apart, the
    widest the judge takes. In so small a field of view, lines near its edges would run beyond the
    partner's voxels, where its spline mirrors the data (point samples then came out 1.73 mm); they
    are left out. Measured on the whole BraTS t2w (2026-12-02): point samples 0.87 mm
    (a tilted 1 mm voxel spans cos 30 degrees of the normal), 2 mm slices 2.18 mm, 4 mm boxes
    4.58 mm, read as contiguous 4 mm; no learned fit."""
    volume, affine = t2w_crop
    whole = nib.load(str(shared_data / "brats_gli_00001" / "t2w.nii.gz"))
    angle = np.deg2rad(30.0)
    turn = np.eye(4)
    turn[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    centre = affine @ np.r_[(np.array(volume.shape) - 1) / 2, 1.0]
    to_centre, back = np.eye(4), np.eye(4)
    to_centre[:3, 3], back[:3, 3] = -centre[:3], centre[:3]
    turned_affine = back @ turn @ to_centre @ affine
    voxel_map = np.linalg.inv(whole.affine) @ turned_affine
    turned = affine_transform(np.asarray(whole.dataobj, dtype=np.float32), voxel_map[:3, :3], voxel_map[:3, 3],
                              output_shape=volume.shape, order=3).astype(np.float32)

    monkeypatch.setattr(thickness, "learned_thickness_mm", _no_learned_fit)
    for profile, thickness_vox, truth in (("point", None, 1.0), ("box", 2, 2.0), ("box", 4, 4.0)):
        axial = Stack(*simulate_stack(volume, affine, 2, 4, profile, thickness_vox), "t2")
        coronal = Stack(*simulate_stack(turned, turned_affine, 1, 4, profile, thickness_vox), "t2")
        assert abs(float(slice_normal(axial.affine) @ slice_normal(coronal.affine))) == pytest.approx(0.5)
        widths, how = thickness.estimate_thickness_mm([axial, coronal], preset("default"))
        assert how == ["crossings", "crossings"] and widths == pytest.approx([truth, truth], abs=0.5), profile


def test_only_stacks_of_one_contrast_whose_slices_cross_are_judged(t2w_crop):
    volume, affine = t2w_crop
    assert crossing_widths_mm(_pair(volume, affine, "box", 2, contrasts=("t1", "t2")), "box") == [None, None]
    axial = _pair(volume, affine, "box", 2)[0]
    shifted = axial.affine.copy()
    shifted[2, 3] += 2.0
    # parallel slices never cross
    assert crossing_widths_mm([axial, Stack(axial.data, shifted, "t2")], "box") == [None, None]
    three = _pair(volume, affine, "box", 2) + [Stack(axial.data, axial.affine, "t1")]
    assert crossing_widths_mm(three, "box") == pytest.approx([2.0, 2.0, None], abs=0.5)


def test_the_learned_estimate_runs_only_for_stacks_without_a_partner(t2w_crop, monkeypatch):
    """Stacks judged at their crossings need no fit; a stack without a partner gets the learned
    width, and its partners keep their judged ones."""
    volume, affine = t2w_crop
    pair = _pair(volume, affine, "box", 2)

    monkeypatch.setattr(thickness, "learned_thickness_mm", _no_learned_fit)
    widths, how = thickness.estimate_thickness_mm(pair, preset("default"))
    assert widths == pytest.approx([2.0, 2.0], abs=0.5) and how == ["crossings", "crossings"]
    calls = []

    def learned(stacks, config, progress=False, foregrounds=None):
        calls.append(len(stacks))
        return np.full(len(stacks), 3.0)

    monkeypatch.setattr(thickness, "learned_thickness_mm", learned)
    lone = Stack(pair[0].data, pair[0].affine, "t1")
    widths, how = thickness.estimate_thickness_mm(pair + [lone], preset("default"))
    assert calls == [3] and how == ["crossings", "crossings", "fit"]
    assert widths == pytest.approx([2.0, 2.0, 3.0], abs=0.5) and widths[2] == 3.0


def test_stacks_moved_between_scans_are_not_judged_and_say_so(t2w_crop):
    """A coronal stack 1.5 mm off the axial one (a patient who moved): its crossing lines disagree,
    no width is judged, and one warning names both files. Measured on whole volumes (2026-12-02):
    agreement 0.96-0.98 at 1 mm, and widths up to 1.9 mm too wide."""
    axial, coronal = _pair(*t2w_crop, "box", 2)
    axial.path, coronal.path = "t2_axial.nii.gz", "t2_coronal.nii.gz"
    moved = coronal.affine.copy()
    moved[:3, 3] += 1.5 / 3 ** 0.5  # 1.5 mm along the diagonal
    moved = Stack(coronal.data, moved, "t2", path=coronal.path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert crossing_widths_mm([axial, moved], "box") == [None, None]
    lines = [str(w.message) for w in seen if issubclass(w.category, InputWarning)]
    assert len(lines) == 1 and lines[0].startswith("t2_axial.nii.gz and t2_coronal.nii.gz: where their slices cross, "
                                                   "the two t2 stacks agree to only 0.")
    assert lines[0].endswith("(below 0.99): moved between the scans, or not one contrast; their crossings are not "
                             "used to judge a slice thickness")
