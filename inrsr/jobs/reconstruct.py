"""The in-memory reconstruction every job is built on: stacks → training set → fitted field →
data consistency, with the stacks placed where registration found them. Rendering is left to
the caller (:func:`inrsr.render.render_subject`), which chooses the grid."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace

import numpy as np

from inrsr.config import FitConfig
from inrsr.field.base import cubic_base
from inrsr.field.correction import stack_residuals
from inrsr.field.network import Field
from inrsr.fit.loop import FitResult, StepCallback, fit_field
from inrsr.fit.progress import PROGRESS_EVERY_S
from inrsr.fit.thickness import thickness_record
from inrsr.io.stack import Stack
from inrsr.register.joint import registered_stacks
from inrsr.samples.training_set import Subject, TrainingSet, build_training_set

__all__ = ["Reconstruction", "reconstruct", "training_set", "uses_base", "make_consistent", "GAP_TOL_MM"]

# Slices thinner than their spacing by more than this leave gaps (``--base auto``), mm.
GAP_TOL_MM = 0.01


@dataclass
class Reconstruction:
    """A fitted field and what it was fitted to.

    field : the field, with its back-projected residuals when ``config.data_consistency``.
    subject : contrasts, box, normaliser, intensity scales and foregrounds (placed as ``stacks``).
    train : the training tensors the fit used.
    fit : what happened while fitting (steps, timings, MI curve, poses).
    stacks : the input stacks, moved where registration found them (as given without it).
    matrices : per stack, the 4×4 world map registration found (``None`` without registration).
    consistency_s : seconds spent on data consistency (0 when off).
    """

    field: Field
    subject: Subject
    train: TrainingSet
    fit: FitResult
    stacks: list[Stack]
    matrices: list[np.ndarray] | None
    consistency_s: float


def uses_base(config: FitConfig, stacks: list[Stack]) -> bool:
    """Whether a fit of ``stacks`` learns a residual over a cubic base: ``--base cubic``, or
    ``auto`` when some stack's slices are thinner than their spacing (its slice profiles leave
    gaps that no voxel observes); never when registering."""
    if config.register or config.base == "none":
        return False
    return config.base == "cubic" or any(s.slice_thickness_mm < s.slice_spacing_mm - GAP_TOL_MM for s in stacks)


def training_set(
    stacks: list[Stack], config: FitConfig, exclude: list[np.ndarray | None] | None = None,
    foregrounds: list[np.ndarray] | None = None,
) -> tuple[Subject, TrainingSet]:
    """The subject description and training tensors that ``config`` asks for (``exclude``: voxels
    held out per stack; ``foregrounds``: the stacks' foregrounds when the caller has them; see
    :func:`~inrsr.samples.training_set.build_training_set`), with the base of ``config.base``
    (none when registering: the stacks move during the fit)."""
    subject, train = build_training_set(
        stacks, config.background_ratio, config.mi_points, config.seed, config.slice_profile, config.profile_points,
        exclude, foregrounds,
    )
    if uses_base(config, stacks):
        train = replace(train, base=cubic_base(stacks, subject, exclude, config.threads))
    return subject, train


def make_consistent(
    field: Field, stacks: list[Stack], subject: Subject, config: FitConfig,
    exclude: list[np.ndarray | None] | None = None,
) -> float:
    """With ``config.data_consistency``, give ``field`` its stacks' back-projected residuals (see
    :mod:`inrsr.field.correction`; ``exclude``: voxels held out per stack). ``stacks`` are placed
    where the fit put them. Returns the seconds it took (0 when off)."""
    if not config.data_consistency:
        return 0.0
    t0 = time.perf_counter()
    field.correction = stack_residuals(field, stacks, subject, config, exclude)
    return time.perf_counter() - t0


def reconstruct(
    stacks: list[Stack],
    config: FitConfig,
    *,
    prepared: tuple[Subject, TrainingSet] | None = None,
    exclude: list[np.ndarray | None] | None = None,
    progress: bool = False,
    callback: StepCallback | None = None,
    state_path: str | os.PathLike | None = None,
    resume: bool = False,
    initial_poses: np.ndarray | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> Reconstruction:
    """Fit one field to ``stacks`` and make it consistent with their voxels.

    ``prepared``: the result of :func:`training_set` for these stacks and options, when the
    caller needed it before the fit (otherwise it is built here). ``exclude``: voxels held out
    per stack. ``progress``, ``callback``, ``state_path``, ``resume``, ``initial_poses`` and
    ``progress_every_s`` are those of :func:`~inrsr.fit.loop.fit_field`; the state saved at
    ``state_path`` records the stacks' slice thickness
    (:func:`~inrsr.fit.thickness.thickness_record`). With registration, the stacks, their
    foregrounds and the residuals are taken where the fit placed the stacks.
    """
    subject, train = prepared if prepared is not None else training_set(stacks, config, exclude)
    result = fit_field(train, subject.contrasts, config, progress=progress, callback=callback, state_path=state_path,
                       resume=resume, initial_poses=initial_poses, progress_every_s=progress_every_s,
                       stack_thickness=thickness_record(stacks))
    matrices, moved = None, list(stacks)
    if result.poses is not None:
        matrices = result.poses.world_matrices(subject.normaliser)
        moved = registered_stacks(stacks, matrices)
        subject = replace(subject, foregrounds=[(m, s.affine) for (m, _), s in zip(subject.foregrounds, moved)])
    seconds = make_consistent(result.field, moved, subject, config, exclude)
    return Reconstruction(result.field, subject, train, result, moved, matrices, seconds)
