"""Robust per-contrast scaling and its inverse; foreground estimation on real data."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from inrsr.intensity import fit_intensity_scale
from inrsr.masks import estimate_foreground


def test_scale_round_trip_and_robust_to_outliers():
    rng = np.random.default_rng(1)
    vol = np.zeros((30, 30, 30), np.float32)
    vol[5:25, 5:25, 5:25] = rng.uniform(100, 500, size=(20, 20, 20))
    fg = vol > 0
    clean = fit_intensity_scale([vol], [vol[fg]])
    spiked = vol.copy()
    spiked[10, 10, 10] = 1e6  # one hot voxel must not change the scaling
    robust = fit_intensity_scale([spiked], [spiked[fg]])
    assert abs(robust.hi - clean.hi) < 5.0
    assert robust.lo == 0.0
    np.testing.assert_allclose(robust.inverse(robust.forward(spiked)), spiked, rtol=1e-5)
    scaled = clean.forward(vol[fg])
    assert abs(float(np.percentile(scaled, 99.5)) - 1.0) < 1e-3


def test_foreground_estimate_matches_brain_on_skull_stripped_data(shared_data):
    vol = nib.load(str(shared_data / "brats_gli_00001" / "t2w.nii.gz")).get_fdata(dtype=np.float32)
    brain = vol > 0
    fg = estimate_foreground(vol, dilate_vox=0)
    dice = 2 * (fg & brain).sum() / (fg.sum() + brain.sum())
    assert dice > 0.95


def test_foreground_estimate_on_whole_head_scan(shared_data):
    vol = nib.load(str(shared_data / "spm_avg152" / "T1.nii")).get_fdata(dtype=np.float32)
    fg = estimate_foreground(vol)
    assert 0.3 < fg.mean() < 0.9
    assert not fg[0, 0, 0] and fg[45, 54, 45]  # corner is air, centre is head
