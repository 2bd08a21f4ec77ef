"""Quality without ground truth: held-out slices, and a re-simulated stack scored against its voxels."""

from __future__ import annotations

import numpy as np

from inrsr.acquisition.forward import resimulate
from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.config import preset
from inrsr.evaluate.consistency import held_out_slices, stack_scores
from inrsr.fit.loop import fit_field
from inrsr.io.stack import Stack
from inrsr.samples.foreground import estimate_foreground
from inrsr.samples.training_set import build_training_set


def test_held_out_slices_keep_both_ends():
    np.testing.assert_array_equal(held_out_slices(10, 4), [2, 6])
    np.testing.assert_array_equal(held_out_slices(5, 2), [1, 3])
    assert held_out_slices(2, 2).size == 0


def test_resimulated_stack_matches_its_data_only_where_it_was_acquired():
    vols, aff, _ = head_phantom((40, 48, 40), seed=3)
    stacks = [Stack(*simulate_stack(vols["t1"], aff, 2, 4, "box"), "t1"),
              Stack(*simulate_stack(vols["t2"], aff, 1, 4, "box"), "t2")]
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
