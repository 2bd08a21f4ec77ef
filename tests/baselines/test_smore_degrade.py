"""SMORE's degradation: where the thick slices sample the rows, the slice profiles, the cubic
interpolation back onto the refined rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inrsr.baselines.smore.config import PROFILES
from inrsr.acquisition.profiles import profile_density
from inrsr.baselines.smore.degrade import degrade_rows, interpolate_rows, profile_weights
from inrsr.baselines.smore.geometry import lr_positions


@pytest.mark.parametrize("ratio", [4.0, 2.5, 1.7])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("thickness_factor", [1.0, 0.5, 1.6])
def test_ramp_is_sampled_at_slab_centres(ratio, profile, thickness_factor):
    """A ramp along the degraded rows, blurred by a symmetric profile and sampled, gives exactly the
    ramp's values at k·r + (r−1)/2 (away from the ends, where the edge row is repeated)."""
    n = 120
    ramp = np.arange(n, dtype=np.float64)[:, None] * np.array([[1.0, -2.0, 0.5]]) + 7.0
    low = degrade_rows(ramp, ratio, thickness_factor * ratio, profile)
    centres = lr_positions(low.shape[0], ratio)
    assert low.shape[0] == math.floor(n / ratio)
    np.testing.assert_allclose(centres[:3], [(ratio - 1) / 2, ratio + (ratio - 1) / 2, 2 * ratio + (ratio - 1) / 2])
    inner = (centres > 12) & (centres < n - 13)
    expected = centres[:, None] * np.array([[1.0, -2.0, 0.5]]) + 7.0
    np.testing.assert_allclose(low[inner], expected[inner], rtol=1e-5, atol=1e-3)  # float32 arithmetic
    # a constant stays constant everywhere, ends included
    np.testing.assert_allclose(degrade_rows(np.full((n, 2), 3.0), ratio, ratio, profile), 3.0, rtol=1e-6)


def test_cubic_back_interpolation_is_the_inverse_position_map():
    """HR row j lies at LR index (j + 0.5)/r − 0.5, so LR samples of a ramp interpolate back to the ramp."""
    ratio, n_lr = 3.3, 40
    lr = lr_positions(n_lr, ratio)[:, None]  # the ramp's values at the LR centres
    n_hr = round(n_lr * ratio)
    back = interpolate_rows(lr, n_hr, ratio)[:, 0]
    # the spline's edge condition (nearest) decays by ~0.27 per LR sample: look 8 samples inside
    inner = slice(round(8 * ratio), n_hr - round(8 * ratio))
    np.testing.assert_allclose(back[inner], np.arange(n_hr)[inner], atol=1e-3)


def test_profile_fwhm_and_area():
    x = np.linspace(-20, 20, 400001)
    dx = x[1] - x[0]
    for fwhm in (4.0, 2.7):
        g = profile_density(x, fwhm, "gaussian")
        np.testing.assert_allclose(profile_density(np.array([fwhm / 2, -fwhm / 2]), fwhm, "gaussian"),
                                   0.5 * profile_density(np.array([0.0]), fwhm, "gaussian")[0], rtol=1e-12)
        assert abs(g.sum() * dx - 1) < 1e-6
        box = profile_density(x, fwhm, "box")
        assert abs(box.sum() * dx - 1) < 1e-3
        support = x[box > 0]
        np.testing.assert_allclose([support.min(), support.max()], [-fwhm / 2, fwhm / 2], atol=2 * dx)
    # the weights of HR rows (profile ⊛ linear-interpolation hat) sum to 1 at any fractional centre
    for centre in (0.0, 0.3, 0.5, 0.77):
        rows = np.arange(-30, 31) - centre
        for profile in PROFILES:
            assert abs(profile_weights(rows, 4.0, profile).sum() - 1) < 1e-9
