"""Training tensors: slice-profile quadrature and its placement along each stack's slice normal."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.io import Stack
from inrsr.phantom import head_phantom
from inrsr.samples import build_training_set, slice_profile
from inrsr.simulate import simulate_stack


def test_box_profile_is_the_mean_of_equal_sub_slices():
    pos, w = slice_profile("box", 4.0, 4)
    np.testing.assert_allclose(pos, [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(w, 0.25)


def test_gaussian_profile_has_fwhm_equal_to_thickness():
    pos, w = slice_profile("gaussian", 3.0, 6)
    np.testing.assert_allclose(pos, -pos[::-1])
    assert abs(w.sum() - 1.0) < 1e-12 and np.all(np.diff(w[:3]) > 0)
    # w ∝ exp(-4 ln2 (x / FWHM)²): half the peak at x = FWHM / 2
    np.testing.assert_allclose(w / w.max(), np.exp(-4 * np.log(2) * (pos / 3.0) ** 2) / np.exp(-4 * np.log(2) * (pos[2] / 3.0) ** 2))
    assert slice_profile("point", 3.0, 6)[0].tolist() == [0.0]


@pytest.mark.parametrize("profile,k", [("point", 1), ("box", 4), ("gaussian", 5)])
def test_offsets_follow_each_stacks_slice_normal_and_thickness(profile, k):
    vols, aff, _ = head_phantom((32, 36, 32), seed=1)
    ax = Stack(*simulate_stack(vols["t1"], aff, 2, 4, "slab"), "t1")  # thick along world z
    cor = Stack(*simulate_stack(vols["t2"], aff, 1, 2, "slab"), "t2", thickness_mm=3.0)  # along y, gap-free overlap
    subject, train = build_training_set([ax, cor], 0.25, 100, 0, profile, k)
    off_mm = train.profile_offsets.numpy() * subject.normaliser.scale_mm
    assert off_mm.shape == (2, k, 3) and train.profile_weights.shape == (2, k)
    np.testing.assert_allclose(train.profile_weights.sum(1).numpy(), 1.0, rtol=1e-6)
    for s, (axis, thick) in enumerate([(2, 4.0), (1, 3.0)]):
        others = [a for a in range(3) if a != axis]
        np.testing.assert_allclose(off_mm[s][:, others], 0.0, atol=1e-6)
        expect, _ = slice_profile(profile, thick, k)
        np.testing.assert_allclose(np.abs(off_mm[s][:, axis]), np.abs(expect), atol=1e-5)
