"""The in-memory reconstruction: training set → fit → data consistency, with and without registration,
and when a fit learns a residual over the cubic base (``--base auto``)."""

from __future__ import annotations

import numpy as np
import pytest

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack, simulated_thickness_mm
from inrsr.config import preset
from inrsr.io.stack import Stack
from inrsr.jobs.reconstruct import reconstruct, training_set, uses_base

CFG = preset("fast", grid_levels=4, grid_log2_table=12, width=16, head_width=16, batch_size=1024, max_steps=20,
             data_consistency=True, device="cpu", threads=1)


@pytest.fixture(scope="module")
def stacks() -> list[Stack]:
    vols, aff, _ = head_phantom((24, 28, 24), seed=1)
    return [Stack(*simulate_stack(vols["t1"], aff, 2, 4, "box"), "t1"),
            Stack(*simulate_stack(vols["t2"], aff, 1, 4, "box"), "t2")]


def test_reconstruct_fits_and_adds_the_back_projected_residuals(stacks):
    recon = reconstruct(stacks, CFG)
    assert recon.fit.steps == 20 and recon.fit.field is recon.field
    assert recon.consistency_s > 0 and recon.field.correction is not None
    assert recon.field.base is not None  # the fast preset fits over the cubic base
    assert recon.matrices is None and all(a is b for a, b in zip(recon.stacks, stacks))
    assert recon.subject.contrasts == ["t1", "t2"] and len(recon.train) > 0


def test_without_data_consistency_the_field_has_no_correction(stacks):
    prepared = training_set(stacks, CFG)
    recon = reconstruct(stacks, CFG.replace(data_consistency=False), prepared=prepared)
    assert recon.fit.steps == 20 and recon.train is prepared[1] and recon.subject is prepared[0]
    assert recon.field.correction is None and recon.consistency_s == 0.0


def test_registration_places_the_stacks_where_the_fit_found_them(stacks):
    recon = reconstruct(stacks, CFG.replace(register=True))
    assert recon.field.base is None  # no base when the stacks move
    assert recon.matrices is not None and len(recon.matrices) == 2
    np.testing.assert_allclose(recon.matrices[0], np.eye(4), atol=1e-6)  # the reference stack never moves
    for s, moved, m, (_, fg_affine) in zip(stacks, recon.stacks, recon.matrices, recon.subject.foregrounds):
        np.testing.assert_allclose(moved.affine, m @ s.affine, atol=1e-9)
        np.testing.assert_array_equal(fg_affine, moved.affine)
    assert recon.field.correction is not None


def test_auto_base_only_where_slices_leave_gaps():
    vols, aff, _ = head_phantom((40, 48, 36), seed=5)
    cfg = preset("default", base="auto")
    slabs = [Stack(*simulate_stack(vols["t1"], aff, 2, 3, "box"), "t1",
                   thickness_mm=simulated_thickness_mm(aff, 2, 3, "box")),
             Stack(*simulate_stack(vols["t2"], aff, 1, 3, "box"), "t2")]
    assert slabs[0].slice_thickness_mm == 3.0 and not uses_base(cfg, slabs)
    thin = Stack(*simulate_stack(vols["t2"], aff, 1, 3, "point"), "t2",
                 thickness_mm=simulated_thickness_mm(aff, 1, 3, "point"))
    assert thin.slice_thickness_mm == 1.0 and uses_base(cfg, [slabs[0], thin])
    assert training_set([slabs[0], thin], cfg)[1].base is not None
    assert not uses_base(cfg.replace(register=True), [slabs[0], thin])
    assert uses_base(cfg.replace(base="cubic"), slabs) and not uses_base(cfg.replace(base="none"), [thin])
