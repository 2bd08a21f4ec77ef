"""SMORE's geometry: the slice profile's width from the thickness, the refined (HR) grid of an oblique
stack, and the checks that refuse unsuitable volumes."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.baselines.interpolate import interpolate_to_grid
from inrsr.baselines.smore.config import SmoreConfig
from inrsr.baselines.smore.degrade import interpolate_rows
from inrsr.baselines.smore.geometry import check_volume, hr_affine
from inrsr.errors import InputError
from inrsr.geometry import Grid, apply_affine, fov_corners_world, voxel_sizes_mm
from tests.baselines.conftest import OBLIQUE, ROT


def test_thickness_sets_the_profile_width():
    cfg = SmoreConfig(patch_size=16)
    geom = check_volume((40, 40, 10), np.diag([0.5, 0.5, 2.0, 1.0]), cfg)
    assert (geom.thick_axis, geom.ratio, geom.thickness_mm, geom.fwhm_px, geom.n_hr) == (2, 4.0, 2.0, 4.0, 40)
    gap = check_volume((40, 40, 10), np.diag([0.5, 0.5, 2.0, 1.0]), cfg.replace(thickness_mm=1.0))
    assert (gap.thickness_mm, gap.fwhm_px) == (1.0, 2.0)  # 1 mm slices with 1 mm gaps


def test_hr_grid_covers_the_slab_extent():
    cfg = SmoreConfig(patch_size=8)
    shape = (20, 10, 18)
    geom = check_volume(shape, OBLIQUE, cfg)
    assert geom.thick_axis == 1 and geom.inplane_axes == (0, 2)
    r = geom.ratio
    np.testing.assert_allclose(r, 3.3 / 1.01)
    hr = hr_affine(OBLIQUE, 1, r)
    hr_shape = (20, geom.n_hr, 18)
    assert geom.n_hr == round(10 * r) == 33
    np.testing.assert_allclose(voxel_sizes_mm(hr), [1.0, 1.01, 1.02])
    np.testing.assert_allclose(hr[:3, [0, 2]], OBLIQUE[:3, [0, 2]])
    # the first HR row's centre is half an HR row inside the first slice's slab
    first = apply_affine(OBLIQUE, [0, -0.5, 0]) + ROT[:, 1] * 1.01 / 2
    np.testing.assert_allclose(apply_affine(hr, [0, 0, 0]), first, atol=1e-9)
    # HR row j of the slab k covers k·r … (k+1)·r: the centre of slice k is HR position k·r + (r−1)/2
    for k in (0, 3, 9):
        np.testing.assert_allclose(apply_affine(hr, [2, k * r + (r - 1) / 2, 5]), apply_affine(OBLIQUE, [2, k, 5]),
                                   atol=1e-9)
    # the grid spans the stack's field of view (to round(n·r) rows: within half an HR row)
    corners = lambda s, a: fov_corners_world(s, a) @ ROT  # noqa: E731
    lo, hi = corners(hr_shape, hr).min(0), corners(hr_shape, hr).max(0)
    lo0, hi0 = corners(shape, OBLIQUE).min(0), corners(shape, OBLIQUE).max(0)
    np.testing.assert_allclose(lo[[0, 2]], lo0[[0, 2]], atol=1e-9)
    np.testing.assert_allclose(hi[[0, 2]], hi0[[0, 2]], atol=1e-9)
    np.testing.assert_allclose([lo[1], hi[1]], [lo0[1], hi0[1]], atol=0.5 * 1.01 + 1e-9)


def test_linear_field_survives_the_round_trip():
    """A field linear in world position, sampled on the stack, pre-interpolated along the thick axis on
    the HR grid and resampled to an isotropic grid, is the same linear field (away from the ends,
    where the spline's nearest-edge condition decays by ~0.27 per sample: 8 samples inside)."""
    shape = (26, 24, 24)
    r = 3.3 / 1.01
    field = lambda pts: pts @ np.array([0.3, -1.2, 0.7]) + 5.0  # noqa: E731
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    data = field(apply_affine(OBLIQUE, idx)).astype(np.float32)
    n_hr = round(24 * r)
    up = interpolate_rows(data, n_hr, r)  # the thick axis 1 is the rows axis (-2) of this array
    hr = hr_affine(OBLIQUE, 1, r)
    hidx = np.stack(np.meshgrid(*[np.arange(n) for n in up.shape], indexing="ij"), axis=-1)
    inner = (slice(None), slice(round(8 * r), n_hr - round(8 * r)), slice(None))
    np.testing.assert_allclose(up[inner], field(apply_affine(hr, hidx))[inner], rtol=1e-5, atol=2e-3)
    # the same values as the cubic baseline on that grid (same spline, same edge rule)
    np.testing.assert_allclose(up, interpolate_to_grid(data, OBLIQUE, Grid(up.shape, hr)), atol=2e-3)
    # and on to a 1.5 mm isotropic grid inside the stack
    iso = np.eye(4)
    iso[:3, :3] = ROT * 1.5
    iso[:3, 3] = apply_affine(OBLIQUE, [8, 8, 8])
    out = interpolate_to_grid(up, hr, Grid((6, 10, 6), iso))
    oidx = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), axis=-1)
    np.testing.assert_allclose(out, field(apply_affine(iso, oidx)), rtol=1e-5, atol=2e-3)


def test_errors_for_unsuitable_volumes():
    cfg = SmoreConfig()
    with pytest.raises(InputError) as e:
        check_volume((64, 64, 60), np.diag([1.0, 1.0, 1.1, 1.0]), cfg)
    assert str(e.value) == ("not anisotropic: slice spacing 1.1 mm is 1.1× the in-plane spacing 1 mm "
                            "(SMORE needs at least 1.2×)")
    with pytest.raises(InputError) as e:
        check_volume((64, 64, 20), np.diag([1.0, 1.1, 4.0, 1.0]), cfg)
    assert str(e.value) == ("in-plane spacings 1 mm and 1.1 mm differ by more than 5% "
                            "(SMORE needs square in-plane pixels)")
    with pytest.raises(InputError) as e:
        check_volume((64, 24, 20), np.diag([1.0, 1.0, 4.0, 1.0]), cfg)
    assert str(e.value) == ("in-plane size 64×24 voxels is smaller than the training patch "
                            "(32 voxels; use a smaller --patch)")
    with pytest.raises(InputError) as e:
        check_volume((64, 64, 1), np.diag([1.0, 1.0, 4.0, 1.0]), cfg)
    assert str(e.value) == "only 1 slice along the thick axis 2; SMORE needs at least 2"
    with pytest.raises(InputError) as e:
        check_volume((64, 64, 8), np.diag([1.0, 1.0, 20.0, 1.0]), cfg)
    assert str(e.value) == "slice ratio 20 is too large for --patch 32 (a patch must hold at least 2 thick slices)"
    with pytest.raises(InputError, match="--patch must be at least 8"):
        SmoreConfig(patch_size=4).validate()
    with pytest.raises(InputError, match="--profile must be one of gaussian, box"):
        SmoreConfig(profile="sinc").validate()
