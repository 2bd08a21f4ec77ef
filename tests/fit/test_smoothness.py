"""The smoothness penalty: joint total variation of the contrasts, and its effect on a fitted field."""

from __future__ import annotations

import pytest
import torch

from inrsr.fit.loop import fit_field
from inrsr.fit.smoothness import smoothness_of, smoothness_penalty
from tests.fit.conftest import CFG, tiny_training_set


def test_joint_smoothness_favours_edges_shared_by_the_contrasts():
    # values at n points, then at their n neighbours: one edge in each contrast
    shared = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # both edges at point 0
    apart = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # one edge at each point
    assert smoothness_of(shared, "l1") == smoothness_of(apart, "l1") == 0.5
    assert smoothness_of(shared, "joint").item() == pytest.approx(0.5)
    assert smoothness_of(apart, "joint").item() == pytest.approx(0.5**0.5)
    one = torch.tensor([[0.0], [2.0], [1.0], [-1.0]])  # one contrast: joint is l1
    assert smoothness_of(one, "joint").item() == pytest.approx(smoothness_of(one, "l1").item())


def test_smoothness_penalty_flattens_the_field():
    subject, train = tiny_training_set()
    cfg = CFG.replace(encoding="hash", grid_levels=4, grid_coarsest_mm=16.0, grid_finest_mm=2.0, grid_log2_table=14,
                      max_steps=60, early_stopping=False)
    rough = fit_field(train, subject.contrasts, cfg, progress=False).field
    smooth = fit_field(train, subject.contrasts, cfg.replace(reg_weight=30.0), progress=False).field
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        tv = [smoothness_penalty(f, train.coords[:2000], 0.05, 0.02, "l1", g) for f in (rough, smooth)]
    assert tv[1] < 0.5 * tv[0]
