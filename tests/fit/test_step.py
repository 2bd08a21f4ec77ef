"""One training step's forward pass: the slice-profile forward model and the field at extra points."""

from __future__ import annotations

from dataclasses import replace

import torch

from inrsr.acquisition.forward import profile_forward
from inrsr.field.base import BaseVolume
from inrsr.fit.loop import fit_field, step_data
from inrsr.fit.step import training_forward, voxel_base_sums
from tests.fit.conftest import CFG, tiny_training_set


def test_profile_forward_is_the_weighted_mean_along_the_slice():
    subject, train = tiny_training_set()
    field = fit_field(train, subject.contrasts, CFG.replace(max_steps=3, early_stopping=False), progress=False).field
    x = torch.rand(10, 3) * 1.6 - 0.8
    c = torch.tensor([0, 1] * 5)
    offsets = torch.tensor([[0.0, 0.0, -0.1], [0.0, 0.0, 0.05], [0.0, 0.0, 0.2]]).expand(10, 3, 3)
    w = torch.tensor([0.2, 0.5, 0.3]).expand(10, 3)
    with torch.no_grad():
        got = profile_forward(field, x[:, None, :] + offsets, c, w)
        want = sum(w[:, k] * field.forward_own(x + offsets[:, k], c) for k in range(3))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_training_forward_is_profile_forward_and_the_field_in_one_pass():
    subject, train = tiny_training_set()
    x = torch.rand(12, 3) * 1.6 - 0.8
    pts = x[:, None, :] + torch.tensor([[0.0, 0.0, -0.05], [0.0, 0.0, 0.05]])
    w = torch.tensor([0.4, 0.6]).expand(12, 2)
    c = torch.tensor([0, 1, 1] * 4)
    extra = torch.rand(7, 3) * 1.6 - 0.8
    for variant in ("split", "vanilla", "single"):
        cfg = CFG.replace(variant=variant, max_steps=3, early_stopping=False)
        field = fit_field(train, subject.contrasts, cfg, progress=False).field
        with torch.no_grad():
            pred, at_extra = training_forward(field, pts, c, w, extra)
            torch.testing.assert_close(pred, profile_forward(field, pts, c, w), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(at_extra, field(extra), rtol=1e-5, atol=1e-6)


def test_precomputed_base_sums_give_the_prediction_that_samples_the_base():
    """With a base, :func:`voxel_base_sums` read for a batch give the same predictions and extra
    values as sampling the base at the profile points, and differ from leaving the base out."""
    subject, train = tiny_training_set()
    base = BaseVolume(torch.rand(2, 9, 10, 11, generator=torch.Generator().manual_seed(3)), torch.eye(3, 4) * 0.9)
    train = replace(train, base=base)
    cfg = CFG.replace(base="cubic", base_weight=0.4, max_steps=3, early_stopping=False)
    field = fit_field(train, subject.contrasts, cfg, progress=False).field
    data = step_data(train, len(subject.contrasts), cfg, torch.device("cpu"), False)
    sums = voxel_base_sums(field, data)
    idx = torch.arange(0, len(train), 5)[:400]
    s, c = data.stack_id[idx], data.contrast_id[idx]
    pts, w = data.coords[idx][:, None, :] + data.offsets[s], data.weights[s]
    extra = torch.rand(30, 3) * 1.6 - 0.8
    with torch.no_grad():
        want, want_extra = training_forward(field, pts, c, w, extra)
        got, got_extra = training_forward(field, pts, c, w, extra, sums[idx])
        field.base = None
        without, _ = training_forward(field, pts, c, w, extra)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_extra, want_extra)
    assert (want - without).abs().mean() > 0.05
