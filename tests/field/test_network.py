"""Field variants: shapes, split-head gradient isolation, forward_own, determinism."""

from __future__ import annotations

import torch

from inrsr.config import preset
from inrsr.field.encodings import FourierFeatures
from inrsr.field.network import build_field

CFG = preset("fast", n_frequencies=16, width=32, depth=2, head_width=16, encoding="fourier")
MM = 100.0  # mm per normalised unit


def grads(module):
    return [p.grad for p in module.parameters()]


def test_split_head_gradient_isolation():
    field = build_field(["t1", "t2", "flair"], CFG.replace(variant="split"), MM)
    x = torch.rand(64, 3) * 2 - 1
    field(x)[:, 0].pow(2).mean().backward()  # a loss on contrast 0 only
    assert all(g is not None and g.abs().sum() > 0 for g in grads(field.heads[0]))
    assert all(g is not None and g.abs().sum() > 0 for g in grads(field.trunk))
    for other in (field.heads[1], field.heads[2]):
        assert all(g is None or g.abs().sum() == 0 for g in grads(other))


def test_split_heads_in_one_product_equal_each_head_in_turn():
    field = build_field(["t1", "t2", "flair"], CFG.replace(variant="split"), MM)
    x = torch.rand(50, 3) * 2 - 1
    with torch.no_grad():
        h = field.trunk(field.encoding(x))
        one_by_one = torch.cat([head(h) for head in field.heads], dim=1)
        torch.testing.assert_close(field.network_output(x), one_by_one, rtol=1e-5, atol=1e-6)


def test_single_variant_networks_are_independent():
    field = build_field(["t1", "t2"], CFG.replace(variant="single"), MM)
    x = torch.rand(64, 3) * 2 - 1
    field.forward_own(x, torch.zeros(64, dtype=torch.long)).sum().backward()
    assert all(g is None or g.abs().sum() == 0 for g in grads(field.trunks[1]))
    assert all(g is not None for g in grads(field.trunks[0]))


def test_vanilla_shares_one_output_layer():
    field = build_field(["t1", "t2"], CFG.replace(variant="vanilla"), MM)
    assert field.out.out_features == 2
    assert field(torch.zeros(5, 3)).shape == (5, 2)


def test_forward_own_equals_gather_of_forward():
    x = torch.rand(100, 3) * 2 - 1
    c = torch.randint(0, 2, (100,))
    for variant in ("split", "vanilla", "single"):
        field = build_field(["a", "b"], CFG.replace(variant=variant), MM)
        full = field(x).gather(1, c[:, None])[:, 0]
        torch.testing.assert_close(field.forward_own(x, c), full, rtol=1e-5, atol=1e-6)


def test_fourier_features_and_seeded_init():
    enc = FourierFeatures(8, 4.0, torch.Generator().manual_seed(0))
    y = enc(torch.zeros(3, 3))
    assert y.shape == (3, 16)
    torch.testing.assert_close(y[:, :8], torch.zeros(3, 8))  # sin(0)
    torch.testing.assert_close(y[:, 8:], torch.ones(3, 8))  # cos(0)
    a, b = build_field(["t1"], CFG, MM), build_field(["t1"], CFG, MM)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb)


def test_paper_preset_is_the_reference_architecture():
    cfg = preset("paper")
    field = build_field(["t1", "t2"], cfg, MM)
    assert field.encoding.B.shape == (256, 3)
    assert abs(float(field.encoding.B.std()) - 4.0) < 0.4
    linears = [m for m in field.trunk if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 1024)] + [(1024, 1024)] * 4
    head = [m for m in field.heads[0] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in head] == [(1024, 512), (512, 1)]
    assert (cfg.lr, cfg.batch_size, cfg.max_epochs, cfg.lr_schedule) == (4e-4, 1000, 50, "cosine-epoch")
