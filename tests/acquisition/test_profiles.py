"""Slice profiles: the point/box/gaussian quadrature across a thick voxel and each profile's support."""

from __future__ import annotations

import numpy as np

from inrsr.acquisition.profiles import half_support_voxels, profile_quadrature


def test_box_profile_is_the_mean_of_equal_sub_slices():
    pos, w = profile_quadrature("box", 4.0, 4)
    np.testing.assert_allclose(pos, [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(w, 0.25)


def test_gaussian_profile_has_fwhm_equal_to_thickness():
    pos, w = profile_quadrature("gaussian", 3.0, 6)
    np.testing.assert_allclose(pos, -pos[::-1])
    assert abs(w.sum() - 1.0) < 1e-12 and np.all(np.diff(w[:3]) > 0)
    # w ∝ exp(-4 ln2 (x / FWHM)²): half the peak at x = FWHM / 2
    np.testing.assert_allclose(w / w.max(), np.exp(-4 * np.log(2) * (pos / 3.0) ** 2) / np.exp(-4 * np.log(2) * (pos[2] / 3.0) ** 2))
    assert profile_quadrature("point", 3.0, 6)[0].tolist() == [0.0]


def test_support_follows_the_profile_quadrature():
    assert half_support_voxels("box", 4.0, 4.0) == 0.5
    assert half_support_voxels("box", 1.0, 4.0) == 0.125
    assert half_support_voxels("gaussian", 2.0, 4.0) == 0.25
    assert half_support_voxels("point", 4.0, 4.0) < 0


def test_profile_names_one_vocabulary_and_the_former_slab():
    import warnings

    import pytest

    from inrsr.acquisition.profiles import PROFILES, profile_name
    from inrsr.errors import InputError, InputWarning

    assert PROFILES == ("point", "box", "gaussian")
    for name in PROFILES:
        assert profile_name(name) == name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert profile_name("slab") == "box"
    assert [w.category for w in caught] == [InputWarning]
    assert "former name" in str(caught[0].message) and "box" in str(caught[0].message)
    with pytest.raises(InputError, match="--profile must be one of point, box"):
        profile_name("sinc")
    with pytest.raises(InputError, match="must be one of point, box, got 'gaussian'"):
        profile_name("gaussian", allowed=("point", "box"))
