"""``model.pt``: a saved field (network, cubic base, back-projected residuals) and its subject load back
exactly; files that are not models are refused with one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.config import preset
from inrsr.errors import InputError
from inrsr.field.base import cubic_base
from inrsr.field.checkpoint import load_checkpoint, save_checkpoint
from inrsr.field.correction import stack_residuals
from inrsr.field.network import build_field
from inrsr.io.nifti import HeaderCodes
from inrsr.io.stack import Stack
from inrsr.samples.training_set import build_training_set

CFG = preset("fast", grid_levels=4, grid_log2_table=12, width=16, head_width=16, threads=1)


def tiny_stacks() -> list[Stack]:
    vols, aff, _ = head_phantom((24, 28, 24), seed=1)
    return [Stack(*simulate_stack(vols["t1"], aff, 2, 4, "box"), "t1"),
            Stack(*simulate_stack(vols["t2"], aff, 1, 4, "box"), "t2")]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small field with a cubic base, perturbed weights (so that a freshly built field differs) and
    back-projected residuals, saved with its subject."""
    stacks = tiny_stacks()
    subject, _ = build_training_set(stacks, CFG.background_ratio, CFG.mi_points, 0, CFG.slice_profile,
                                    CFG.profile_points)
    field = build_field(subject.contrasts, CFG, subject.normaliser.scale_mm, cubic_base(stacks, subject))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in field.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    field.correction = stack_residuals(field, stacks, subject, CFG)
    field.eval()
    codes = HeaderCodes(qform_code=2, sform_code=4)
    folder = tmp_path_factory.mktemp("model")
    described = [{"path": str(folder / f"{s.contrast}.nii.gz"), "contrast": s.contrast, "shape": list(s.shape),
                  "affine": s.affine.tolist()} for s in stacks]
    path = save_checkpoint(folder / "model.pt", field, CFG, subject, codes, described)
    return path, field, subject, codes, described


def test_loaded_field_gives_the_same_outputs(saved):
    path, field, subject, _, _ = saved
    loaded, config, _, _, _ = load_checkpoint(path)
    assert loaded is not field and not loaded.training
    assert loaded.base is not None and loaded.correction is not None
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    with torch.no_grad():
        want = field(x)
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=0)
        torch.testing.assert_close(loaded.network_output(x), field.network_output(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded.correction(x), field.correction(x), rtol=0, atol=0)
        assert loaded.correction(x).abs().max() > 0  # the residuals are part of what was compared
        # the weights came from the file: the same config builds a different field
        fresh = build_field(subject.contrasts, config, subject.normaliser.scale_mm, loaded.base)
        assert not torch.allclose(fresh.network_output(x), want)


def test_a_model_saved_without_correction_bounds_loads_unbounded(tmp_path, saved):
    """Models written before the correction kept to the measured range have no ``bounds``: they
    load, and their residuals are added as they are."""
    path, field, subject, codes, described = saved
    assert field.correction.bounds is not None
    bounds, field.correction.bounds = field.correction.bounds, None
    try:
        older = save_checkpoint(tmp_path / "model.pt", field, CFG, subject, codes, described)
    finally:
        field.correction.bounds = bounds
    loaded = load_checkpoint(older)[0]
    assert loaded.correction is not None and loaded.correction.bounds is None
    x = torch.rand(2000, 3, generator=torch.Generator().manual_seed(1)) * 1.8 - 0.9
    with torch.no_grad(), loaded.without_correction():
        plain = loaded(x)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), plain + loaded.correction(x), rtol=0, atol=1e-6)


def test_loaded_config_subject_and_codes_are_the_saved_ones(saved):
    path, _, subject, codes, described = saved
    _, config, got, got_codes, payload = load_checkpoint(path)
    assert config == CFG
    assert got.contrasts == subject.contrasts == ["t1", "t2"]
    np.testing.assert_array_equal(got.normaliser.centre_mm, subject.normaliser.centre_mm)
    assert got.normaliser.scale_mm == subject.normaliser.scale_mm
    assert got.scales == subject.scales
    for k in ("rotation", "lo_mm", "hi_mm"):
        np.testing.assert_array_equal(getattr(got.box, k), getattr(subject.box, k))
    assert len(got.foregrounds) == len(subject.foregrounds) == 2
    for (mask, affine), (want_mask, want_affine) in zip(got.foregrounds, subject.foregrounds):
        assert mask.dtype == bool and mask.any()
        np.testing.assert_array_equal(mask, want_mask)
        np.testing.assert_array_equal(affine, want_affine)
    assert got_codes == codes
    # each stack's path is also kept relative to the model's folder, so that a moved folder finds its inputs
    assert payload["stacks"] == [{**d, "path_from_model": f"{d['contrast']}.nii.gz"} for d in described]


def test_files_that_are_not_models_are_refused(tmp_path, saved):
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(InputError, match="notes.pt: not an inrsr model file"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "state_dict": {}}, other)
    with pytest.raises(InputError, match="other.pt: not an inrsr model file"):
        load_checkpoint(other)
    with pytest.raises(InputError, match="model file not found"):
        load_checkpoint(tmp_path / "none.pt")
