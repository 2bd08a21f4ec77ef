"""Tiny BIDS datasets written in temp dirs: small random NIfTIs (thick 2D runs of 16×16×4 voxels at
1×1×4 mm, isotropic 3D runs of 16³ at 1 mm) with the sidecars a scanner would write."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

THICK_AXIAL = ((16, 16, 4), (1.0, 1.0, 4.0))
THICK_CORONAL = ((16, 4, 16), (1.0, 4.0, 1.0))
ISOTROPIC = ((16, 16, 16), (1.0, 1.0, 1.0))


def write_nifti(path: Path, shape: tuple[int, ...], spacing_mm: tuple[float, ...]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*(list(spacing_mm) + [1.0, 1.0])[:3], 1.0])
    data = np.random.default_rng(len(str(path))).random(shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_json(path: Path, content: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def make_dataset(root: Path, images: dict[str, tuple], sidecars: dict[str, object] | None = None,
                 description: dict | None = None) -> Path:
    """A BIDS dataset at ``root``: ``images`` maps a relative path to (shape, spacing), ``sidecars``
    a relative JSON path to its content."""
    write_json(root / "dataset_description.json", description or {"Name": "tiny", "BIDSVersion": "1.10.0"})
    for rel, (shape, spacing) in images.items():
        write_nifti(root / rel, shape, spacing)
    for rel, content in (sidecars or {}).items():
        write_json(root / rel, content)
    return root


def contrast_dataset(root: Path) -> Path:
    """Thick runs whose contrast agent or echo makes them different contrasts, and a complex image."""
    return make_dataset(root, {f"sub-01/anat/sub-01_{name}.nii.gz": THICK_AXIAL for name in (
        "T1w", "ce-gad_T1w", "echo-1_T2w", "echo-2_T2w", "part-mag_T2starw", "part-phase_T2starw")})


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Three subjects without sessions.

    * sub-01: a thick axial T1w (its sidecar: 4 mm, 2D), a thick coronal T2w (its thickness
      inherited from the top-level ``T2w.json``), an isotropic 3D T1w, a T1map, and a dwi run;
    * sub-02: two thick T2w runs (axial, coronal) and an isotropic FLAIR without sidecar;
    * sub-03: only an isotropic T1w;
    * ``derivatives/inrsr/`` and ``out/`` (an output folder placed inside the dataset) hold files
      that look like thick T1w runs of sub-01.
    """
    return make_dataset(tmp_path / "bids", {
        "sub-01/anat/sub-01_acq-ax_T1w.nii.gz": THICK_AXIAL,
        "sub-01/anat/sub-01_acq-cor_T2w.nii.gz": THICK_CORONAL,
        "sub-01/anat/sub-01_acq-iso_T1w.nii.gz": ISOTROPIC,
        "sub-01/anat/sub-01_T1map.nii.gz": THICK_AXIAL,
        "sub-01/dwi/sub-01_dwi.nii.gz": ((8, 8, 4, 3), (2.0, 2.0, 2.0)),
        "sub-02/anat/sub-02_acq-ax_T2w.nii.gz": THICK_AXIAL,
        "sub-02/anat/sub-02_acq-cor_T2w.nii.gz": THICK_CORONAL,
        "sub-02/anat/sub-02_FLAIR.nii.gz": ISOTROPIC,
        "sub-03/anat/sub-03_T1w.nii.gz": ISOTROPIC,
        "derivatives/inrsr/sub-01/anat/sub-01_rec-inrsr_T1w.nii.gz": THICK_AXIAL,
        "out/sub-01/anat/sub-01_acq-out_T1w.nii.gz": THICK_AXIAL,
    }, {
        "T2w.json": {"SliceThickness": 4.4},
        "sub-01/anat/sub-01_acq-ax_T1w.json": {"SliceThickness": 4.0, "MRAcquisitionType": "2D"},
        "sub-01/anat/sub-01_acq-iso_T1w.json": {"MRAcquisitionType": "3D"},
        "sub-01/dwi/sub-01_dwi.json": {"SliceThickness": 2.0},
        "derivatives/inrsr/dataset_description.json": {"Name": "old", "BIDSVersion": "1.10.0",
                                                       "DatasetType": "derivative",
                                                       "GeneratedBy": [{"Name": "inrsr"}]},
    })


@pytest.fixture
def sessions_dataset(tmp_path) -> Path:
    """sub-01 with sessions pre and post, sub-02 with session pre only, each with a thick T1w and T2w."""
    images = {}
    for sub, ses in (("01", "pre"), ("01", "post"), ("02", "pre")):
        stem = f"sub-{sub}/ses-{ses}/anat/sub-{sub}_ses-{ses}"
        images[f"{stem}_acq-ax_T1w.nii.gz"] = THICK_AXIAL
        images[f"{stem}_acq-cor_T2w.nii.gz"] = THICK_CORONAL
    return make_dataset(tmp_path / "bids_ses", images, {"T2w.json": {"SliceThickness": 3.0}})
