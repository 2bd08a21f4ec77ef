"""Optimiser: parameter groups, learning rates and betas, cosine schedules, a group's warm-up, coarse-to-fine release of detail."""

from __future__ import annotations

import pytest
import torch

from inrsr.config import preset
from inrsr.field.network import build_field
from inrsr.fit.loop import Trainer
from inrsr.fit.optimiser import learning_rate_at, make_optimiser, warmup_factor
from inrsr.register.poses import StackPoses
from inrsr.samples.training_set import build_training_set
from tests.fit.conftest import CFG, tiny_stacks


def test_optimiser_groups_learning_rates_and_betas():
    cfg = preset("default", lr=0.01, grid_lr=0.03, register_lr=0.05, adam_beta2=0.9)
    field = build_field(["t1", "t2"], cfg, mm_per_unit=100.0)
    opt = make_optimiser(field, cfg, StackPoses(torch.zeros(2, 3), fixed=0, mm_per_unit=100.0))
    others, tables, poses = opt.param_groups
    assert {id(p) for p in tables["params"]} == {id(p) for n, p in field.named_parameters() if n.endswith("table")}
    assert len(others["params"]) + len(tables["params"]) == len(list(field.parameters()))
    assert [g["scale"] for g in opt.param_groups] == pytest.approx([1.0, 3.0, 5.0])
    assert others["betas"] == tables["betas"] == (0.9, 0.9)
    assert poses["betas"] == (0.9, 0.999)  # the stack transforms keep torch's default


def test_cosine_schedules():
    cfg = CFG.replace(lr=1.0, lr_schedule="cosine")
    assert learning_rate_at(0, 10, 100, cfg) == 1.0 and abs(learning_rate_at(50, 10, 100, cfg) - 0.5) < 1e-12
    epoch = cfg.replace(lr_schedule="cosine-epoch")
    assert learning_rate_at(9, 10, 100, epoch) == 1.0  # constant within the first epoch
    assert abs(learning_rate_at(50, 10, 100, epoch) - 0.5) < 1e-12


def test_coarse_to_fine_schedule_and_detail_weights():
    from inrsr.field.encodings import detail_weights
    from inrsr.fit.optimiser import detail_cut_mm

    assert detail_cut_mm(0, 100, 0.5, 16.0, 1.0) == 16.0
    assert abs(detail_cut_mm(25, 100, 0.5, 16.0, 1.0) - 4.0) < 1e-9
    assert detail_cut_mm(50, 100, 0.5, 16.0, 1.0) is None and detail_cut_mm(0, 100, 0.0, 16.0, 1.0) is None
    w = detail_weights(torch.tensor([32.0, 8.0, 4.0, 2.0, 1.0]), 4.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(detail_weights(torch.tensor([2.8284]), 4.0), torch.tensor([0.5]), atol=1e-4, rtol=0)


def test_a_group_with_a_warm_up_learns_at_a_rate_rising_from_zero():
    """The slice-width group of the thickness estimate: its rate is 0 at the first step and reaches
    the schedule's after ``warmup_steps``; the other groups follow the schedule from the start."""
    assert [warmup_factor(s, 4) for s in (0, 1, 4, 9)] == [0.0, 0.25, 1.0, 1.0] and warmup_factor(0, 0) == 1.0
    subject, train = build_training_set(tiny_stacks(), 0.25, CFG.mi_points, 0, "box", 4)  # widths act on box profiles
    cfg = CFG.replace(max_steps=8, early_stopping=False)
    trainer = Trainer(train, subject.contrasts, cfg, torch.device("cpu"))
    extra = torch.nn.Parameter(torch.ones(2))
    trainer.data.width_scale = extra
    trainer.optimiser.add_param_group({"params": [extra], "scale": 2.0, "warmup_steps": 4})
    seen = []
    trainer.callback = lambda step, s, f: seen.append([g["lr"] for g in trainer.optimiser.param_groups])
    trainer.run(progress=False)
    for step, rates in enumerate(seen):
        scheduled = learning_rate_at(step, trainer.plan.steps_per_epoch, 8, cfg)
        assert rates[0] == pytest.approx(scheduled)
        assert rates[-1] == pytest.approx(2.0 * scheduled * min(1.0, step / 4))
    assert extra.grad is not None and not torch.equal(extra.detach(), torch.ones(2))  # it was learned after step 0
