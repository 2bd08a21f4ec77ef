"""The ``inrsr sample`` job: a saved model rendered on a new grid without refitting."""

from __future__ import annotations

import os
import time

import numpy as np

from inrsr.device import resolve_device
from inrsr.errors import InputError, Interrupted
from inrsr.field.checkpoint import load_checkpoint
from inrsr.geometry import voxel_sizes_mm
from inrsr.io.files import (
    OutputLock, check_output_folder, refuse_existing, refuse_inputs, sidecar_path, with_sidecars, write_sidecar,
)
from inrsr.io.grids import output_grid
from inrsr.io.nifti import check_finite_volumes, save_nifti
from inrsr.io.provenance import file_sha256, utc_now, volume_sidecar
from inrsr.jobs.outputs import volume_description, volume_paths
from inrsr.render import render_subject

__all__ = ["sample_model", "model_sources"]


def model_sources(model_path: str | os.PathLike, stack_records: list[dict]) -> dict[str, str | None]:
    """Absolute path → SHA-256 of the model file and of the input stacks recorded in it (their
    hashes as recorded when fitted; ``None`` for a model written before they were)."""
    sources: dict[str, str | None] = {os.path.abspath(model_path): file_sha256(model_path)}
    for record in stack_records:
        path, sha = record.get("path"), record.get("sha256")
        if isinstance(path, str):
            sources[path] = sha if isinstance(sha, str) else None
    return sources


def sample_model(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    ref: str | None = None,
    resolution_mm: float | None = None,
    overwrite: bool = False,
    device: str = "auto",
    threads: int = 0,
    max_memory_gb: float | None = None,
    command_line: list[str] | None = None,
) -> dict:
    """Re-render a saved model on a new grid (``ref`` or an isotropic ``resolution_mm`` grid).

    Without either, the grid of the original fit's default (finest input spacing) is used. The
    model file is validated and the grid checked against the memory budget (``max_memory_gb``,
    default: what is available) before anything is rendered; the output folder is locked for
    the run; no output may be the model or the reference; volumes that are not finite are
    never written. Each volume gets a JSON sidecar (:mod:`inrsr.io.provenance`) whose sources
    are the model file and the stacks it was fitted to, with ``command_line``.
    """
    if threads < 0:
        raise InputError(f"--threads must be 0 (all) or positive, got {threads}")
    model, config, subject, codes, payload = load_checkpoint(model_path, max_memory_gb)
    finest = float(min((voxel_sizes_mm(np.asarray(s["affine"])).min() for s in payload["stacks"]), default=1.0))
    grid, ref_codes = output_grid(subject.box, ref, resolution_mm, finest, len(subject.contrasts), max_memory_gb)
    out = check_output_folder(out_dir)
    paths = volume_paths(out, subject.contrasts)
    written = with_sidecars(paths.values())
    refuse_inputs(written, with_sidecars([model_path, ref]))
    refuse_existing(written, overwrite)
    resolve_device(device)
    date, sources = utc_now(), model_sources(model_path, payload["stacks"])
    with OutputLock(out):
        refuse_existing(written, overwrite)  # again: another run may have written meanwhile
        try:
            t0 = time.perf_counter()
            volumes = render_subject(model, grid, subject, config, device, threads)
            seconds = time.perf_counter() - t0
            check_finite_volumes(volumes, paths)
            for c in subject.contrasts:
                save_nifti(volumes[c], grid.affine, paths[c], ref_codes or codes)
                write_sidecar(paths[c], volume_sidecar(volume_description(c, config, model_path), c, grid, sources,
                                                       command_line, reference=ref, date=date))
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; the volumes written to {out} so far are complete, the others were "
                              "not started") from None
    outputs = {k: str(v) for k, v in paths.items()}
    outputs.update({sidecar_path(v).name: str(sidecar_path(v)) for v in paths.values()})
    return {"outputs": outputs, "grid": {"shape": list(grid.shape)}, "seconds": seconds}
