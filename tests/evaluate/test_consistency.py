"""Quality without ground truth: re-simulated stacks, held-out slices and their cubic baseline."""

from __future__ import annotations

import numpy as np

from inrsr.config import preset
from inrsr.baselines import cubic_between_slices
from inrsr.consistency import held_out_slices, registered_stacks, resimulate, stack_scores
from inrsr.fit import fit_field
from inrsr.io import Stack
from inrsr.masks import estimate_foreground
from inrsr.phantom import head_phantom
from inrsr.samples import build_training_set
from inrsr.simulate import simulate_stack


def test_held_out_slices_keep_both_ends():
    np.testing.assert_array_equal(held_out_slices(10, 4), [2, 6])
    np.testing.assert_array_equal(held_out_slices(5, 2), [1, 3])
    assert held_out_slices(2, 2).size == 0


def test_cubic_between_slices_is_exact_for_a_cubic_profile():
    z = np.arange(12, dtype=np.float64)
    data = np.broadcast_to(0.01 * z**3 - 0.2 * z**2 + z, (3, 4, 12)).astype(np.float32)
    held = held_out_slices(12, 3)
    pred = cubic_between_slices(data, 2, held)
    np.testing.assert_allclose(pred, data, atol=1e-4)
    noisy = data.copy()
    noisy[:, :, held] = 0.0  # held-out values are never used
    np.testing.assert_allclose(cubic_between_slices(noisy, 2, held), data, atol=1e-4)


def test_registered_stacks_apply_each_matrix():
    s = Stack(np.ones((4, 4, 2), np.float32), np.diag([1.0, 1.0, 3.0, 1.0]), "t1")
    m = np.eye(4)
    m[:3, 3] = [1.0, 2.0, 3.0]
    moved = registered_stacks([s, s], [np.eye(4), m])
    np.testing.assert_array_equal(moved[1].affine[:3, 3], [1.0, 2.0, 3.0])
    assert moved[0].affine is not None and registered_stacks([s], None)[0] is s


def test_resimulated_stack_matches_its_data_only_where_it_was_acquired():
    vols, aff, _ = head_phantom((40, 48, 40), seed=3)
    stacks = [Stack(*simulate_stack(vols["t1"], aff, 2, 4, "slab"), "t1"),
              Stack(*simulate_stack(vols["t2"], aff, 1, 4, "slab"), "t2")]
    cfg = preset("fast", max_steps=150, early_stopping=False, threads=1)
    subject, train = build_training_set(stacks, cfg.background_ratio, cfg.mi_points, 0, cfg.slice_profile,
                                        cfg.profile_points)
    field = fit_field(train, subject.contrasts, cfg, progress=False).field
    t1 = stacks[0]
    mask = estimate_foreground(t1.data)
    pred = resimulate(field, t1, subject, cfg, where=mask)
    assert np.isnan(pred[~mask]).all() and np.isfinite(pred[mask]).all()
    good = stack_scores(pred, t1.data, mask)
    shifted = t1.affine.copy()
    shifted[:3, 3] += [3.0, 0.0, 0.0]  # the same voxels claimed 3 mm to the side
    wrong = stack_scores(resimulate(field, Stack(t1.data, shifted, "t1"), subject, cfg, where=mask), t1.data, mask)
    assert good["psnr"] > 25.0 and good["corr"] > 0.97
    assert good["psnr"] > wrong["psnr"] + 3.0, (good, wrong)
