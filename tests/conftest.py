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


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def pytest_collection_modifyitems(config, items):
    """Tests marked ``browser`` are skipped, by their marker and with the reason shown by ``-ra``,
    where Chromium is not installed; nothing else is ever skipped."""
    if shutil.which(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"browser: no Chromium at {CHROMIUM} (apt-get install chromium, or set INRSR_CHROMIUM)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
