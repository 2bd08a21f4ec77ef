"""SMORE's assembly on a volume: an untrained network gives the cubic baseline; the same seed gives
the same result."""

from __future__ import annotations

import numpy as np

from inrsr.baselines.interpolate import interpolate_to_grid
from inrsr.baselines.smore.config import SmoreConfig
from inrsr.baselines.smore.geometry import hr_affine
from inrsr.baselines.smore.network import ResidualSR
from inrsr.baselines.smore.run import smore_native, smore_volume
from inrsr.geometry import Grid
from tests.baselines.conftest import OBLIQUE


def test_untrained_network_gives_the_cubic_baseline(monkeypatch):
    """With an identity network (the untrained one: zero tail), SMORE's assembly — thick axis moved,
    foreground crop, both orientations, intensity scaling, grid — reproduces cubic interpolation."""
    monkeypatch.setattr("inrsr.baselines.smore.run.train_network", lambda pairs, config, device, progress: (
        ResidualSR(config.features, config.blocks).eval(), {"iterations": 0, "train_seconds": 0.0,
                                                             "final_loss": 0.0, "stopped_by": "iterations"}))
    rng = np.random.default_rng(0)
    data = np.zeros((24, 10, 20), np.float32)
    data[3:21, 2:9, 2:18] = rng.uniform(50, 150, size=(18, 7, 16))
    cfg = SmoreConfig(patch_size=8, features=4, blocks=1, device="cpu")
    hr, hr_aff, info = smore_native(data, OBLIQUE, cfg)
    assert info["thick_axis"] == 1 and hr.shape == (24, 33, 20) and hr.dtype == np.float32
    np.testing.assert_allclose(hr_aff, hr_affine(OBLIQUE, 1, info["ratio"]))
    cubic = interpolate_to_grid(data, OBLIQUE, Grid(hr.shape, hr_aff))
    np.testing.assert_allclose(hr, cubic, atol=1e-3 * 150)
    grid = Grid((9, 11, 8), OBLIQUE @ np.diag([2.0, 0.8, 2.0, 1.0]))
    out, _ = smore_volume(data, OBLIQUE, grid, cfg)
    np.testing.assert_allclose(out, interpolate_to_grid(hr, hr_aff, grid), atol=1e-4)


def test_same_seed_same_result():
    rng = np.random.default_rng(1)
    data = np.zeros((30, 30, 8), np.float32)
    data[4:26, 4:26] = rng.uniform(10, 20, size=(22, 22, 8))
    aff = np.diag([1.0, 1.0, 3.0, 1.0])
    grid = Grid((30, 30, 24), np.diag([1.0, 1.0, 1.0, 1.0]))
    cfg = SmoreConfig(patch_size=16, batch_size=4, iterations=6, features=8, blocks=2, device="cpu", threads=2)
    a, info_a = smore_volume(data, aff, grid, cfg)
    b, _ = smore_volume(data, aff, grid, cfg)
    c, _ = smore_volume(data, aff, grid, cfg.replace(seed=1))
    assert info_a["iterations"] == 6 and info_a["stopped_by"] == "iterations"
    assert a.shape == (30, 30, 24) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
