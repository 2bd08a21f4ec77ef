"""Metrics: PSNR/SSIM conventions on known perturbations."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.evaluate.metrics import evaluate, psnr


def test_psnr_known_value():
    assert psnr(np.zeros(100), np.full(100, 0.1)) == pytest.approx(20.0)
    assert psnr(np.ones(4), np.ones(4)) == float("inf")


def test_evaluate_orders_noise_levels_and_ignores_outside_mask():
    rng = np.random.default_rng(0)
    truth = np.zeros((32, 32, 32), np.float32)
    truth[8:24, 8:24, 8:24] = 100 + 50 * rng.uniform(size=(16, 16, 16))
    mask = truth > 0
    small = truth + rng.normal(0, 2, truth.shape).astype(np.float32)
    large = truth + rng.normal(0, 10, truth.shape).astype(np.float32)
    m_small, m_large = evaluate(small, truth, mask), evaluate(large, truth, mask)
    assert m_small["psnr"] > m_large["psnr"] + 10
    assert m_small["ssim"] > m_large["ssim"]
    # main metric: truth's robust range (p0.5–p99.5 inside the mask ≈ 100–150) → σ=2 gives ≈ 28 dB
    assert m_small["psnr"] == pytest.approx(20 * np.log10(50 / 2), abs=0.6)
    outside = small.copy()
    outside[~mask] = 1e4  # garbage outside the mask changes nothing in the main metrics
    m_out = evaluate(outside, truth, mask)
    assert m_out["psnr"] == pytest.approx(m_small["psnr"])
    assert evaluate(truth, truth, mask)["ssim"] == pytest.approx(1.0)


def test_cropped_ssim_equals_the_whole_volume_computation():
    from inrsr.evaluate.metrics import _minmax, _ssim_map

    rng = np.random.default_rng(3)
    truth = rng.normal(1.0, 0.3, (40, 44, 36)).astype(np.float32)
    pred = truth + rng.normal(0, 0.1, truth.shape).astype(np.float32)
    mask = np.zeros(truth.shape, bool)
    mask[12:25, 15:30, 10:22] = True
    got = evaluate(pred, truth, mask)
    lo, hi = np.percentile(truth[mask], [0.5, 99.5])
    p, t = (pred - lo) / (hi - lo), (truth - lo) / (hi - lo)
    pp, tp = _minmax(pred) * mask, _minmax(truth) * mask
    assert got["ssim"] == pytest.approx(float(_ssim_map(t, p)[mask].mean()), abs=1e-9)
    assert got["ssim_paper"] == pytest.approx(float(_ssim_map(tp, pp).mean()), abs=1e-9)
    assert got["psnr_paper"] == pytest.approx(psnr(pp, tp), abs=1e-6)
