"""Helpers of the fit tests: a tiny phantom training set, a small, fast Fourier-feature config,
and a crop of a shared BraTS subject.

Imported by the test modules of this folder (``from tests.fit.conftest import CFG, tiny_training_set``).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

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


BRATS_CROP = (slice(72, 168), slice(72, 168), slice(40, 104))  # 96×96×64 mm through the tumour and ventricles


def brats_crop(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Data (float32) and affine of :data:`BRATS_CROP` of a shared BraTS volume."""
    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([s.start for s in BRATS_CROP]) + img.affine[:3, 3]
    return np.asarray(img.dataobj, dtype=np.float32)[BRATS_CROP], affine
