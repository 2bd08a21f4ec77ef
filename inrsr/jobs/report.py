"""The report job: ``report.html`` of a fit, written at the end of ``inrsr fit`` or rebuilt from
a saved model's folder by ``inrsr report``."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from inrsr import __version__
from inrsr.acquisition.forward import resimulate
from inrsr.config import FitConfig
from inrsr.errors import InputError
from inrsr.evaluate.consistency import stack_scores
from inrsr.field.checkpoint import load_checkpoint
from inrsr.field.network import Field
from inrsr.geometry import Grid, fov_corners_world
from inrsr.io.files import OutputLock, check_output_file, refuse_inputs, write_text
from inrsr.io.nifti import load_image
from inrsr.io.stack import Stack
from inrsr.jobs.check import stacks_of_model
from inrsr.register.joint import registered_stacks
from inrsr.report.evidence import Evidence
from inrsr.report.page import page
from inrsr.report.planes import foreground_centre_mm
from inrsr.report.sections import brain_support, build_sections
from inrsr.samples.training_set import Subject

__all__ = ["REPORT_FILE", "report_html", "self_consistency", "fit_evidence", "write_report", "report_model"]

REPORT_FILE = "report.html"
# Foreground voxels per stack on which the report scores self-consistency, at most.
CONSISTENCY_VOXELS = 30_000


def self_consistency(field: Field, stacks: list[Stack], masks: list[np.ndarray], subject: Subject,
                     config: FitConfig, max_voxels: int = CONSISTENCY_VOXELS, seed: int = 0) -> list[dict]:
    """Per stack, :func:`~inrsr.evaluate.consistency.stack_scores` of the network (without its
    back-projected residuals) re-simulating the stack, on at most ``max_voxels`` foreground
    voxels drawn at random (``seed``). ``stacks`` are placed where the fit put them."""
    rng = np.random.default_rng(seed)
    rows = []
    with field.without_correction():
        for s, m in zip(stacks, masks):
            where = m
            idx = np.flatnonzero(m.ravel())
            if idx.size > max_voxels:
                where = np.zeros(m.size, dtype=bool)
                where[rng.choice(idx, max_voxels, replace=False)] = True
                where = where.reshape(m.shape)
            pred = resimulate(field, s, subject, config, where=where)
            rows.append(stack_scores(pred, s.data, where))
    return rows


def fit_evidence(folder: Path, grid: Grid, volumes: dict[str, np.ndarray], field: Field, subject: Subject,
                 stacks: list[Stack], file_affines: list[np.ndarray], config: FitConfig, log: dict,
                 point_mm: np.ndarray | None = None) -> Evidence:
    """The report's :class:`Evidence` of a fit held in memory (``stacks`` placed where the fit
    put them; masks from ``subject.foregrounds``), with its self-consistency scores and support
    summary computed."""
    masks = [m for m, _ in subject.foregrounds]
    scores = self_consistency(field, stacks, masks, subject, config)
    point = foreground_centre_mm(subject.foregrounds) if point_mm is None else np.asarray(point_mm, dtype=np.float64)
    ev = Evidence(folder, grid, volumes, stacks, file_affines, masks, config, log, scores, point)
    ev.support = brain_support(ev)
    return ev


def report_html(ev: Evidence) -> str:
    """The whole report page of ``ev``."""
    log = ev.log
    meta = (f"inrsr {log.get('version', __version__)} · {log.get('date', 'date not recorded')} · "
            f"{len(ev.stacks)} stacks, contrasts {', '.join(ev.contrasts)} · output {ev.folder}")
    return page(f"inrsr report: {ev.folder.name}", meta, list(log.get("warnings") or []), build_sections(ev))


def write_report(path: str | os.PathLike, ev: Evidence) -> Path:
    """Write the report of ``ev`` to ``path`` (atomically)."""
    return write_text(path, report_html(ev))


def _model_evidence(model_path: Path, point_mm: np.ndarray | None) -> Evidence:
    """The :class:`Evidence` of a saved model: its folder's volumes and ``log.json``, its input
    stacks re-read (see :func:`~inrsr.jobs.check.stacks_of_model`)."""
    field, config, subject, _, payload = load_checkpoint(model_path)
    folder = model_path.parent
    log_path = folder / "log.json"
    try:
        log = json.loads(log_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{log_path}: cannot read the fit's log ({type(exc).__name__}); the report needs the "
                         "folder that `inrsr fit` wrote") from None
    if not isinstance(log, dict):
        raise InputError(f"{log_path}: not a log written by `inrsr fit`")
    volumes, grid = {}, None
    for c in subject.contrasts:
        data, img = load_image(folder / f"{c}.nii.gz", f"output volume of {c}")
        if grid is not None and (data.shape != grid.shape or not np.allclose(img.affine, grid.affine, atol=1e-4)):
            raise InputError(f"{folder / f'{c}.nii.gz'}: not on the grid of the other output volumes")
        grid = Grid(tuple(data.shape), img.affine)
        volumes[c] = data
    if point_mm is not None:
        corners = fov_corners_world(grid.shape, grid.affine)
        if np.any(point_mm < corners.min(axis=0)) or np.any(point_mm > corners.max(axis=0)):
            raise InputError(f"--point {' '.join(f'{v:g}' for v in point_mm)}: outside the output grid's field of "
                             f"view ({_span(corners)})")
    stacks = stacks_of_model(payload, model_path)
    file_affines = [s.affine for s in stacks]
    moved = registered_stacks(stacks, [np.asarray(m.get("registration_mm", np.eye(4))) for m in payload["stacks"]])
    subject = replace(subject, foregrounds=[(m, s.affine) for (m, _), s in zip(subject.foregrounds, moved)])
    return fit_evidence(folder, grid, volumes, field, subject, moved, file_affines, config, log, point_mm)


def _span(corners: np.ndarray) -> str:
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return ", ".join(f"{a} {l:.1f} to {h:.1f} mm" for a, l, h in zip("xyz", lo, hi))


def report_model(model_path: str | os.PathLike, output: str | os.PathLike | None = None,
                 point_mm: tuple[float, float, float] | None = None, overwrite: bool = False) -> Path:
    """Rebuild the report of the fit whose ``model.pt`` is ``model_path`` (its folder must hold
    the fit's volumes and ``log.json``; its input stacks must still exist), into ``output``
    (default: ``report.html`` beside the model). ``point_mm``: world point the planes pass
    through (default: the centre of the stacks' foregrounds). The output's folder is locked for
    the run, so that a report is never built while a fit writes there."""
    model = Path(model_path)
    out = Path(output) if output is not None else model.parent / REPORT_FILE
    check_output_file(out, overwrite, (".html", ".htm"))
    refuse_inputs([out], [model, model.parent / "log.json"])
    point = None if point_mm is None else np.asarray(point_mm, dtype=np.float64)
    with OutputLock(out.parent):  # not while a fit writes into that folder
        check_output_file(out, overwrite, (".html", ".htm"))
        return write_report(out, _model_evidence(model, point))
