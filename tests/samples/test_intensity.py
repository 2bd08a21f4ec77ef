"""Robust per-contrast intensity scaling and its inverse."""

from __future__ import annotations

import numpy as np

from inrsr.samples.intensity import fit_intensity_scale


def test_scale_round_trip_and_robust_to_outliers():
    rng = np.random.default_rng(1)
    vol = np.zeros((30, 30, 30), np.float32)
    vol[5:25, 5:25, 5:25] = rng.uniform(100, 500, size=(20, 20, 20))
    fg = vol > 0
    clean = fit_intensity_scale([vol], [vol[fg]])
    spiked = vol.copy()
    spiked[10, 10, 10] = 1e6  # one hot voxel must not change the scaling
    robust = fit_intensity_scale([spiked], [spiked[fg]])
    assert abs(robust.hi - clean.hi) < 5.0
    assert robust.lo == 0.0
    np.testing.assert_allclose(robust.inverse(robust.forward(spiked)), spiked, rtol=1e-5)
    scaled = clean.forward(vol[fg])
    assert abs(float(np.percentile(scaled, 99.5)) - 1.0) < 1e-3
