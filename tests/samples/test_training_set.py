"""Training tensors: each stack's slice-profile points placed along its slice normal, across its thickness."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.profiles import profile_quadrature
from inrsr.acquisition.simulate import simulate_stack
from inrsr.io.stack import Stack
from inrsr.samples.training_set import build_training_set


@pytest.mark.parametrize("profile,k", [("point", 1), ("box", 4), ("gaussian", 5)])
def test_offsets_follow_each_stacks_slice_normal_and_thickness(profile, k):
    vols, aff, _ = head_phantom((32, 36, 32), seed=1)
    ax = Stack(*simulate_stack(vols["t1"], aff, 2, 4, "box"), "t1")  # thick along world z
    cor = Stack(*simulate_stack(vols["t2"], aff, 1, 2, "box"), "t2", thickness_mm=3.0)  # along y, gap-free overlap
    subject, train = build_training_set([ax, cor], 0.25, 100, 0, profile, k)
    off_mm = train.profile_offsets.numpy() * subject.normaliser.scale_mm
    assert off_mm.shape == (2, k, 3) and train.profile_weights.shape == (2, k)
    np.testing.assert_allclose(train.profile_weights.sum(1).numpy(), 1.0, rtol=1e-6)
    for s, (axis, thick) in enumerate([(2, 4.0), (1, 3.0)]):
        others = [a for a in range(3) if a != axis]
        np.testing.assert_allclose(off_mm[s][:, others], 0.0, atol=1e-6)
        expect, _ = profile_quadrature(profile, thick, k)
        np.testing.assert_allclose(np.abs(off_mm[s][:, axis]), np.abs(expect), atol=1e-5)
