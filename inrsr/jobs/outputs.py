"""What a fit writes into its output folder, and the writing of it: one volume per contrast,
``model.pt``, ``config.json``, ``log.json``, ``log.csv``, ``mi.csv``, ``mi.png`` and, with
registration, ``transforms.json``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inrsr.config import FitConfig
from inrsr.geometry import Grid
from inrsr.io.files import write_csv, write_json
from inrsr.io.nifti import HeaderCodes, save_nifti
from inrsr.io.stack import Stack

if TYPE_CHECKING:  # the file names are needed before PyTorch is imported (inrsr.jobs.fit_stacks)
    from inrsr.jobs.reconstruct import Reconstruction

__all__ = ["FIT_FILES", "STATE_FILE", "volume_paths", "fit_output_paths", "stack_records", "write_fit_outputs"]

# Files every fit writes beside its volumes.
FIT_FILES = ("model.pt", "config.json", "log.json", "log.csv", "mi.csv", "mi.png")
# The training state of a running fit, in the output folder (removed when the fit completes).
STATE_FILE = "fit_state.pt"


def volume_paths(out_dir: Path, contrasts: list[str]) -> dict[str, Path]:
    """``CONTRAST.nii.gz`` in ``out_dir`` for each contrast."""
    return {c: out_dir / f"{c}.nii.gz" for c in contrasts}


def fit_output_paths(out_dir: Path, contrasts: list[str], registering: bool) -> dict[str, Path]:
    """Every file a fit writes, keyed by contrast or file name."""
    paths = volume_paths(out_dir, contrasts)
    paths.update({name: out_dir / name for name in FIT_FILES})
    if registering:
        paths["transforms.json"] = out_dir / "transforms.json"
    return paths


def stack_records(stacks: list[Stack], recon: Reconstruction, transforms: list[dict] | None) -> list[dict]:
    """Per input stack, what the model file and the log keep of it (absolute path, grid,
    thickness, the training voxels it gave and the world map registration found)."""
    return [
        {"contrast": s.contrast, "path": os.path.abspath(s.path), "shape": list(s.shape), "affine": s.affine.tolist(),
         "thickness_mm": s.slice_thickness_mm, "slice_axis": s.slice_axis,
         "n_train_points": int((recon.train.stack_id == k).sum()),
         "registration_mm": transforms[k]["matrix_mm"] if transforms else np.eye(4).tolist()}
        for k, s in enumerate(stacks)
    ]


def write_fit_outputs(
    paths: dict[str, Path], volumes: dict[str, np.ndarray], grid: Grid, codes: HeaderCodes, config: FitConfig,
    recon: Reconstruction, stacks: list[Stack], summary: dict, transforms: list[dict] | None,
) -> None:
    """Write the volumes, the model and the logs of a finished fit (each file atomically)."""
    from inrsr.evaluate.plots import plot_mi_curve
    from inrsr.field.checkpoint import save_checkpoint

    for c in recon.subject.contrasts:
        save_nifti(volumes[c], grid.affine, paths[c], codes)
    save_checkpoint(paths["model.pt"], recon.field, config, recon.subject, stacks[0].codes, summary["stacks"])
    write_json(paths["config.json"], config.to_dict())
    write_json(paths["log.json"], {**summary, "epochs": recon.fit.epochs, "mi_curve": recon.fit.mi_curve})
    write_csv(paths["log.csv"], recon.fit.epochs)
    write_csv(paths["mi.csv"], recon.fit.mi_curve)
    plot_mi_curve(recon.fit.mi_curve, paths["mi.png"], recon.fit.stopped_early)
    if transforms is not None:
        write_json(paths["transforms.json"], {"reference_stack": config.register_stack, "stacks": transforms})
