"""The fit loop on a tiny phantom: step/epoch/time limits, per-contrast loss, seeded determinism, bf16, callbacks."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from inrsr.fit.loop import fit_field
from inrsr.geometry import Grid
from inrsr.render import render_grid
from tests.fit.conftest import CFG, tiny_training_set


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


def test_time_limit_stops_training():
    subject, train = tiny_training_set()
    res = fit_field(train, subject.contrasts, CFG.replace(max_steps=100000, time_limit_s=1.0, early_stopping=False),
                    progress=False)
    assert res.stopped_by == "time" and 0 < res.steps < 100000 and res.seconds < 5.0


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


def test_a_diverging_fit_stops_with_an_error_naming_the_learning_rate():
    from inrsr.errors import FitError

    subject, train = tiny_training_set()
    cfg = CFG.replace(max_steps=40, early_stopping=False, lr=1e30)
    with pytest.raises(FitError, match=r"the fit diverged: the loss became (nan|inf) at step \d+ .*try a lower --lr"):
        fit_field(train, subject.contrasts, cfg, progress=False)
