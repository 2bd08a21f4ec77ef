"""Shared fixtures: where the real data lives, small helpers to write NIfTI files in temp dirs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.report.browser import CHROMIUM

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "INRSR_DATA"


def data_dir() -> Path:
    """``$INRSR_DATA`` or ``../shared/data`` beside the repository; fails loudly when absent."""
    d = Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data"))
    if not (d / "brats_gli_00001" / "t1c.nii.gz").is_file():
        pytest.fail(f"shared test data not found at {d} (set {DATA_ENV} to the folder holding brats_gli_00001/)",
                    pytrace=False)
    return d


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return data_dir()


def away_from_faces(mask: np.ndarray, voxels: int = 4) -> np.ndarray:
    """``mask`` without its outer ``voxels`` layers along each axis: on a crop, where a field
    extrapolates beyond a stack's outermost slice and cubic copies the edge."""
    inner = np.zeros_like(mask, dtype=bool)
    inner[voxels:-voxels, voxels:-voxels, voxels:-voxels] = True
    return mask & inner


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


# The device the ``cuda``-marked tests run on: CUDA, or the CPU when this variable says ``cpu`` (the
# CPU rehearsal of ``make gpu-check``, which runs those tests' logic where no GPU is present).
GPU_TEST_ENV = "INRSR_GPU_TEST_DEVICE"


def gpu_test_device() -> str:
    """``cuda``, or ``cpu`` when ``$INRSR_GPU_TEST_DEVICE`` asks for the CPU rehearsal."""
    return "cpu" if os.environ.get(GPU_TEST_ENV) == "cpu" else "cuda"


def pytest_collection_modifyitems(config, items):
    """Skip by marker only, with the reason shown by ``-ra``: ``browser`` tests where Chromium is
    not installed, ``cuda`` tests where torch sees no CUDA device (unless the CPU rehearsal is asked
    for); nothing else is ever skipped."""
    import torch

    skips = {}
    if not shutil.which(CHROMIUM):
        skips["browser"] = pytest.mark.skip(
            reason=f"browser: no Chromium at {CHROMIUM} (apt-get install chromium, or set INRSR_CHROMIUM)")
    if gpu_test_device() == "cuda" and not torch.cuda.is_available():
        skips["cuda"] = pytest.mark.skip(reason="cuda: torch sees no CUDA device (these tests run in make gpu-check)")
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)
