"""Helpers of the fit tests: a tiny phantom training set and a small, fast Fourier-feature config.

Imported by the test modules of this folder (``from tests.fit.conftest import CFG, tiny_training_set``).
"""

from __future__ import annotations

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.config import preset
from inrsr.io.stack import Stack
from inrsr.samples.training_set import build_training_set

CFG = preset("fast", encoding="fourier", n_frequencies=16, width=32, depth=1, head_width=16, batch_size=512, mi_every=5,
             mi_points=2000, threads=1)


def tiny_stacks() -> list[Stack]:
    """A t1 axial and a t2 coronal stack of 4 mm slabs of a small head phantom."""
    vols, aff, _ = head_phantom((32, 36, 32), seed=1)
    return [Stack(*simulate_stack(vols["t1"], aff, 2, 4, "box"), "t1"),
            Stack(*simulate_stack(vols["t2"], aff, 1, 4, "box"), "t2")]


def tiny_training_set():
    return build_training_set(tiny_stacks(), 0.25, CFG.mi_points, 0)
