"""A small BIDS study built from the shared data, for the BIDS App's tests and its timing
(``experiments/bids_cohort.py``): thick stacks made by ``inrsr simulate`` from crops of real
subjects, and one broken subject.

- sub-01: BraTS (t1c → T1w axial, t2w → T2w coronal) and an isotropic 1 mm T1w run, which the
  default rule leaves out (nothing to super-resolve).
- sub-02: open_ms patient07 (t1 → T1w axial, t2 → T2w coronal, flair → FLAIR sagittal); its
  T2w run has no sidecar of its own: its ``SliceThickness`` is inherited from the top-level
  ``T2w.json``.
- sub-03: sub-01's stacks with its T1w file truncated (a failed transfer).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from click.testing import CliRunner

from inrsr.cli import main

HALF = np.array([24, 24, 16])  # crop half-size in voxels (1 mm): 48 × 48 × 32 mm
SUBJECTS = {
    "01": ("brats_gli_00001", (("T1w", "t1c", "axial", "ax"), ("T2w", "t2w", "coronal", "cor"))),
    "02": ("open_ms/patient07", (("T1w", "t1", "axial", "ax"), ("T2w", "t2", "coronal", "cor"),
                                 ("FLAIR", "flair", "sagittal", "sag"))),
}
BROKEN = "03"


def _crop(path: Path, centre: np.ndarray) -> nib.Nifti1Image:
    img = nib.load(str(path))
    lo = centre - HALF
    data = np.asarray(img.dataobj, dtype=np.float32)[tuple(slice(a, a + 2 * h) for a, h in zip(lo, HALF))]
    return nib.Nifti1Image(data, img.affine @ np.vstack([np.c_[np.eye(3), lo], [0, 0, 0, 1]]))


def build_cohort(shared_data: Path, root: Path) -> Path:
    """Write the study into ``root`` (its BIDS folder is ``root / "bids"``); returns that folder."""
    bids = root / "bids"
    scratch = root / "hr"
    scratch.mkdir(parents=True)
    (bids).mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "inrsr test cohort", "BIDSVersion": "1.10.0"}))
    runner = CliRunner()
    for sub, (case, runs) in SUBJECTS.items():
        anat = bids / f"sub-{sub}" / "anat"
        anat.mkdir(parents=True)
        first = nib.load(str(shared_data / case / f"{runs[0][1]}.nii.gz"))
        centre = np.round(np.argwhere(np.asarray(first.dataobj) > 0).mean(axis=0)).astype(int)
        for suffix, file, view, acq in runs:
            hr = scratch / f"sub-{sub}_{file}.nii.gz"
            nib.save(_crop(shared_data / case / f"{file}.nii.gz", centre), str(hr))
            result = runner.invoke(main, ["simulate", str(hr), "--view", view, "--factor", "4", "--profile", "box",
                                          "-o", str(anat / f"sub-{sub}_acq-{acq}_{suffix}.nii.gz")])
            assert result.exit_code == 0, result.output
        if sub == "01":
            shutil.copy(scratch / "sub-01_t1c.nii.gz", anat / "sub-01_acq-iso_T1w.nii.gz")
        if sub == "02":  # the thickness of the top-level sidecar, which sub-01's own sidecar overrides
            own = anat / "sub-02_acq-cor_T2w.json"
            thickness = json.loads(own.read_text())["SliceThickness"]
            (bids / "T2w.json").write_text(json.dumps({"SliceThickness": thickness}))
            own.unlink()
    broken = bids / f"sub-{BROKEN}" / "anat"
    broken.mkdir(parents=True)
    for f in (bids / "sub-01" / "anat").glob("sub-01_acq-[ac]*"):
        shutil.copy(f, broken / f.name.replace("sub-01", f"sub-{BROKEN}"))
    t1 = broken / f"sub-{BROKEN}_acq-ax_T1w.nii.gz"
    t1.write_bytes(t1.read_bytes()[: t1.stat().st_size // 2])
    return bids
