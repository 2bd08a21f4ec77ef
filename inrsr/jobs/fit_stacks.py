"""End-to-end jobs used by the CLI: fit stacks and write outputs; re-sample a saved model."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .config import FitConfig
from .errors import InputError, InputWarning
from .fit import fit_field, resolve_device, torch_threads
from .baselines import cubic_between_slices
from .consistency import held_out_slices, registered_stacks, resimulate, stack_residuals, stack_scores
from .geometry import Box, Grid, fov_corners_world, isotropic_grid, overlap_fraction, rigid_error, union_box, voxel_sizes_mm
from .field import Field
from .io import HeaderCodes, Stack, atomic_path, check_writable, load_image, load_stack, save_nifti, write_text
from .plots import plot_mi_curve
from .prior import cubic_base
from .register import align_rigid, similarity
from .render import render_grid
from .samples import Subject, TrainingSet, build_training_set

__all__ = [
    "StackSpec", "load_stacks", "reference_grid", "training_set", "make_consistent", "render_subject", "output_grid", "fit_subject",
    "sample_model", "check_model", "initial_alignment", "registration_report",
]

CONTRAST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# The training state of a running fit, in the output folder (removed when the fit completes).
STATE_FILE = "fit_state.pt"
# Below this fraction of the smaller field of view, two stacks are reported as barely overlapping.
MIN_OVERLAP = 0.5
# Below this MI (nats) between two stacks where their headers place them, they are reported as unrelated.
MIN_STACK_MI = 0.1
# Slices thinner than their spacing by more than this leave gaps (``--base auto``), mm.
GAP_TOL_MM = 0.01


@dataclass(frozen=True)
class StackSpec:
    """What the user named for one input stack."""

    contrast: str
    path: str
    thickness_mm: float | None = None
    mask_path: str | None = None


def load_stacks(specs: list[StackSpec]) -> list[Stack]:
    """Load and cross-check the input stacks.

    Several stacks may share a contrast (e.g. T2 axial + coronal): they train the same head.
    Raises :class:`InputError` for no stacks, a bad contrast name, a file given twice, any
    unreadable or invalid file, or a stack whose field of view does not overlap the first stack's.
    Warns (:class:`InputWarning`) when a stack covers less than :data:`MIN_OVERLAP` of the smaller
    field of view of itself and the first stack.
    """
    if not specs:
        raise InputError("no input stacks: give --t1/--t2/--flair PATH or --stack CONTRAST=PATH")
    seen: set[Path] = set()
    for spec in specs:
        if not CONTRAST_NAME.match(spec.contrast):
            raise InputError(f"{spec.path}: contrast name {spec.contrast!r} must be letters, digits, '_' or '-'")
        resolved = Path(spec.path).resolve()
        if resolved in seen:
            raise InputError(f"{spec.path}: the same file is given twice")
        seen.add(resolved)
    stacks = [load_stack(s.path, s.contrast, s.thickness_mm, s.mask_path) for s in specs]
    first = stacks[0]
    for s in stacks[1:]:
        overlap = overlap_fraction((first.shape, first.affine), (s.shape, s.affine))
        if overlap <= 0.0:
            raise InputError(f"{s.path}: field of view does not overlap that of {first.path}")
        if overlap < MIN_OVERLAP:
            warnings.warn(
                f"{s.path}: its field of view overlaps only {100 * overlap:.0f}% of {first.path}'s "
                f"(is it the same subject and session?)", InputWarning, stacklevel=2,
            )
    return stacks


def warn_if_unrelated(stacks: list[Stack], foregrounds: list[np.ndarray]) -> None:
    """Warn (:class:`InputWarning`) for each stack whose MI with the first stack, where their
    headers place them, is below :data:`MIN_STACK_MI` nats: stacks of one subject and session
    share structure (0.39–0.74 nats measured on the shared data); unrelated images share almost
    none. A different head placed in the same space can still pass (0.33 measured)."""
    first = stacks[0]
    for s in stacks[1:]:
        mi, _ = similarity(first.data, first.affine, foregrounds[0], s.data, s.affine)
        if mi < MIN_STACK_MI:
            warnings.warn(
                f"{s.path}: shares almost no information with {first.path} where their headers place them "
                f"(MI {mi:.2f} nats): are they the same subject and session?", InputWarning, stacklevel=2,
            )


def reference_grid(path: str | os.PathLike) -> tuple[Grid, HeaderCodes]:
    """Exactly the voxel grid of the image at ``path``, and its header codes."""
    data, img = load_image(path, "reference image")
    return Grid(tuple(int(n) for n in data.shape), np.asarray(img.affine, dtype=np.float64)), HeaderCodes.from_header(img.header)


def training_set(
    stacks: list[Stack], config: FitConfig, exclude: list[np.ndarray | None] | None = None
) -> tuple[Subject, TrainingSet]:
    """The subject description and training tensors that ``config`` asks for (``exclude``: voxels
    held out per stack, see :func:`build_training_set`), with the base of ``config.base`` (none
    when registering: the stacks move during the fit)."""
    subject, train = build_training_set(
        stacks, config.background_ratio, config.mi_points, config.seed, config.slice_profile, config.profile_points,
        exclude,
    )
    if uses_base(config, stacks):
        train = replace(train, base=cubic_base(stacks, subject, exclude))
    return subject, train


def uses_base(config: FitConfig, stacks: list[Stack]) -> bool:
    """Whether a fit of ``stacks`` learns a residual over a cubic base: ``--base cubic``, or
    ``auto`` when some stack's slices are thinner than their spacing (its slice profiles leave
    gaps that no voxel observes); never when registering."""
    if config.register or config.base == "none":
        return False
    return config.base == "cubic" or any(s.slice_thickness_mm < s.slice_spacing_mm - GAP_TOL_MM for s in stacks)


def make_consistent(
    field: Field, stacks: list[Stack], subject: Subject, config: FitConfig,
    exclude: list[np.ndarray | None] | None = None,
) -> float:
    """With ``config.data_consistency``, give ``field`` its stacks' back-projected residuals (see
    :mod:`inrsr.backproject`; ``exclude``: voxels held out per stack). ``stacks`` are placed
    where the fit put them. Returns the seconds it took (0 when off)."""
    if not config.data_consistency:
        return 0.0
    t0 = time.perf_counter()
    field.correction = stack_residuals(field, stacks, subject, config, exclude)
    return time.perf_counter() - t0


def render_subject(
    model: Field, grid: Grid, subject: Subject, config: FitConfig, device: str | None = None, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Every contrast on ``grid`` in input units, with the config's chunking, foreground rule and
    precision; ``device`` and ``threads`` default to the config's."""
    with torch_threads(config.threads if threads is None else threads):
        return render_grid(
            model, grid, subject.normaliser, subject.scales, config.render_chunk,
            resolve_device(config.device if device is None else device),
            subject.foregrounds if config.render_foreground else None, config.precision,
        )


def output_grid(
    box: Box, ref: str | None, resolution_mm: float | None, default_spacing_mm: float
) -> tuple[Grid, HeaderCodes | None]:
    """The grid to render on: exactly ``ref``'s grid, or an isotropic grid covering ``box``.

    Returns the grid and, for ``ref``, its header codes (so outputs carry the reference's codes).
    """
    if ref is not None:
        if resolution_mm is not None:
            raise InputError("--ref and --resolution are exclusive: the reference fixes the grid")
        return reference_grid(ref)
    spacing = default_spacing_mm if resolution_mm is None else resolution_mm
    if not spacing > 0:
        raise InputError(f"--resolution must be positive, got {resolution_mm}")
    grid = isotropic_grid(box, float(spacing))
    if grid.n_vox > 2_000_000_000:
        raise InputError(f"--resolution {spacing} mm gives {grid.n_vox} voxels; choose a coarser resolution")
    return grid, None


def _output_paths(out_dir: Path, contrasts: list[str], with_model: bool) -> dict[str, Path]:
    paths = {c: out_dir / f"{c}.nii.gz" for c in contrasts}
    if with_model:
        for name in ("model.pt", "config.json", "log.json", "log.csv", "mi.csv", "mi.png"):
            paths[name] = out_dir / name
    return paths


def _refuse_existing(paths: dict[str, Path], overwrite: bool) -> None:
    if overwrite:
        return
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise InputError(f"{existing[0]}: output exists (use --overwrite to replace it)")


def _write_csv(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _write_json(obj: dict, path: Path) -> None:
    write_text(path, json.dumps(obj, indent=2, default=float))


def initial_alignment(stacks: list[Stack], fixed: int, foregrounds: list[np.ndarray], progress: bool) -> np.ndarray:
    """``(S, 6)`` starting rotation (degrees) and shift (mm) of each stack for ``--register``:
    MI alignment (:func:`inrsr.register.align_rigid`) of each stack to stack ``fixed``."""
    init = np.zeros((len(stacks), 6))
    ref = stacks[fixed]
    for k, s in enumerate(stacks):
        if k == fixed:
            continue
        r = align_rigid(ref.data, ref.affine, foregrounds[fixed], s.data, s.affine)
        init[k, :3], init[k, 3:] = r.rotation_deg, r.shift_mm
        if progress:
            print(f"aligned {s.path} to {ref.path} by MI: rotation {np.linalg.norm(r.rotation_deg):.2f}°, "
                  f"shift {np.linalg.norm(r.shift_mm):.2f} mm", file=sys.stderr)
    return init


def registration_report(stacks: list[Stack], matrices: list[np.ndarray], fixed: int) -> list[dict]:
    """Per stack: the 4×4 world map found by registration, its rotation angle (degrees) and the
    shift of the stack's centre (mm), and the registered affine (``matrix @ affine``)."""
    rows = []
    for k, (s, m) in enumerate(zip(stacks, matrices)):
        centre = fov_corners_world(s.shape, s.affine).mean(axis=0)
        shift, angle = rigid_error(m, np.eye(4), centre[None])
        rows.append({
            "path": s.path, "contrast": s.contrast, "reference": k == fixed, "rotation_deg": angle,
            "centre_shift_mm": shift, "matrix_mm": np.asarray(m).tolist(),
            "registered_affine": (np.asarray(m) @ s.affine).tolist(),
        })
    return rows


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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    contrasts = list(dict.fromkeys(s.contrast for s in stacks))
    paths = _output_paths(out, contrasts, with_model=True)
    if config.register and len(stacks) > 1:
        paths["transforms.json"] = out / "transforms.json"
    state_path = out / STATE_FILE
    if resume and not state_path.is_file():
        raise InputError(f"{state_path}: no interrupted fit to resume")
    _refuse_existing(paths, overwrite or resume)
    t0 = time.perf_counter()
    subject, train = training_set(stacks, config)
    finest = float(min(s.spacing_mm.min() for s in stacks))
    grid, ref_codes = output_grid(subject.box, ref, resolution_mm, finest)
    check_writable(out)
    warn_if_unrelated(stacks, [m for m, _ in subject.foregrounds])
    registering = config.register and len(stacks) > 1
    init = None
    if registering and not resume:
        init = initial_alignment(stacks, config.register_stack, [m for m, _ in subject.foregrounds], progress)
    t_prep = time.perf_counter() - t0

    result = fit_field(train, subject.contrasts, config, progress=progress, state_path=state_path, resume=resume,
                       initial_poses=init)
    transforms, moved = None, stacks
    if registering and result.poses is not None:
        matrices = result.poses.world_matrices(subject.normaliser)
        transforms = registration_report(stacks, matrices, config.register_stack)
        moved = registered_stacks(stacks, matrices)
        subject = replace(subject, foregrounds=[(m, s.affine) for (m, _), s in zip(subject.foregrounds, moved)])
        if ref is None:
            grid, _ = output_grid(union_box([(s.shape, s.affine) for s in moved]), None, resolution_mm, finest)
    t_consistent = make_consistent(result.field, moved, subject, config)
    t1 = time.perf_counter()
    volumes = render_subject(result.field, grid, subject, config)
    t_render = time.perf_counter() - t1

    codes = ref_codes or stacks[0].codes
    for c in contrasts:
        save_nifti(volumes[c], grid.affine, paths[c], codes)
    stack_meta = [
        {"contrast": s.contrast, "path": s.path, "shape": list(s.shape), "affine": s.affine.tolist(),
         "thickness_mm": s.slice_thickness_mm, "slice_axis": s.slice_axis,
         "n_train_points": int((train.stack_id == k).sum()),
         "registration_mm": transforms[k]["matrix_mm"] if transforms else np.eye(4).tolist()}
        for k, s in enumerate(stacks)
    ]
    save_checkpoint(paths["model.pt"], result.field, config, subject, stacks[0].codes, stack_meta)
    summary = {
        "outputs": {k: str(v) for k, v in paths.items()},
        "grid": {"shape": list(grid.shape), "affine": grid.affine.tolist(), "reference": ref},
        "stacks": stack_meta,
        "n_train_points": len(train),
        "steps": result.steps,
        "epochs_run": len(result.epochs),
        "stopped_early": result.stopped_early,
        "stopped_by": result.stopped_by,
        "final_mi": result.mi_curve[-1]["mi"] if result.mi_curve else None,
        "seconds": {"prepare": t_prep, "fit": result.seconds, "data_consistency": t_consistent, "render": t_render},
        "train_points_per_second": result.points_per_second,
        "transforms": transforms,
    }
    _write_json(config.to_dict(), paths["config.json"])
    _write_json({**summary, "epochs": result.epochs, "mi_curve": result.mi_curve}, paths["log.json"])
    _write_csv(result.epochs, paths["log.csv"])
    _write_csv(result.mi_curve, paths["mi.csv"])
    plot_mi_curve(result.mi_curve, paths["mi.png"], result.stopped_early)
    if transforms is not None:
        _write_json({"reference_stack": config.register_stack, "stacks": transforms}, paths["transforms.json"])
    return summary


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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    paths = _output_paths(out, subject.contrasts, with_model=False)
    _refuse_existing(paths, overwrite)
    check_writable(out)
    resolve_device(device)
    t0 = time.perf_counter()
    volumes = render_subject(model, grid, subject, config, device, threads)
    seconds = time.perf_counter() - t0
    for c in subject.contrasts:
        save_nifti(volumes[c], grid.affine, paths[c], ref_codes or codes)
    return {"outputs": {k: str(v) for k, v in paths.items()}, "grid": {"shape": list(grid.shape)}, "seconds": seconds}


def _stacks_of_model(payload: dict) -> list[Stack]:
    """The input stacks named in a checkpoint, re-read from their paths and checked against it."""
    stacks = []
    for meta in payload["stacks"]:
        s = load_stack(meta["path"], meta["contrast"], meta["thickness_mm"])
        if list(s.shape) != list(meta["shape"]) or not np.allclose(s.affine, meta["affine"], atol=1e-4):
            raise InputError(f"{s.path}: differs from the stack the model was fitted to (shape or affine)")
        stacks.append(s)
    return stacks


def check_model(model_path: str | os.PathLike, holdout_every: int = 0, progress: bool = True) -> dict:
    """Quality estimates of a fitted model without ground truth (see :mod:`inrsr.consistency`).

    Re-reads the input stacks named in ``model_path``, places them where registration found them,
    and reports per stack the self-consistency of the network with its voxels (foreground only;
    without the back-projected residuals, which would make it agree by construction).
    With ``holdout_every`` ≥ 2, each stack is also predicted by a refit that has not seen it: a
    stack whose contrast another stack has is left out whole; otherwise every
    ``holdout_every``-th slice is left out and cubic interpolation between the kept slices is
    scored on the same voxels. Refits use the model's options and foregrounds, with its
    transforms held fixed.
    """
    model, config, subject, _, payload = load_checkpoint(model_path)
    masks = [m for m, _ in subject.foregrounds]
    # Refits train on the foregrounds the fit used (user masks included), not on new estimates.
    stacks = [replace(s, mask=m) for s, m in zip(_stacks_of_model(payload), masks)]
    stacks = registered_stacks(stacks, [np.asarray(m.get("registration_mm", np.eye(4))) for m in payload["stacks"]])
    rows = []
    with model.without_correction():
        for s, mask in zip(stacks, masks):
            pred = resimulate(model, s, subject, config, where=mask)
            rows.append({"path": s.path, "contrast": s.contrast, "self": stack_scores(pred, s.data, mask)})
    if holdout_every:
        if holdout_every < 2:
            raise InputError(f"--holdout must be at least 2, got {holdout_every}")
        refit = config.replace(register=False)
        contrasts = [s.contrast for s in stacks]
        for k, (s, mask) in enumerate(zip(stacks, masks)):
            if contrasts.count(s.contrast) > 1:
                others = [t for i, t in enumerate(stacks) if i != k]
                sub, train = training_set(others, refit)
                field = fit_field(train, sub.contrasts, refit, progress=progress).field
                make_consistent(field, others, sub, refit)
                pred = resimulate(field, s, sub, refit, where=mask)
                rows[k]["left_out"] = {"mode": "stack", "inr": stack_scores(pred, s.data, mask)}
                continue
            held = held_out_slices(s.shape[s.slice_axis], holdout_every)
            if held.size == 0:
                continue
            exclude = np.zeros(s.shape, dtype=bool)
            np.moveaxis(exclude, s.slice_axis, 0)[held] = True
            excluded = [exclude if i == k else None for i in range(len(stacks))]
            sub, train = training_set(stacks, refit, excluded)
            field = fit_field(train, sub.contrasts, refit, progress=progress).field
            make_consistent(field, stacks, sub, refit, excluded)
            where = mask & exclude
            pred = resimulate(field, s, sub, refit, where=where)
            cubic = cubic_between_slices(s.data, s.slice_axis, held)
            rows[k]["left_out"] = {
                "mode": f"every {holdout_every}th slice", "slices": held.tolist(),
                "inr": stack_scores(pred, s.data, where), "cubic": stack_scores(cubic, s.data, where),
            }
    return {"model": str(model_path), "holdout_every": holdout_every, "stacks": rows}
