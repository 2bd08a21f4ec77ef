"""Optimiser: parameter groups, learning rates and betas, cosine schedules, a group's warm-up, coarse-to-fine release of detail."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from inrsr.config import preset
from inrsr.field.network import build_field
from inrsr.fit.loop import Trainer
from inrsr.fit.optimiser import Adam, learning_rate_at, make_optimiser, warmup_factor
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


def adam_problem(seed: int) -> tuple[list[torch.nn.Parameter], list[dict]]:
    """Two parameter groups (a table-like and a small one) with their own rates, betas and eps."""
    g = torch.Generator().manual_seed(seed)
    big, small, bias = (torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in ((4096, 2), (16, 8), (8,)))
    return [big, small, bias], [{"params": [small, bias], "betas": (0.9, 0.9), "lr": 0.02},
                                {"params": [big], "eps": 1e-15, "lr": 0.05, "betas": (0.9, 0.999), "scale": 2.5}]


def adam_steps(opt, params: list[torch.nn.Parameter], steps: range) -> None:
    for k in steps:
        g = torch.Generator().manual_seed(100 + k)
        opt.zero_grad(set_to_none=True)
        loss = sum((p * torch.randn(p.shape, generator=g)).sum() + (p**2).sum() for p in params)
        loss.backward()
        opt.step()


def test_adam_matches_torch_fused_adam_bit_for_bit_and_resumes_from_its_state():
    ours_params, ours_groups = adam_problem(0)
    ref_params, ref_groups = adam_problem(0)
    ours, ref = Adam(ours_groups, lr=0.01), torch.optim.Adam(ref_groups, lr=0.01, fused=True)
    adam_steps(ours, ours_params, range(5))
    adam_steps(ref, ref_params, range(5))
    for a, b in zip(ours_params, ref_params):
        assert torch.equal(a, b)
    assert not any(torch.equal(a, b) for a, b in zip(ours_params, adam_problem(0)[0]))  # they moved
    # a saved state, torch's (a fit interrupted under an older inrsr) or its own, continues to the same bits
    resumed = []
    for saved in (ref.state_dict(), ours.state_dict()):
        params, groups = adam_problem(0)
        with torch.no_grad():
            for a, b in zip(params, ref_params):
                a.copy_(b)
        opt = Adam(groups, lr=0.01)
        opt.load_state_dict(saved)
        assert opt.param_groups[1]["scale"] == 2.5 and opt.param_groups[0]["betas"] == (0.9, 0.9)
        adam_steps(opt, params, range(5, 8))
        resumed.append(params)
    adam_steps(ref, ref_params, range(5, 8))
    for params in resumed:
        for a, b in zip(params, ref_params):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="other parameter groups"):
        Adam(adam_problem(0)[1][:1], lr=0.01).load_state_dict(ours.state_dict())


def test_adam_without_a_fused_kernel_takes_the_same_steps(monkeypatch):
    """The step-by-step update (devices or dtypes without torch's fused kernel) follows the same
    arithmetic to float rounding."""
    fused_params, fused_groups = adam_problem(1)
    plain_params, plain_groups = adam_problem(1)
    adam_steps(Adam(fused_groups, lr=0.01), fused_params, range(6))
    monkeypatch.setattr("inrsr.fit.optimiser._has_fused_adam", lambda device, dtype: False)
    adam_steps(Adam(plain_groups, lr=0.01), plain_params, range(6))
    for a, b in zip(fused_params, plain_params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_fit_does_not_import_torch_dynamo():
    """The reason the fit has its own Adam: torch.optim's wrappers import torch._dynamo, seconds
    of every run."""
    code = ("import sys, torch\n"
            "from inrsr.config import preset\n"
            "from inrsr.fit.loop import fit_field\n"
            "from inrsr.samples.training_set import build_training_set\n"
            "from tests.fit.conftest import tiny_stacks\n"
            "cfg = preset('fast', max_steps=3, threads=1, base='none')\n"
            "subject, train = build_training_set(tiny_stacks(), 0.25, cfg.mi_points, 0, 'box', 4)\n"
            "fit_field(train, subject.contrasts, cfg, progress=False)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


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
