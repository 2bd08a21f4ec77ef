"""Slice thickness estimation: judged where the slices of two stacks of one contrast cross
(:mod:`inrsr.fit.crossings`, no fit), else learned in a short fit of the field.

A stack that shares its contrast with another whose slices cross its own gets the width at which
the two agree on their crossing lines. For the others, a stack's voxels are the field averaged
across each slice by the slice profile (box or Gaussian, :mod:`inrsr.acquisition.profiles`). When
the width of that average is wrong, a field that shares its structure between contrasts and between
stacks (whose slices cross the others' through-plane direction in their sharp in-plane directions)
explains the voxels less well, so the width is identifiable by the fit itself. Each stack's width
starts at its slice spacing and is learned by Adam together with a small, fast field (the ``fast``
engine, no cubic base); the estimate is the width at the end. On a single stack the field's own
smoothness prior is the only evidence, and the estimate is coarser (docs/design.md, "Slice
thickness estimation"; measurements in docs/experiment-log.md).

Widths are slice thicknesses in mm along each stack's slice normal (the FWHM for ``gaussian``).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import torch

from inrsr.config import PRESETS, FitConfig
from inrsr.device import resolve_device, torch_threads
from inrsr.errors import InputError, InputWarning
from inrsr.fit.crossings import crossing_widths_mm
from inrsr.geometry import slice_normal
from inrsr.io.stack import FEW_VOXELS, Stack, informative_voxels

__all__ = ["WIDTH_STEPS", "estimation_config", "estimation_turn", "wants_estimate", "needs_estimate",
           "estimate_thickness_mm", "learned_thickness_mm", "with_thickness_estimates", "with_estimates",
           "thickness_record", "with_recorded_thickness", "disagrees", "warn_if_disagrees", "looks_point_sampled",
           "is_uncertain", "single_stack_estimate_mm"]

# Steps of the estimating fit; its field is the ``fast`` preset's.
WIDTH_STEPS = 200
# Adam's step of the widths, in slice spacings per step (× the fit's learning-rate schedule).
WIDTH_LR = 0.09
# The widths' step rises linearly from 0 over this fraction of the steps, while the field takes
# shape: without it, Adam's first full-size steps follow the gradients of an untrained field and
# drove thin slices with gaps to the lower bound for some seeds (docs/experiment-log.md, 2026-12-01).
WIDTH_WARMUP = 0.4
# Estimates are kept within these multiples of the slice spacing. An estimate at the lower bound
# says that the voxels look like point samples of the field: thin slices, or anatomy smooth on the
# scale of the spacing, for which every width explains the voxels alike.
MIN_WIDTH, MAX_WIDTH = 0.02, 4.0
# An estimate within this fraction of the slice spacing is read as contiguous slices (thickness =
# spacing): the estimates of 4 mm slabs fall 0.2-0.6 mm short (docs/experiment-log.md, 2026-11-30),
# and contiguous slices are the commonest 2D protocol.
CONTIGUOUS = 0.2
# A learned estimate under this many slice spacings is uncertain: there thin slices with gaps and
# point samples explain the voxels almost alike, and for 4 mm spacing 1 mm slices came out 0.08-2.5
# mm and 2 mm slices 1.6-2.3 mm (1.3-3.0 mm sagittal; docs/design.md, "Slice thickness estimation").
UNCERTAIN = 0.6
# A given thickness and the estimate disagree when they differ by more than both of these.
DISAGREE_MM, DISAGREE_FRACTION = 1.0, 0.4


def wants_estimate(mode: str, stack: Stack) -> bool:
    """Whether ``--thickness-estimate`` ``mode`` asks for ``stack``'s thickness to be estimated
    and used: always with ``always``, when it is not given with ``auto``, never with ``off``."""
    return mode == "always" or (mode == "auto" and stack.thickness_source == "spacing")


def needs_estimate(stacks: list[Stack], config: FitConfig) -> list[bool]:
    """Per stack, :func:`wants_estimate` under ``config``; none with the ``point`` profile (which
    has no width)."""
    return [config.slice_profile != "point" and wants_estimate(config.thickness_estimate, s) for s in stacks]


def estimation_config(config: FitConfig) -> FitConfig:
    """The estimating fit's options: the ``fast`` field without a cubic base, registration, data
    consistency or early stopping, for :data:`WIDTH_STEPS` steps (never more than ``config``'s
    own step limit), with ``config``'s profile, execution and seed."""
    steps = min(WIDTH_STEPS, config.max_steps) if config.max_steps else WIDTH_STEPS
    return PRESETS["fast"].replace(
        base="none", max_steps=steps, data_consistency=False, register=False, early_stopping=False,
        mi_every=steps, c2f_fraction=0.0, slice_profile=config.slice_profile,
        profile_points=config.profile_points, seed=config.seed, threads=config.threads, device=config.device,
        precision=config.precision, grid_backend=config.grid_backend, thickness_estimate="off",
    )


def estimation_turn(affines: list[np.ndarray]) -> np.ndarray:
    """A turn of the world by 90° (4×4, about the origin) under which the estimating fit sees the
    stacks of voxel-centre → world ``affines``, so that no slice normal lies along world x (L–R,
    sagittal stacks) when an axis is free for it. Along the hash grid's first axis, whose hash
    factor is 1, the learned width of 2 mm sagittal slices 4 mm apart came out 0 mm in half the
    runs and that of 4 mm sagittal slabs as low as 2.2 mm; the same stacks turned so that their
    normals lie along y or z came out 1.3-3.0 and 3.2-4.5 mm (docs/experiment-log.md, 2026-12-02,
    commit e518090). Each normal counts for the world axis it is closest to; x is turned onto z
    when z is free (about y), else onto y (about z); the identity when no normal is closest to x
    or every axis has one. The widths, along each stack's own normal, keep their meaning."""
    taken = {int(np.argmax(np.abs(slice_normal(a)))) for a in affines}
    turn = np.eye(4)
    if 0 not in taken or len(taken) == 3:
        return turn
    if 2 not in taken:  # x → z, z → −x (about y)
        turn[:3, :3] = [[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    else:  # x → y, y → −x (about z)
        turn[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    return turn


def estimate_thickness_mm(stacks: list[Stack], config: FitConfig, progress: bool = False,
                          foregrounds: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[str]]:
    """Every stack's slice thickness (mm) under ``config``'s slice profile (``box`` or ``gaussian``),
    and how it was found (``crossings`` or ``fit``): judged where its slices cross those of
    another stack of its contrast (:func:`inrsr.fit.crossings.crossing_widths_mm`) when it has
    such a partner, else learned together with a small field (:func:`learned_thickness_mm`; run
    only when some stack has no partner). One within :data:`CONTIGUOUS` of the spacing is the
    spacing; the others are kept between :data:`MIN_WIDTH` and :data:`MAX_WIDTH` spacings (see
    :func:`looks_point_sampled`), and none beyond the stack's extent along its slice axis.
    Deterministic for a given seed on CPU. ``foregrounds``: every stack's
    (:func:`~inrsr.samples.training_set.stack_foregrounds`), when the caller has them."""
    if config.slice_profile == "point":
        raise ValueError("the point profile has no width to estimate")
    judged = crossing_widths_mm(stacks, config.slice_profile, config.seed, foregrounds)
    learned = None
    if any(w is None for w in judged):
        learned = learned_thickness_mm(stacks, config, progress, foregrounds)
    spacing = np.array([s.slice_spacing_mm for s in stacks])
    width = np.array([learned[k] if w is None else w for k, w in enumerate(judged)], dtype=np.float64) / spacing
    width = np.where(np.abs(width - 1.0) <= CONTIGUOUS, 1.0, np.clip(width, MIN_WIDTH, MAX_WIDTH))
    n_slices = np.array([s.shape[s.slice_axis] for s in stacks])
    width = np.minimum(width, n_slices)  # a thickness is never beyond the stack's whole extent
    return width * spacing, ["fit" if w is None else "crossings" for w in judged]


def learned_thickness_mm(stacks: list[Stack], config: FitConfig, progress: bool = False,
                         foregrounds: list[np.ndarray] | None = None) -> np.ndarray:
    """Every stack's slice width (mm, unrounded and unbounded), learned together with a small
    field (see the module's description) under ``config``'s slice profile.

    Each width starts at the stack's slice spacing and is learned at a rate that rises over the
    first :data:`WIDTH_WARMUP` of the steps. The fit sees the world turned by
    :func:`estimation_turn`. ``foregrounds``: as :func:`estimate_thickness_mm`'s."""
    from inrsr.fit.loop import Trainer
    from inrsr.samples.training_set import build_training_set

    est = estimation_config(config)
    turn = estimation_turn([s.affine for s in stacks])
    at_spacing = [replace(s, affine=turn @ s.affine, thickness_mm=s.slice_spacing_mm, thickness_estimated=False)
                  for s in stacks]
    subject, train = build_training_set(at_spacing, est.background_ratio, est.mi_points, est.seed,
                                        est.slice_profile, est.profile_points, foregrounds=foregrounds)
    device = resolve_device(est.device)
    with torch_threads(est.threads):
        trainer = Trainer(train, subject.contrasts, est, device)
        trainer.label = "slice thickness estimate"
        scale = torch.nn.Parameter(torch.ones(len(stacks), device=device))
        trainer.data.width_scale = scale
        trainer.optimiser.add_param_group({"params": [scale], "scale": WIDTH_LR / est.lr, "betas": (0.9, 0.999),
                                           "warmup_steps": round(WIDTH_WARMUP * est.max_steps)})
        trainer.run(progress)
    spacing = np.array([s.slice_spacing_mm for s in stacks])
    return np.abs(scale.detach().cpu().numpy().astype(np.float64)) * spacing


def looks_point_sampled(stack: Stack, width_mm: float) -> bool:
    """Whether an estimate of ``stack``'s slice thickness (mm) is at the lower bound,
    :data:`MIN_WIDTH` slice spacings: its voxels look like point samples of the field. Thin slices
    do; so do thick ones of anatomy that is smooth on the scale of the spacing (a phantom), whose
    voxels every width explains alike."""
    return width_mm <= MIN_WIDTH * stack.slice_spacing_mm * (1.0 + 1e-6)


def is_uncertain(stack: Stack, width_mm: float, estimator: str) -> bool:
    """Whether an estimate of ``stack``'s slice thickness (mm) made by ``estimator`` is uncertain:
    learned (``fit``), above the lower bound and under :data:`UNCERTAIN` slice spacings, where the
    learned width tells thin slices with gaps from point samples poorly. Widths judged where
    slices of one contrast cross (``crossings``) are not."""
    return (estimator == "fit" and not looks_point_sampled(stack, width_mm)
            and width_mm < UNCERTAIN * stack.slice_spacing_mm)


def _warn_if_uncertain(stack: Stack, width_mm: float, estimator: str) -> None:
    """One :class:`~inrsr.errors.InputWarning` when the estimate used for ``stack`` is at the lower
    bound (:func:`looks_point_sampled`) or uncertain (:func:`is_uncertain`); none for a stack
    already reported as holding almost nothing (fewer than
    :data:`~inrsr.io.stack.FEW_VOXELS` voxels differ from its background), whose estimate says
    nothing either way."""
    point, uncertain = looks_point_sampled(stack, width_mm), is_uncertain(stack, width_mm, estimator)
    if not (point or uncertain) or informative_voxels(stack) < FEW_VOXELS:
        return
    spacing = f"for a slice spacing of {stack.slice_spacing_mm:.3g} mm"
    if point:
        warnings.warn(f"{stack.path}: its voxels look like point samples (slice thickness estimated at the lower "
                      f"bound, {width_mm:.2g} mm, {spacing}); "
                      f"{width_mm:.2g} mm is used: give --thickness if its slices are thicker", InputWarning, stacklevel=3)
    else:
        warnings.warn(f"{stack.path}: its slice thickness is uncertain (estimated at {width_mm:.2g} mm {spacing}: "
                      f"under {UNCERTAIN * stack.slice_spacing_mm:.2g} mm, thin slices with gaps and point samples "
                      f"look alike); {width_mm:.2g} mm is used: give --thickness if the protocol is known",
                      InputWarning, stacklevel=3)


def disagrees(given_mm: float, estimate_mm: float) -> bool:
    """Whether a given slice thickness and its estimate disagree strongly: by more than
    :data:`DISAGREE_MM` and by more than :data:`DISAGREE_FRACTION` of the given one."""
    diff = abs(given_mm - estimate_mm)
    return diff > DISAGREE_MM and diff > DISAGREE_FRACTION * given_mm


def warn_if_disagrees(stack: Stack, width_mm: float, profile: str, used: bool) -> bool:
    """One :class:`~inrsr.errors.InputWarning` when ``stack``'s given thickness (sidecar or
    ``--thickness``) disagrees strongly with its estimate ``width_mm`` (:func:`disagrees`) under
    ``profile``, saying which of the two is ``used``; whether it warned."""
    if stack.thickness_source not in ("sidecar", "option") or not disagrees(stack.slice_thickness_mm, width_mm):
        return False
    warnings.warn(f"{stack.path}: its slice thickness is given as {stack.slice_thickness_mm:g} mm "
                  f"({stack.thickness_source}) but its voxels look {width_mm:.1f} mm thick ({profile} profile, slice "
                  f"spacing {stack.slice_spacing_mm:.3g} mm); {'the estimate' if used else 'the given one'} is used",
                  InputWarning, stacklevel=3)
    return True


def with_thickness_estimates(stacks: list[Stack], config: FitConfig, progress: bool = False,
                             foregrounds: list[np.ndarray] | None = None) -> list[Stack]:
    """``stacks`` with their estimated thickness recorded (``estimated_thickness_mm``) and used
    where :func:`needs_estimate` says so; unchanged when no stack needs one.

    When some stack needs an estimate, every stack's width is learned, and a stack whose given
    thickness (sidecar or ``--thickness``) disagrees strongly with its estimate (:func:`disagrees`)
    gets an :class:`~inrsr.errors.InputWarning`; so does a stack whose estimate is used and looks
    point-sampled (:func:`looks_point_sampled`) or is uncertain (:func:`is_uncertain`).
    ``foregrounds``: every stack's (:func:`~inrsr.samples.training_set.stack_foregrounds`), when
    the caller has them (the fit that follows needs them too).
    """
    if not any(needs_estimate(stacks, config)):
        return list(stacks)
    widths, estimators = estimate_thickness_mm(stacks, config, progress, foregrounds)
    return with_estimates(stacks, config, [float(w) for w in widths], estimators)


def with_estimates(stacks: list[Stack], config: FitConfig, widths_mm: list[float],
                   estimators: list[str]) -> list[Stack]:
    """``stacks`` with the thickness estimates ``widths_mm`` (made by ``estimators``) recorded,
    used where :func:`needs_estimate` says so, and warned about as
    :func:`with_thickness_estimates` says."""
    use = needs_estimate(stacks, config)
    out = []
    for s, w, how, used in zip(stacks, widths_mm, estimators, use):
        if not warn_if_disagrees(s, w, config.slice_profile, used) and used:
            _warn_if_uncertain(s, w, how)
        if used:
            out.append(replace(s, thickness_mm=w, thickness_estimated=True, estimated_thickness_mm=w,
                               thickness_estimator=how))
        else:
            out.append(replace(s, estimated_thickness_mm=w, thickness_estimator=how))
    return out


def thickness_record(stacks: list[Stack]) -> list[dict]:
    """Per stack, the slice thickness (mm) a fit of ``stacks`` uses and the estimate it was given
    (``None`` when none was made), for an interrupted fit's state: a resumed fit must train with
    the same widths (:func:`with_recorded_thickness`), and the estimate is not repeatable across
    devices."""
    return [{"thickness_mm": s.slice_thickness_mm, "estimated_thickness_mm": s.estimated_thickness_mm,
             "thickness_estimator": s.thickness_estimator} for s in stacks]


def with_recorded_thickness(stacks: list[Stack], config: FitConfig, record: list[dict], where: str) -> list[Stack]:
    """``stacks`` with the estimates of an interrupted fit's :func:`thickness_record` applied as
    :func:`with_estimates` does (no estimate is made again). :class:`~inrsr.errors.InputError`
    (naming ``where``, the state file) when the stacks would not be fitted with the widths that
    fit used: another number of stacks, or a thickness given differently."""
    if len(record) != len(stacks):
        raise InputError(f"{where}: cannot resume: the inputs differ from the interrupted fit's")
    if all(r["estimated_thickness_mm"] is not None for r in record):
        stacks = with_estimates(stacks, config, [float(r["estimated_thickness_mm"]) for r in record],
                                [str(r["thickness_estimator"]) for r in record])
    for s, r in zip(stacks, record):
        if abs(s.slice_thickness_mm - float(r["thickness_mm"])) > 1e-6 * float(r["thickness_mm"]):
            used = float(r["thickness_mm"])
            raise InputError(f"{where}: cannot resume: {s.path} would be fitted with a slice thickness of "
                             f"{s.slice_thickness_mm:.3g} mm, the interrupted fit used {used:.3g} mm")
    return stacks


def single_stack_estimate_mm(stack: Stack, profile: str, seed: int = 0, threads: int = 0, device: str = "auto",
                             progress: bool = False) -> float:
    """The slice thickness (mm) of one stack under ``profile`` (``box`` or ``gaussian``), estimated
    as :func:`estimate_thickness_mm` does with the ``default`` preset's forward model (for the
    baselines, which see one stack at a time), with an :class:`~inrsr.errors.InputWarning` when
    it looks point-sampled (:func:`looks_point_sampled`) or is uncertain (:func:`is_uncertain`)."""
    config = PRESETS["default"].replace(slice_profile=profile, seed=seed, threads=threads, device=device)
    widths, estimators = estimate_thickness_mm([stack], config, progress)
    width = float(widths[0])
    _warn_if_uncertain(stack, width, estimators[0])
    return width
