"""End-to-end jobs used by the CLI: fit stacks and write outputs; re-sample a saved model."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .config import FitConfig
from .errors import InputError
from .fit import fit_field, resolve_device, torch_threads
from .geometry import Box, Grid, isotropic_grid, overlap_fraction, voxel_sizes_mm
from .field import Field
from .io import HeaderCodes, Stack, atomic_path, check_writable, load_image, load_stack, save_nifti, write_text
from .plots import plot_mi_curve
from .render import render_grid
from .samples import Subject, TrainingSet, build_training_set

__all__ = [
    "StackSpec", "load_stacks", "reference_grid", "training_set", "render_subject", "output_grid", "fit_subject",
    "sample_model",
]

CONTRAST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class StackSpec:
    """What the user named for one input stack."""

    contrast: str
    path: str
    thickness_mm: float | None = None
    mask_path: str | None = None


def load_stacks(specs: list[StackSpec]) -> list[Stack]:
    """Load and cross-check the input stacks.

    Raises :class:`InputError` for no stacks, a bad or duplicate contrast name, any unreadable or
    invalid file, or a stack whose field of view does not overlap the first stack's.
    """
    if not specs:
        raise InputError("no input stacks: give --t1/--t2/--flair PATH or --stack CONTRAST=PATH")
    seen: set[str] = set()
    for spec in specs:
        if not CONTRAST_NAME.match(spec.contrast):
            raise InputError(f"{spec.path}: contrast name {spec.contrast!r} must be letters, digits, '_' or '-'")
        if spec.contrast in seen:
            raise InputError(f"{spec.path}: duplicate contrast name {spec.contrast!r} (each contrast takes one stack)")
        seen.add(spec.contrast)
    stacks = [load_stack(s.path, s.contrast, s.thickness_mm, s.mask_path) for s in specs]
    first = stacks[0]
    for s in stacks[1:]:
        if overlap_fraction((first.shape, first.affine), (s.shape, s.affine)) <= 0.0:
            raise InputError(f"{s.path}: field of view does not overlap that of {first.path}")
    return stacks


def reference_grid(path: str | os.PathLike) -> tuple[Grid, HeaderCodes]:
    """Exactly the voxel grid of the image at ``path``, and its header codes."""
    data, img = load_image(path, "reference image")
    return Grid(tuple(int(n) for n in data.shape), np.asarray(img.affine, dtype=np.float64)), HeaderCodes.from_header(img.header)


def training_set(stacks: list[Stack], config: FitConfig) -> tuple[Subject, TrainingSet]:
    """The subject description and training tensors that ``config`` asks for."""
    return build_training_set(
        stacks, config.background_ratio, config.mi_points, config.seed, config.slice_profile, config.profile_points
    )


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


def fit_subject(
    specs: list[StackSpec],
    config: FitConfig,
    out_dir: str | os.PathLike,
    ref: str | None = None,
    resolution_mm: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Load stacks, fit a field, render every contrast and write all outputs into ``out_dir``.

    Everything that can be checked is checked before fitting (inputs, reference, output folder,
    existing files), so a user mistake never leaves partial output. Returns a summary dict
    (paths, grid, timings, early-stopping outcome).
    """
    config = config.validate()
    resolve_device(config.device)
    stacks = load_stacks(specs)
    contrasts = [s.contrast for s in stacks]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    paths = _output_paths(out, contrasts, with_model=True)
    _refuse_existing(paths, overwrite)
    t0 = time.perf_counter()
    subject, train = training_set(stacks, config)
    finest = float(min(s.spacing_mm.min() for s in stacks))
    grid, ref_codes = output_grid(subject.box, ref, resolution_mm, finest)
    check_writable(out)
    t_prep = time.perf_counter() - t0

    result = fit_field(train, subject.contrasts, config, progress=progress)
    t1 = time.perf_counter()
    volumes = render_subject(result.field, grid, subject, config)
    t_render = time.perf_counter() - t1

    codes = ref_codes or stacks[0].codes
    for c in contrasts:
        save_nifti(volumes[c], grid.affine, paths[c], codes)
    stack_meta = [
        {"contrast": s.contrast, "path": s.path, "shape": list(s.shape), "affine": s.affine.tolist(),
         "thickness_mm": s.slice_thickness_mm, "slice_axis": s.slice_axis, "n_train_points": int((train.stack_id == k).sum())}
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
        "seconds": {"prepare": t_prep, "fit": result.seconds, "render": t_render},
        "train_points_per_second": result.points_per_second,
    }
    _write_json(config.to_dict(), paths["config.json"])
    _write_json({**summary, "epochs": result.epochs, "mi_curve": result.mi_curve}, paths["log.json"])
    _write_csv(result.epochs, paths["log.csv"])
    _write_csv(result.mi_curve, paths["mi.csv"])
    plot_mi_curve(result.mi_curve, paths["mi.png"], result.stopped_early)
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
