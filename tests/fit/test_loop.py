"""The fit loop on a tiny phantom: step/epoch limits, per-contrast loss, seeded determinism."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from inrsr.config import preset
from inrsr.field import build_field
from inrsr.fit import (_lr_at, fit_field, make_optimiser, profile_forward, smoothness_of, smoothness_penalty,
                       training_forward)
from inrsr.geometry import Grid
from inrsr.io import Stack
from inrsr.phantom import head_phantom
from inrsr.pose import StackPoses
from inrsr.render import render_grid
from inrsr.samples import build_training_set
from inrsr.simulate import simulate_stack

CFG = preset("fast", encoding="fourier", n_frequencies=16, width=32, depth=1, head_width=16, batch_size=512, mi_every=5,
             mi_points=2000, threads=1)


def tiny_training_set():
    vols, aff, _ = head_phantom((32, 36, 32), seed=1)
    stacks = [Stack(*simulate_stack(vols["t1"], aff, 2, 4, "slab"), "t1"),
              Stack(*simulate_stack(vols["t2"], aff, 1, 4, "slab"), "t2")]
    return build_training_set(stacks, 0.25, CFG.mi_points, 0)


def test_step_limit_and_epoch_limit():
    subject, train = tiny_training_set()
    steps_per_epoch = int(np.ceil(len(train) / CFG.batch_size))
    res = fit_field(train, subject.contrasts, CFG.replace(max_steps=7, early_stopping=False), progress=False)
    assert res.steps == 7 and len(res.epochs) == 1 + (7 - 1) // steps_per_epoch
    res = fit_field(train, subject.contrasts, CFG.replace(max_steps=0, max_epochs=2, early_stopping=False),
                    progress=False)
    assert res.steps == 2 * steps_per_epoch and len(res.epochs) == 2
    assert {"loss_t1", "loss_t2", "lr", "mi", "seconds"} <= set(res.epochs[-1])
    assert len(res.mi_curve) == res.steps // CFG.mi_every


def test_same_seed_same_field_on_cpu():
    subject, train = tiny_training_set()
    cfg = CFG.replace(max_steps=10, early_stopping=False)
    a = fit_field(train, subject.contrasts, cfg, progress=False).field
    b = fit_field(train, subject.contrasts, cfg, progress=False).field
    c = fit_field(train, subject.contrasts, cfg.replace(seed=1), progress=False).field
    x = torch.rand(100, 3) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
        assert not torch.allclose(a(x), c(x))


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
    assert _lr_at(0, 10, 100, cfg) == 1.0 and abs(_lr_at(50, 10, 100, cfg) - 0.5) < 1e-12
    epoch = cfg.replace(lr_schedule="cosine-epoch")
    assert _lr_at(9, 10, 100, epoch) == 1.0  # constant within the first epoch
    assert abs(_lr_at(50, 10, 100, epoch) - 0.5) < 1e-12


def test_time_limit_stops_training():
    subject, train = tiny_training_set()
    res = fit_field(train, subject.contrasts, CFG.replace(max_steps=100000, time_limit_s=1.0, early_stopping=False),
                    progress=False)
    assert res.stopped_by == "time" and 0 < res.steps < 100000 and res.seconds < 5.0


def test_profile_forward_is_the_weighted_mean_along_the_slice():
    subject, train = tiny_training_set()
    field = fit_field(train, subject.contrasts, CFG.replace(max_steps=3, early_stopping=False), progress=False).field
    x = torch.rand(10, 3) * 1.6 - 0.8
    c = torch.tensor([0, 1] * 5)
    offsets = torch.tensor([[0.0, 0.0, -0.1], [0.0, 0.0, 0.05], [0.0, 0.0, 0.2]]).expand(10, 3, 3)
    w = torch.tensor([0.2, 0.5, 0.3]).expand(10, 3)
    with torch.no_grad():
        got = profile_forward(field, x[:, None, :] + offsets, c, w)
        want = sum(w[:, k] * field.forward_own(x + offsets[:, k], c) for k in range(3))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_training_forward_is_profile_forward_and_the_field_in_one_pass():
    subject, train = tiny_training_set()
    x = torch.rand(12, 3) * 1.6 - 0.8
    pts = x[:, None, :] + torch.tensor([[0.0, 0.0, -0.05], [0.0, 0.0, 0.05]])
    w = torch.tensor([0.4, 0.6]).expand(12, 2)
    c = torch.tensor([0, 1, 1] * 4)
    extra = torch.rand(7, 3) * 1.6 - 0.8
    for variant in ("split", "vanilla", "single"):
        cfg = CFG.replace(variant=variant, max_steps=3, early_stopping=False)
        field = fit_field(train, subject.contrasts, cfg, progress=False).field
        with torch.no_grad():
            pred, at_extra = training_forward(field, pts, c, w, extra)
            torch.testing.assert_close(pred, profile_forward(field, pts, c, w), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(at_extra, field(extra), rtol=1e-5, atol=1e-6)


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


def test_bf16_trains_every_variant_and_renders_close_to_fp32():
    subject, train = tiny_training_set()
    grid = Grid((6, 7, 5), np.diag([4.0, 4.0, 4.0, 1.0]))
    for variant in ("split", "vanilla", "single"):
        cfg = CFG.replace(variant=variant, precision="bf16", max_steps=5, early_stopping=False)
        res = fit_field(train, subject.contrasts, cfg, progress=False)
        assert res.steps == 5 and np.isfinite(res.epochs[-1]["loss_t1"])
        kw = dict(normaliser=subject.normaliser, scales=subject.scales)
        full = render_grid(res.field, grid, **kw)["t1"]
        half = render_grid(res.field, grid, **kw, precision="bf16")["t1"]
        # bf16 keeps about 3 significant digits of the network output
        assert np.abs(half - full).max() <= 0.02 * np.abs(full).max() and not np.array_equal(half, full)


def test_callback_time_is_not_counted():
    subject, train = tiny_training_set()
    calls: list[tuple[int, float]] = []

    def slow(step: int, seconds: float, field) -> None:
        calls.append((step, seconds))
        time.sleep(0.05)

    res = fit_field(train, subject.contrasts, CFG.replace(max_steps=20, early_stopping=False), progress=False,
                    callback=slow)
    assert [s for s, _ in calls] == list(range(1, 21))
    assert res.seconds < 20 * 0.05  # one second of sleeping is excluded
    assert all(b >= a for (_, a), (_, b) in zip(calls, calls[1:]))


def test_interrupted_fit_resumes_to_the_uninterrupted_result(tmp_path):
    import signal

    import pytest

    from inrsr.errors import InputError

    subject, train = tiny_training_set()
    cfg = CFG.replace(max_steps=30, early_stopping=False, checkpoint_every_s=1000.0, reg_weight=0.1, reg_points=256)
    state = tmp_path / "fit_state.pt"
    whole = fit_field(train, subject.contrasts, cfg, progress=False, state_path=state)
    assert not state.exists()  # removed once the fit completes

    def interrupt(step: int, seconds: float, field) -> None:
        if step == 17:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit_field(train, subject.contrasts, cfg, progress=False, state_path=state, callback=interrupt)
    assert state.is_file()
    with pytest.raises(InputError, match="--lr"):
        fit_field(train, subject.contrasts, cfg.replace(lr=0.5), progress=False, state_path=state, resume=True)
    resumed = fit_field(train, subject.contrasts, cfg.replace(device="cpu"), progress=False, state_path=state,
                        resume=True)
    assert resumed.steps == 30 and [e["steps"] for e in resumed.epochs] == [e["steps"] for e in whole.epochs]
    x = torch.rand(200, 3) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(resumed.field(x), whole.field(x), rtol=0, atol=0)
    assert [m["mi"] for m in resumed.mi_curve] == [m["mi"] for m in whole.mi_curve]
    assert not state.exists()


def test_coarse_to_fine_schedule_and_detail_weights():
    from inrsr.encodings import detail_weights
    from inrsr.fit import detail_cut_mm

    assert detail_cut_mm(0, 100, 0.5, 16.0, 1.0) == 16.0
    assert abs(detail_cut_mm(25, 100, 0.5, 16.0, 1.0) - 4.0) < 1e-9
    assert detail_cut_mm(50, 100, 0.5, 16.0, 1.0) is None and detail_cut_mm(0, 100, 0.0, 16.0, 1.0) is None
    w = detail_weights(torch.tensor([32.0, 8.0, 4.0, 2.0, 1.0]), 4.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(detail_weights(torch.tensor([2.8284]), 4.0), torch.tensor([0.5]), atol=1e-4, rtol=0)
