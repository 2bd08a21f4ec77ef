"""The ``inrsr fit`` job: load stacks, check everything that can be checked, reconstruct, render
every contrast and write all outputs into one folder.

Everything a user can get wrong (options, input files, output folder, memory of the output
grid) is checked with NumPy and nibabel only; PyTorch and the rest of the numerical stack, which
take seconds to import, are imported after that, so that a mistake is reported at once.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inrsr.config import FitConfig
from inrsr.errors import FitError, InputError, Interrupted, recorded_warnings
from inrsr.geometry import Grid, union_box
from inrsr.io.files import OutputLock, check_output_folder, refuse_existing, refuse_inputs, with_sidecars
from inrsr.io.grids import check_grid_memory, output_grid
from inrsr.io.nifti import HeaderCodes, check_finite_volumes
from inrsr.io.stack import Stack, StackSpec, load_stacks
from inrsr.io.provenance import source_hashes
from inrsr.jobs.outputs import STATE_FILE, FitRun, fit_output_paths, stack_records, write_fit_outputs

if TYPE_CHECKING:
    from inrsr.jobs.reconstruct import Reconstruction

__all__ = ["FitRequest", "Fitted", "check_fit_request", "memory_fit_request", "fit_subject", "fit_and_write",
           "fit_and_render", "fit_summary"]


@dataclass(frozen=True)
class FitRequest:
    """A checked ``inrsr fit``: its stacks and options, the output grid and files, and how to
    treat what is already in the folder. A fit kept in memory (the Python API without an output
    folder) has no ``paths`` and no ``state_path``; ``ref`` is then only the reference's name."""

    stacks: list[Stack]
    config: FitConfig
    grid: Grid
    ref: str | None
    ref_codes: HeaderCodes | None
    resolution_mm: float | None
    finest_mm: float
    paths: dict[str, Path]
    state_path: Path | None
    inputs: list[str | None]
    overwrite: bool
    resume: bool
    max_memory_gb: float | None

    @property
    def registering(self) -> bool:
        return self.config.register and len(self.stacks) > 1

    def claim_outputs(self) -> None:
        """Refuse to write over an input, over existing outputs (unless ``overwrite`` or
        ``resume``) or over an interrupted fit's state (unless ``overwrite`` discards it or
        ``resume`` continues it)."""
        refuse_inputs([*self.paths.values(), self.state_path], with_sidecars(self.inputs))
        if self.resume and not self.state_path.is_file():
            raise InputError(f"{self.state_path}: no interrupted fit to resume")
        if self.state_path.exists() and not (self.resume or self.overwrite):
            raise InputError(f"{self.state_path}: this folder holds an interrupted fit; continue it with --resume "
                             "or discard it with --overwrite")
        refuse_existing(self.paths.values(), self.overwrite or self.resume)


@dataclass
class Fitted:
    """A fit done, before anything is written: the reconstruction, the grid it was rendered on
    (moved with the stacks when registration changed the union of their fields of view), the
    rendered volumes (contrast → array on ``grid``), the header codes they are written with (the
    reference's, else the first stack's), the transforms registration found (or ``None``) and the
    seconds of the phases (``prepare``, which includes ``thickness_estimate``, and ``render``)."""

    recon: Reconstruction
    grid: Grid
    volumes: dict
    codes: HeaderCodes
    transforms: list[dict] | None
    seconds: dict[str, float]


def fit_summary(request: FitRequest, fitted: Fitted, run: FitRun) -> dict:
    """What ``log.json`` says of a fit (beside its epochs and curves) and the job returns."""
    recon, stacks, grid, transforms = fitted.recon, request.stacks, fitted.grid, fitted.transforms
    paths, ref, seconds = request.paths, request.ref, fitted.seconds
    result = recon.fit
    return {
        **run.log_record(),
        "outputs": {k: str(v) for k, v in paths.items()},
        "grid": {"shape": list(grid.shape), "affine": grid.affine.tolist(), "reference": ref},
        "stacks": stack_records(stacks, recon, transforms, run.sources),
        "n_train_points": len(recon.train),
        "steps": result.steps,
        "epochs_run": len(result.epochs),
        "stopped_early": result.stopped_early,
        "stopped_by": result.stopped_by,
        "final_mi": result.mi_curve[-1]["mi"] if result.mi_curve else None,
        "seconds": {"prepare": seconds["prepare"], "thickness_estimate": seconds.get("thickness_estimate", 0.0),
                    "fit": result.seconds, "data_consistency": recon.consistency_s, "render": seconds["render"]},
        "train_points_per_second": result.points_per_second,
        "transforms": transforms,
    }


def check_fit_request(
    specs: list[StackSpec], config: FitConfig, out_dir: str | os.PathLike, ref: str | None,
    resolution_mm: float | None, overwrite: bool, resume: bool, max_memory_gb: float | None,
) -> FitRequest:
    """Everything about a fit that can be checked before fitting (see :func:`fit_subject`)."""
    config = config.validate()
    stacks = load_stacks(specs)
    if config.register and not config.register_stack < len(stacks):
        raise InputError(f"--register-stack {config.register_stack}: there are only {len(stacks)} stacks")
    out = check_output_folder(out_dir)
    registering = config.register and len(stacks) > 1
    contrasts = list(dict.fromkeys(s.contrast for s in stacks))
    finest = float(min(s.spacing_mm.min() for s in stacks))
    box = union_box([(s.shape, s.affine) for s in stacks])
    grid, ref_codes = output_grid(box, ref, resolution_mm, finest, len(contrasts), max_memory_gb)
    request = FitRequest(
        stacks, config, grid, ref, ref_codes, resolution_mm, finest,
        fit_output_paths(out, [s.contrast for s in stacks], registering), out / STATE_FILE,
        [p for s in specs for p in (s.path, s.mask_path)] + [ref], overwrite, resume, max_memory_gb,
    )
    request.claim_outputs()
    return request


def memory_fit_request(
    stacks: list[Stack], config: FitConfig, ref_grid: tuple[Grid, HeaderCodes] | None, ref_name: str | None,
    resolution_mm: float | None, max_memory_gb: float | None, inputs: list[str | None],
) -> FitRequest:
    """A fit of stacks already loaded, kept in memory (nothing written): rendered on
    ``ref_grid`` (a grid and its header codes) or on an isotropic grid of ``resolution_mm``
    (default: the finest input spacing) over the stacks; the grid is checked against the memory
    budget. ``inputs``: the files among the inputs (for their hashes in the log)."""
    config = config.validate()
    if config.register and not config.register_stack < len(stacks):
        raise InputError(f"register_stack {config.register_stack}: there are only {len(stacks)} stacks")
    contrasts = list(dict.fromkeys(s.contrast for s in stacks))
    finest = float(min(s.spacing_mm.min() for s in stacks))
    if ref_grid is not None:
        if resolution_mm is not None:
            raise InputError("ref and resolution_mm are exclusive: the reference fixes the grid")
        grid, codes = ref_grid
        check_grid_memory(grid, len(contrasts), max_memory_gb)
    else:
        box = union_box([(s.shape, s.affine) for s in stacks])
        grid, codes = output_grid(box, None, resolution_mm, finest, len(contrasts), max_memory_gb)
    return FitRequest(stacks, config, grid, ref_name, codes, resolution_mm, finest, {}, None, inputs, False, False,
                      max_memory_gb)


def fit_subject(
    specs: list[StackSpec],
    config: FitConfig,
    out_dir: str | os.PathLike,
    ref: str | None = None,
    resolution_mm: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    max_memory_gb: float | None = None,
    command_line: list[str] | None = None,
    preset_name: str | None = None,
    verbose: bool = False,
) -> dict:
    """Load stacks, fit a field, render every contrast and write all outputs into ``out_dir``.

    Everything that can be checked is checked before fitting (inputs, reference, output folder,
    existing files, the memory the output grid needs against ``max_memory_gb``, default: what
    is available), so a user mistake never leaves partial output. No output may be an input.
    The output folder is locked for the run (a second run into it is refused). The training
    state is kept in ``out_dir/fit_state.pt`` while fitting and until every output is written;
    ``resume=True`` continues an interrupted fit from it (same inputs and options), or renders a
    finished one that was interrupted while writing. An interruption raises
    :class:`~inrsr.errors.Interrupted` saying whether that state exists; a loss or a rendered
    volume that is not finite raises :class:`~inrsr.errors.FitError`, writes nothing and drops
    the state. With ``config.register``, each stack is first aligned to the reference stack by
    MI, then its transform is refined with the field; the transforms are written to
    ``transforms.json``. Returns a summary dict (paths, grid, timings, early-stopping outcome,
    transforms, and what :meth:`~inrsr.jobs.outputs.FitRun.log_record` says of the run).

    Every volume and mask gets a JSON sidecar (:mod:`inrsr.io.provenance`) naming the inputs
    with their SHA-256, ``command_line`` (the command as typed, ``None`` from Python) and, with
    ``preset_name`` (the preset ``config`` started from), the options changed from it. The input
    warnings shown during the call are listed in ``log.json``. ``verbose``: a line on stderr as
    each phase ends, and progress lines every 5 s instead of 30 s when stderr is not a terminal.
    """
    return fit_and_write(specs, config, out_dir, ref, resolution_mm, overwrite, progress, resume, max_memory_gb,
                         command_line, preset_name, verbose)[0]


def fit_and_write(
    specs: list[StackSpec], config: FitConfig, out_dir: str | os.PathLike, ref: str | None = None,
    resolution_mm: float | None = None, overwrite: bool = False, progress: bool = True, resume: bool = False,
    max_memory_gb: float | None = None, command_line: list[str] | None = None, preset_name: str | None = None,
    verbose: bool = False,
) -> tuple[dict, Fitted]:
    """:func:`fit_subject`, returning also what was fitted (the field and the volumes)."""
    with recorded_warnings() as seen:
        run = FitRun(command_line, preset_name, warnings=seen, verbose=verbose)
        request = check_fit_request(specs, config, out_dir, ref, resolution_mm, overwrite, resume, max_memory_gb)
        from inrsr.device import resolve_device, thread_count

        run.device = str(resolve_device(request.config.device))
        run.threads = thread_count(request.config.threads)
        state_path = request.state_path
        created = not state_path.parent.exists()
        try:
            with OutputLock(state_path.parent):
                request.claim_outputs()  # again: another run may have written there since
                try:
                    return _fit_and_write(request, progress, run)
                except FitError:
                    state_path.unlink(missing_ok=True)  # a diverged fit's state would diverge again
                    raise
                except KeyboardInterrupt:
                    if state_path.is_file():
                        raise Interrupted(f"interrupted; {state_path} keeps the fit: run the same command with "
                                          "--resume to finish it") from None
                    raise Interrupted(f"interrupted before the fit began; nothing was written to "
                                      f"{state_path.parent}") from None
        finally:
            if created:  # a folder this run made and left empty (a failure before any output) goes too
                with contextlib.suppress(OSError):
                    state_path.parent.rmdir()


def _fit_and_write(request: FitRequest, progress: bool, run: FitRun) -> tuple[dict, Fitted]:
    """The locked part of :func:`fit_subject`: fit, render, check, write, then drop the state."""
    fitted = fit_and_render(request, progress, run)
    t0 = time.perf_counter()
    summary = fit_summary(request, fitted, run)
    write_fit_outputs(request.paths, fitted.volumes, fitted.grid, fitted.codes, request.config, fitted.recon, request.stacks, summary, fitted.transforms, run, request.ref)
    run.say(f"wrote {len(request.paths)} files to {request.state_path.parent} ({time.perf_counter() - t0:.1f} s)")
    request.state_path.unlink(missing_ok=True)
    return summary, fitted


def fit_and_render(request: FitRequest, progress: bool, run: FitRun) -> Fitted:
    """Fit the request's stacks (aligned first when registering), render every contrast on its
    grid and check that every voxel is finite (:class:`~inrsr.errors.FitError` otherwise).
    Writes nothing but the training state, when the request has a ``state_path``."""
    from inrsr.fit.progress import PROGRESS_EVERY_S, VERBOSE_EVERY_S
    from inrsr.fit.state import saved_thickness
    from inrsr.fit.thickness import needs_estimate, with_recorded_thickness, with_thickness_estimates
    from inrsr.jobs.reconstruct import reconstruct, training_set
    from inrsr.register.joint import initial_alignment, registration_report, warn_if_unrelated
    from inrsr.render import render_subject
    from inrsr.samples.training_set import stack_foregrounds

    stacks, config, grid = request.stacks, request.config, request.grid
    t0 = time.perf_counter()
    run.sources = source_hashes([p for p in request.inputs if p is not None and os.path.isfile(p)])
    t_estimate = 0.0
    foregrounds = stack_foregrounds(stacks)  # once, for the estimate and the training set
    record = saved_thickness(request.state_path) if request.resume else None
    if record is not None:  # the widths the interrupted fit trained with, not a new estimate
        request.stacks[:] = stacks = with_recorded_thickness(stacks, config, record, str(request.state_path))
        if any(s.estimated_thickness_mm is not None for s in stacks):
            run.say(f"slice thickness as the interrupted fit estimated it: {_estimates(stacks)}")
    elif any(needs_estimate(stacks, config)):
        t1 = time.perf_counter()
        # in place: the log, the outputs and the report describe the stacks as fitted
        request.stacks[:] = stacks = with_thickness_estimates(stacks, config, progress, foregrounds)
        t_estimate = time.perf_counter() - t1
        run.say(f"slice thickness estimated: {_estimates(stacks)} ({t_estimate:.1f} s)")
    for k, s in enumerate(stacks, start=1):
        run.say(f"stack {k}: {s.describe()}; thickness from {s.thickness_source}, foreground mask "
                f"{'given' if s.mask is not None else 'estimated'}")
    subject, train = training_set(stacks, config, foregrounds=foregrounds)
    run.say(f"training set: {len(train)} voxels ({time.perf_counter() - t0:.1f} s)")
    warn_if_unrelated(stacks, foregrounds)
    init = None
    if request.registering and not request.resume:
        init = initial_alignment(stacks, config.register_stack, foregrounds, progress)
        run.say(f"initial alignment by MI done ({time.perf_counter() - t0:.1f} s since the start)")
    t_prep = time.perf_counter() - t0

    recon = reconstruct(stacks, config, prepared=(subject, train), progress=progress, state_path=request.state_path,
                        resume=request.resume, initial_poses=init,
                        progress_every_s=VERBOSE_EVERY_S if run.verbose else PROGRESS_EVERY_S)
    run.say(f"fit: {recon.fit.steps} steps in {recon.fit.seconds:.1f} s (stopped by {recon.fit.stopped_by}); "
            f"data consistency: {recon.consistency_s:.1f} s")
    transforms = None
    if recon.matrices is not None:
        transforms = registration_report(stacks, recon.matrices, config.register_stack)
        if request.ref is None:
            box = union_box([(s.shape, s.affine) for s in recon.stacks])
            grid, _ = output_grid(box, None, request.resolution_mm, request.finest_mm, len(subject.contrasts),
                                  request.max_memory_gb)
    t1 = time.perf_counter()
    volumes = render_subject(recon.field, grid, recon.subject, config)
    t_render = time.perf_counter() - t1
    run.say(f"render: {'×'.join(map(str, grid.shape))} voxels in {t_render:.1f} s")
    check_finite_volumes(volumes, request.paths or {c: f"the {c} volume" for c in volumes})
    return Fitted(recon, grid, volumes, request.ref_codes or stacks[0].codes, transforms,
                  {"prepare": t_prep, "render": t_render, "thickness_estimate": t_estimate})


def _estimates(stacks: list[Stack]) -> str:
    """Every stack's estimated slice thickness and its estimator, for a progress line."""
    return ", ".join(f"stack {k} {s.estimated_thickness_mm:.2f} mm ({s.thickness_estimator})"
                     for k, s in enumerate(stacks, start=1))
