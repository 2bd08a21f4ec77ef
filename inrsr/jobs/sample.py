"""The ``inrsr sample`` job: a saved model rendered on a new grid without refitting."""

from __future__ import annotations

import os
import time

import numpy as np

from inrsr.device import resolve_device
from inrsr.field.checkpoint import load_checkpoint
from inrsr.geometry import voxel_sizes_mm
from inrsr.io.files import check_output_folder, check_writable, refuse_existing
from inrsr.io.grids import output_grid
from inrsr.io.nifti import save_nifti
from inrsr.jobs.outputs import volume_paths
from inrsr.render import render_subject

__all__ = ["sample_model"]


def sample_model(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    ref: str | None = None,
    resolution_mm: float | None = None,
    overwrite: bool = False,
    device: str = "auto",
    threads: int = 0,
) -> dict:
    """Re-render a saved model on a new grid (``ref`` or an isotropic ``resolution_mm`` grid).

    Without either, the grid of the original fit's default (finest input spacing) is used.
    """
    model, config, subject, codes, payload = load_checkpoint(model_path)
    finest = float(min(voxel_sizes_mm(np.asarray(s["affine"])).min() for s in payload["stacks"]))
    grid, ref_codes = output_grid(subject.box, ref, resolution_mm, finest)
    out = check_output_folder(out_dir)
    paths = volume_paths(out, subject.contrasts)
    refuse_existing(paths.values(), overwrite)
    check_writable(out)
    resolve_device(device)
    t0 = time.perf_counter()
    volumes = render_subject(model, grid, subject, config, device, threads)
    seconds = time.perf_counter() - t0
    for c in subject.contrasts:
        save_nifti(volumes[c], grid.affine, paths[c], ref_codes or codes)
    return {"outputs": {k: str(v) for k, v in paths.items()}, "grid": {"shape": list(grid.shape)}, "seconds": seconds}
