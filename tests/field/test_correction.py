"""Data consistency: back-projected residuals make the field reproduce its stacks' voxels."""

from __future__ import annotations

import numpy as np
import torch

from inrsr.acquisition.forward import resimulate
from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.profiles import half_support_voxels
from inrsr.acquisition.simulate import simulate_stack
from inrsr.config import preset
from inrsr.field.correction import StackResiduals
from inrsr.field.correction import stack_residuals
from inrsr.fit.loop import fit_field
from inrsr.geometry import Normaliser
from inrsr.geometry import normalised_to_voxel_matrix
from inrsr.io.stack import Stack
from inrsr.samples.training_set import build_training_set

IDENTITY = Normaliser(np.zeros(3), 1.0)  # normalised coordinates = world mm


def residuals_of(volumes: list[np.ndarray], affines: list[np.ndarray], contrasts: list[int], halves: list[float],
                 n_contrasts: int) -> StackResiduals:
    return StackResiduals(
        [torch.from_numpy(v.astype(np.float32)) for v in volumes],
        [torch.from_numpy(normalised_to_voxel_matrix(a, IDENTITY).astype(np.float32)) for a in affines],
        torch.tensor([[c, 2, h] for c, h in zip(contrasts, halves)], dtype=torch.float32), n_contrasts,
    )


def at(module: StackResiduals, points_mm: list[list[float]]) -> np.ndarray:
    return module(torch.tensor(points_mm, dtype=torch.float32)).numpy()


def test_thin_slices_are_corrected_only_where_they_measured():
    # 3 slices 4 mm apart along z, 1 mm thick; residual = slice index + 1 everywhere in the slice
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    vol = np.broadcast_to(np.arange(1.0, 4.0), (5, 5, 3)).copy()
    thin = residuals_of([vol], [affine], [0], [half_support_voxels("box", 1.0, 4.0)], 1)
    got = at(thin, [[2, 2, 4.0], [2, 2, 4.4], [2, 2, 5.0], [2, 2, 6.0], [2.5, 1.5, 8.3], [2, 2, 11.0], [2, 9, 4.0]])
    np.testing.assert_allclose(got[:, 0], [2.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0], atol=1e-6)
    tiled = residuals_of([vol], [affine], [0], [half_support_voxels("box", 4.0, 4.0)], 1)
    got = at(tiled, [[2, 2, 5.9], [2, 2, 6.1], [2, 2, -1.9], [2, 2, 9.9], [2, 2, 10.1]])
    np.testing.assert_allclose(got[:, 0], [2.0, 3.0, 1.0, 3.0, 0.0], atol=1e-6)
    point = residuals_of([vol], [affine], [0], [half_support_voxels("point", 4.0, 4.0)], 1)
    got = at(point, [[2, 2, 4.0], [2, 2, 5.0], [2, 2, 6.0]])
    np.testing.assert_allclose(got[:, 0], [2.0, 2.25, 2.5], atol=1e-6)


def test_stacks_of_one_contrast_are_averaged_where_they_overlap():
    a = np.diag([1.0, 1.0, 4.0, 1.0])
    b = a.copy()
    b[0, 3] = 4.0  # the second stack starts 4 mm further along x
    ones, threes = np.ones((5, 5, 3)), np.full((5, 5, 3), 3.0)
    both = residuals_of([ones, threes], [a, b], [1, 1], [0.5, 0.5], 2)
    got = at(both, [[1.0, 2, 4], [4.0, 2, 4], [8.0, 2, 4]])
    np.testing.assert_allclose(got[:, 1], [1.0, 2.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(got[:, 0], 0.0)


def test_the_correction_stays_within_the_measured_range():
    """A point moved by its residual beyond its contrast's range stops at the range's edge, or at
    the uncorrected field where that is already beyond it; with no bounds (models saved before
    them), the residual is added as it is."""
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    residual = np.broadcast_to(np.array([0.5, -0.5, 0.2]), (5, 5, 3)).copy()  # per slice
    module = residuals_of([residual], [affine], [0], [half_support_voxels("box", 4.0, 4.0)], 1)
    x = torch.tensor([[2.0, 2.0, 0.0], [2.0, 2.0, 4.0], [2.0, 2.0, 8.0], [2.0, 2.0, 0.0], [2.0, 2.0, 4.0]])
    plain = torch.tensor([[0.8], [0.3], [0.5], [1.2], [-0.4]])
    np.testing.assert_allclose(module.corrected(plain, x).numpy()[:, 0], [1.3, -0.2, 0.7, 1.7, -0.9], atol=1e-6)
    module.bounds = torch.tensor([[0.0, 1.0]])
    np.testing.assert_allclose(module.corrected(plain, x).numpy()[:, 0], [1.0, 0.0, 0.7, 1.2, -0.4], atol=1e-6)
    own = module.corrected(plain[:, 0], x, torch.zeros(5, dtype=torch.int64))
    np.testing.assert_allclose(own.numpy(), [1.0, 0.0, 0.7, 1.2, -0.4], atol=1e-6)


def test_the_corrected_field_reproduces_every_foreground_voxel_of_tiled_slabs():
    vols, aff, _ = head_phantom((40, 48, 40), seed=5)
    stacks = [Stack(*simulate_stack(vols["t1"], aff, 2, 4, "box"), "t1"),
              Stack(*simulate_stack(vols["t2"], aff, 1, 4, "box"), "t2")]
    cfg = preset("fast", max_steps=40, early_stopping=False, threads=1, base="none")
    subject, train = build_training_set(stacks, cfg.background_ratio, cfg.mi_points, 0, cfg.slice_profile,
                                        cfg.profile_points)
    field = fit_field(train, subject.contrasts, cfg, progress=False).field
    before = [resimulate(field, s, subject, cfg) for s in stacks]
    field.correction = stack_residuals(field, stacks, subject, cfg)
    bounds = field.correction.bounds
    for c, s in enumerate(stacks):  # each contrast's measured range, in network units
        measured = subject.scales[s.contrast].forward(s.data[subject.foregrounds[c][0]])
        np.testing.assert_allclose(bounds[c].numpy(), [measured.min(), measured.max()], rtol=1e-6)
    field.correction.bounds = None  # unbounded: every foreground voxel exactly
    for s, (mask, _), raw in zip(stacks, subject.foregrounds, before):
        after = resimulate(field, s, subject, cfg)
        span = float(np.ptp(s.data))
        assert np.abs(raw[mask] - s.data[mask]).max() > 0.05 * span  # 40 steps leave visible residuals
        np.testing.assert_allclose(after[mask], s.data[mask], atol=1e-4 * span)
        np.testing.assert_allclose(after[~mask], raw[~mask], atol=1e-4 * span)  # background left as it was
    # bounded: all but the voxels whose slices the correction would take beyond the range
    field.correction.bounds = bounds
    for s, (mask, _) in zip(stacks, subject.foregrounds):
        exact = np.abs(resimulate(field, s, subject, cfg)[mask] - s.data[mask]) <= 1e-4 * float(np.ptp(s.data))
        assert 0.9 < exact.mean() < 1.0  # a 40-step field; many dark voxels sit at the range's low end
    points = torch.rand(20000, 3, generator=torch.Generator().manual_seed(0)) * 2.0 - 1.0
    with torch.no_grad():
        corrected = field(points)
        with field.without_correction():
            plain = field(points)
    lo, hi = bounds[:, 0], bounds[:, 1]
    assert (corrected >= torch.minimum(lo, plain) - 1e-6).all() and (corrected <= torch.maximum(hi, plain) + 1e-6).all()
    # residuals are taken from the network alone: recomputing them with a correction in place changes nothing
    again = stack_residuals(field, stacks, subject, cfg)
    for k in range(2):
        torch.testing.assert_close(getattr(again, f"residual_{k}"), getattr(field.correction, f"residual_{k}"))
