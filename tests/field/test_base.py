"""The cubic base the network learns a residual over: geometry, held-out slices, its weight in the field."""

from __future__ import annotations

import numpy as np
import torch

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.baselines.interpolate import interpolate_to_grid
from inrsr.config import preset
from inrsr.field.base import cubic_base
from inrsr.field.network import build_field
from inrsr.geometry import apply_affine, isotropic_grid, rotation_from_vector
from inrsr.io.stack import Stack
from inrsr.jobs.reconstruct import training_set
from inrsr.samples.training_set import describe_subject


def oblique_stacks() -> list[Stack]:
    """A t1 axial and a t2 coronal slab stack of an asymmetric phantom, the t2 stack tilted by 10°."""
    vols, aff, _ = head_phantom((40, 48, 36), seed=5)
    t1 = Stack(*simulate_stack(vols["t1"], aff, 2, 3, "box"), "t1")
    data, a2 = simulate_stack(vols["t2"], aff, 1, 3, "box")
    tilt = np.eye(4)
    tilt[:3, :3] = rotation_from_vector(np.radians([10.0, 0.0, 4.0]))
    return [t1, Stack(data, tilt @ a2, "t2")]


def test_base_reads_back_the_cubic_interpolation_at_its_grid_nodes():
    stacks = oblique_stacks()
    subject = describe_subject(stacks)
    base = cubic_base(stacks, subject)
    grid = isotropic_grid(subject.box, 1.0)
    nodes = np.stack(np.meshgrid(*[np.arange(0, n, 5) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    x = torch.from_numpy(subject.normaliser(apply_affine(grid.affine, nodes)).astype(np.float32))
    got = base(x).numpy()
    for c, s in enumerate(stacks):
        want = subject.scales[s.contrast].forward(interpolate_to_grid(s.data, s.affine, grid))[tuple(nodes.T)]
        np.testing.assert_allclose(got[:, c], want, atol=2e-4)


def test_held_out_slices_cannot_reach_the_base():
    stacks = oblique_stacks()
    subject = describe_subject(stacks)
    held = np.zeros(stacks[0].shape, bool)
    held[:, :, 5] = True
    spoiled = stacks[0].data.copy()
    spoiled[:, :, 5] = 1000.0
    a = cubic_base(stacks, subject, [held, None]).volume
    b = cubic_base([Stack(spoiled, stacks[0].affine, "t1"), stacks[1]], subject, [held, None]).volume
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], cubic_base(stacks, subject).volume[0], atol=1e-3)


def test_a_stack_left_out_whole_leaves_its_contrast_to_the_others():
    stacks = oblique_stacks()
    again = Stack(stacks[1].data * 0.5, stacks[1].affine, "t2")  # a second t2 stack
    subject = describe_subject(stacks + [again])
    with_both = cubic_base(stacks + [again], subject).volume[1]
    left_out = cubic_base(stacks + [again], subject, [None, None, np.ones(again.shape, bool)]).volume[1]
    torch.testing.assert_close(left_out, cubic_base(stacks, subject).volume[1])
    assert not torch.allclose(with_both, left_out)


def test_field_is_its_residual_plus_the_base_and_registering_drops_the_base():
    stacks = oblique_stacks()
    cfg = preset("fast", base="cubic")
    subject, train = training_set(stacks, cfg)
    field = build_field(subject.contrasts, cfg, train.mm_per_unit, train.base)
    x = train.coords[:500]
    with torch.no_grad():
        torch.testing.assert_close(field(x), field.network_output(x) + train.base(x))
        own = field.forward_own(x, train.contrast_id[:500])
        torch.testing.assert_close(own, field(x).gather(1, train.contrast_id[:500, None])[:, 0])
    assert training_set(stacks, cfg.replace(register=True))[1].base is None
    assert training_set(stacks, cfg.replace(base="none"))[1].base is None


def test_base_weight_scales_the_base_only():
    stacks = oblique_stacks()
    cfg = preset("fast", base="cubic")
    subject, train = training_set(stacks, cfg)
    full = build_field(subject.contrasts, cfg, train.mm_per_unit, train.base)
    part = build_field(subject.contrasts, cfg.replace(base_weight=0.3), train.mm_per_unit, train.base)
    x, c = train.coords[:300], train.contrast_id[:300]
    with torch.no_grad():
        torch.testing.assert_close(part.network_output(x), full.network_output(x))  # same seed, same network
        torch.testing.assert_close(part(x), full.network_output(x) + 0.3 * train.base(x))
        torch.testing.assert_close(part.forward_own(x, c), part(x).gather(1, c[:, None])[:, 0])
