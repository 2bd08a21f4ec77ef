"""Foreground estimation on real data: a skull-stripped brain and a whole-head scan."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from inrsr.samples.foreground import estimate_foreground


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
