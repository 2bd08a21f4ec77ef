"""Mutual information: the histogram estimate's sanity, and the differentiable (Parzen) estimate of registration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrsr.mi import mutual_information, soft_mutual_information


def test_identical_images_give_entropy_and_noise_gives_zero():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=200_000)
    same = mutual_information(a, a, bins=32)
    assert same == pytest.approx(np.log(32), rel=0.01)  # uniform → entropy of 32 equal bins
    assert mutual_information(a, rng.uniform(size=a.size), bins=32) < 0.01
    # a monotonic remapping keeps most information, a shuffled copy keeps none
    assert mutual_information(a, a**2, bins=32) > 0.6 * same
    assert mutual_information(a, rng.permutation(a), bins=32) < 0.01


def test_mi_rejects_unpaired_samples():
    with pytest.raises(ValueError):
        mutual_information(np.zeros(3), np.zeros(4))


def test_soft_mi_is_high_for_dependent_samples_and_differentiable():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5000, generator=g, dtype=torch.float64)
    ones = torch.ones_like(a)
    same = soft_mutual_information(a, 1.0 - a, ones)
    indep = soft_mutual_information(a, torch.rand(5000, generator=g, dtype=torch.float64), ones)
    assert same > 1.5 and indep < 0.2
    b = a.clone().requires_grad_(True)
    soft_mutual_information(a, b, ones).backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    # a zero weight leaves a pair out
    half = torch.cat([torch.ones(2500), torch.zeros(2500)]).double()
    mixed = torch.cat([a[:2500], torch.rand(2500, generator=g, dtype=torch.float64)])
    torch.testing.assert_close(soft_mutual_information(a, mixed, half),
                               soft_mutual_information(a[:2500], a[:2500], ones[:2500]))
