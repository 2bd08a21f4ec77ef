"""Spline interpolation baselines: cubic interpolation between the kept slices of a stack."""

from __future__ import annotations

import numpy as np

from inrsr.baselines.interpolate import cubic_between_slices
from inrsr.evaluate.consistency import held_out_slices


def test_cubic_between_slices_is_exact_for_a_cubic_profile():
    z = np.arange(12, dtype=np.float64)
    data = np.broadcast_to(0.01 * z**3 - 0.2 * z**2 + z, (3, 4, 12)).astype(np.float32)
    held = held_out_slices(12, 3)
    pred = cubic_between_slices(data, 2, held)
    np.testing.assert_allclose(pred, data, atol=1e-4)
    noisy = data.copy()
    noisy[:, :, held] = 0.0  # held-out values are never used
    np.testing.assert_allclose(cubic_between_slices(noisy, 2, held), data, atol=1e-4)
