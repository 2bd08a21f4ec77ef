"""The ``inrsr fit`` job: load stacks, check everything that can be checked, reconstruct, render
every contrast and write all outputs into one folder."""

from __future__ import annotations

import os
import time

from inrsr.config import FitConfig
from inrsr.device import resolve_device
from inrsr.errors import InputError
from inrsr.geometry import union_box
from inrsr.io.files import check_output_folder, check_writable, refuse_existing
from inrsr.io.grids import output_grid
from inrsr.io.stack import StackSpec, load_stacks
from inrsr.jobs.outputs import STATE_FILE, fit_output_paths, stack_records, write_fit_outputs
from inrsr.jobs.reconstruct import Reconstruction, reconstruct, training_set
from inrsr.register.joint import initial_alignment, registration_report, warn_if_unrelated
from inrsr.render import render_subject

__all__ = ["fit_subject"]


def _summary(recon: Reconstruction, stacks: list, grid, ref: str | None, paths: dict, seconds: dict,
             transforms: list[dict] | None) -> dict:
    """What ``log.json`` says of a fit (beside its epochs and MI curve) and the job returns."""
    result = recon.fit
    return {
        "outputs": {k: str(v) for k, v in paths.items()},
        "grid": {"shape": list(grid.shape), "affine": grid.affine.tolist(), "reference": ref},
        "stacks": stack_records(stacks, recon, transforms),
        "n_train_points": len(recon.train),
        "steps": result.steps,
        "epochs_run": len(result.epochs),
        "stopped_early": result.stopped_early,
        "stopped_by": result.stopped_by,
        "final_mi": result.mi_curve[-1]["mi"] if result.mi_curve else None,
        "seconds": {"prepare": seconds["prepare"], "fit": result.seconds, "data_consistency": recon.consistency_s,
                    "render": seconds["render"]},
        "train_points_per_second": result.points_per_second,
        "transforms": transforms,
    }


def fit_subject(
    specs: list[StackSpec],
    config: FitConfig,
    out_dir: str | os.PathLike,
    ref: str | None = None,
    resolution_mm: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> dict:
    """Load stacks, fit a field, render every contrast and write all outputs into ``out_dir``.

    Everything that can be checked is checked before fitting (inputs, reference, output folder,
    existing files), so a user mistake never leaves partial output. The training state is saved
    in ``out_dir/fit_state.pt`` while fitting; ``resume=True`` continues an interrupted fit from
    it (same inputs and options). With ``config.register``, each stack is first aligned to the
    reference stack by MI, then its transform is refined with the field; the transforms are
    written to ``transforms.json``. Returns a summary dict (paths, grid, timings, early-stopping
    outcome, transforms).
    """
    config = config.validate()
    resolve_device(config.device)
    stacks = load_stacks(specs)
    if config.register and not config.register_stack < len(stacks):
        raise InputError(f"--register-stack {config.register_stack}: there are only {len(stacks)} stacks")
    out = check_output_folder(out_dir)
    registering = config.register and len(stacks) > 1
    contrasts = list(dict.fromkeys(s.contrast for s in stacks))
    paths = fit_output_paths(out, contrasts, registering)
    state_path = out / STATE_FILE
    if resume and not state_path.is_file():
        raise InputError(f"{state_path}: no interrupted fit to resume")
    refuse_existing(paths.values(), overwrite or resume)
    t0 = time.perf_counter()
    subject, train = training_set(stacks, config)
    finest = float(min(s.spacing_mm.min() for s in stacks))
    grid, ref_codes = output_grid(subject.box, ref, resolution_mm, finest)
    check_writable(out)
    foregrounds = [m for m, _ in subject.foregrounds]
    warn_if_unrelated(stacks, foregrounds)
    init = initial_alignment(stacks, config.register_stack, foregrounds, progress) if registering and not resume else None
    t_prep = time.perf_counter() - t0

    recon = reconstruct(stacks, config, prepared=(subject, train), progress=progress, state_path=state_path,
                        resume=resume, initial_poses=init)
    transforms = None
    if recon.matrices is not None:
        transforms = registration_report(stacks, recon.matrices, config.register_stack)
        if ref is None:
            grid, _ = output_grid(union_box([(s.shape, s.affine) for s in recon.stacks]), None, resolution_mm, finest)
    t1 = time.perf_counter()
    volumes = render_subject(recon.field, grid, recon.subject, config)
    t_render = time.perf_counter() - t1

    summary = _summary(recon, stacks, grid, ref, paths, {"prepare": t_prep, "render": t_render}, transforms)
    write_fit_outputs(paths, volumes, grid, ref_codes or stacks[0].codes, config, recon, stacks, summary, transforms)
    return summary
