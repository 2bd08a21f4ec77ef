"""The training loop: shuffled index batches over in-memory tensors, one step at a time (see
:mod:`inrsr.fit.step`), with the MI monitor, the time limit, checkpoints for ``--resume`` and
per-epoch records.

:func:`fit_field` builds a :class:`Trainer` (setup), which runs epochs of steps; after each step
it probes (callback, time limit, MI and early stopping) and saves the training state when due;
after each epoch it records the mean losses.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from inrsr.config import FitConfig
from inrsr.device import autocast, resolve_device, torch_threads
from inrsr.errors import FitError, InputError
from inrsr.field.network import Field, build_field
from inrsr.fit.monitor import MIPlateau, predict_mi
from inrsr.fit.optimiser import DEFAULT_REGISTER_C2F, detail_cut_mm, learning_rate_at, make_optimiser, warmup_factor
from inrsr.fit.progress import PROGRESS_EVERY_S, Progress
from inrsr.fit.state import InterruptFlag, load_fit_state, save_fit_state
from inrsr.fit.step import StepData, train_step, voxel_base_sums
from inrsr.register.poses import StackPoses, registration_roles
from inrsr.samples.training_set import TrainingSet

__all__ = ["FitResult", "Trainer", "fit_field"]

StepCallback = Callable[[int, float, Field], None]
# Rows of the loss curve a fit records (one every total_steps / LOSS_POINTS steps).
LOSS_POINTS = 100


@dataclass
class FitResult:
    """A fitted field and what happened while fitting.

    epochs : one dict per (possibly partial) epoch: ``epoch``, ``steps``, ``loss_<contrast>``,
        ``lr``, ``mi``, ``seconds`` (wall time since the start of the fit).
    mi_curve : one dict per MI evaluation: ``step``, ``epoch`` (fractional), ``mi`` (mean over
        contrast pairs) and ``mi_<a>_<b>`` per pair.
    loss_curve : about :data:`LOSS_POINTS` dicts over the run: ``step`` and ``loss_<contrast>``,
        the mean training loss of each contrast over the steps since the previous row.
    """

    field: Field
    epochs: list[dict] = field(default_factory=list)
    mi_curve: list[dict] = field(default_factory=list)
    loss_curve: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    stopped_by: str = "limit"  # "limit" (steps/epochs), "mi" (early stopping) or "time"
    poses: StackPoses | None = None  # the learned stack transforms (``config.register``)
    steps_per_epoch: int = 0
    steps: int = 0
    seconds: float = 0.0
    points_per_second: float = 0.0


@dataclass(frozen=True)
class Plan:
    """How long a fit runs: ``steps_per_epoch`` batches per pass over the ``n`` training voxels,
    ``total_steps`` in all (``n_epochs`` passes, the last possibly partial), MI every ``mi_every``
    steps; coarse-to-fine over the first ``c2f`` of the steps down to ``finest_mm``."""

    n: int
    steps_per_epoch: int
    total_steps: int
    n_epochs: int
    mi_every: int
    c2f: float
    finest_mm: float

    @classmethod
    def of(cls, n: int, config: FitConfig, registering: bool) -> "Plan":
        steps_per_epoch = max(1, math.ceil(n / config.batch_size))
        total_steps = steps_per_epoch * config.max_epochs
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        return cls(
            n=n, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
            n_epochs=math.ceil(total_steps / steps_per_epoch), mi_every=config.mi_every or steps_per_epoch,
            c2f=config.c2f_fraction or (DEFAULT_REGISTER_C2F if registering else 0.0),
            finest_mm=config.grid_finest_mm if config.encoding == "hash" else 0.5,
        )


def make_poses(train: TrainingSet, config: FitConfig, device: torch.device,
               initial_poses: np.ndarray | None) -> StackPoses | None:
    """The learnable stack transforms when ``config.register`` asks for them and there are at
    least two stacks (``initial_poses`` ``(S, 6)``: starting rotation in degrees and shift in mm)."""
    n_stacks = int(train.profile_weights.shape[0])
    if not (config.register and n_stacks > 1):
        return None
    if config.register_stack >= n_stacks:
        raise InputError(f"--register-stack {config.register_stack}: there are only {n_stacks} stacks")
    poses = StackPoses(train.stack_centres, config.register_stack, train.mm_per_unit).to(device)
    if initial_poses is not None:
        with torch.no_grad():
            init = torch.as_tensor(np.asarray(initial_poses), dtype=torch.float32, device=device)
            poses.rotation_deg.copy_(init[:, :3])
            poses.shift_mm.copy_(init[:, 3:])
    return poses


def step_data(
    train: TrainingSet, n_contrasts: int, config: FitConfig, device: torch.device, registering: bool
) -> StepData:
    """The training tensors on ``device``, with the registration roles when ``registering``."""
    roles = registration_roles(train, config.register_stack, device) if registering else (None, None, 0)
    return StepData(
        coords=train.coords.to(device), values=train.values.to(device), contrast_id=train.contrast_id.to(device),
        stack_id=train.stack_id.to(device), offsets=train.profile_offsets.to(device),
        weights=train.profile_weights.to(device), n_contrasts=n_contrasts,
        reg_jitter=0.5 * train.gap_mm / train.mm_per_unit, reg_step=config.reg_step_mm / train.mm_per_unit,
        mi_driven=roles[0], data_blind=roles[1], ref_contrast=roles[2],
    )


class Trainer:
    """One fit in progress: the field, its optimiser and schedule, the position in the run, and
    what has been recorded so far (:class:`FitResult`).

    ``callback(step, seconds, field)``, when given, is called after every step with the training
    seconds so far; its own time is counted neither in ``seconds`` nor against ``time_limit_s``.
    With ``state_path``, the training state is saved there every ``checkpoint_every_s`` seconds
    and when interrupted (then :class:`KeyboardInterrupt` is raised), and the finished fit's
    state when it ends (the caller removes it once the outputs are written), with
    ``stack_thickness`` (:func:`inrsr.fit.thickness.thickness_record`) when given. A loss that is
    not finite stops the fit with :class:`~inrsr.errors.FitError`.
    """

    def __init__(
        self, train: TrainingSet, contrasts: list[str], config: FitConfig, device: torch.device,
        initial_poses: np.ndarray | None = None, callback: StepCallback | None = None,
        state_path: str | os.PathLike | None = None, stack_thickness: list[dict] | None = None,
    ):
        self.config, self.device, self.callback, self.state_path = config, device, callback, state_path
        self.stack_thickness = stack_thickness
        self.contrasts = list(contrasts)
        self.model = build_field(contrasts, config, train.mm_per_unit, train.base).to(device)
        self.poses = make_poses(train, config, device, initial_poses)
        self.optimiser = make_optimiser(self.model, config, self.poses)
        self.data = step_data(train, len(contrasts), config, device, self.poses is not None)
        self.plan = Plan.of(len(train), config, self.poses is not None)
        if self.model.base is not None and self.poses is None and self.model.variant != "single" \
                and self.plan.total_steps * config.batch_size >= len(train):
            # every voxel is visited at least once on average: its base sum once costs less than
            # sampling the base volume at its profile points each time
            self.data.base_sums = voxel_base_sums(self.model, self.data)
        self.mi_coords = train.mi_coords.to(device)
        self.autocast = autocast(device, config.precision)
        self.monitor = MIPlateau(config.es_buffer, config.es_tol, config.es_min_evals)
        self.use_mi = len(contrasts) >= 2
        self.generator = torch.Generator().manual_seed(config.seed)
        self.result = FitResult(field=self.model, steps_per_epoch=self.plan.steps_per_epoch, poses=self.poses)
        self.step, self.first_epoch, self.first_batch, self.elapsed = 0, 0, 0, 0.0
        self.epoch_rng = self.generator.get_state()
        self.resumed_rng: torch.Tensor | None = None
        self.sums = torch.zeros(len(contrasts), dtype=torch.float64, device=device)
        self.counts = torch.zeros(len(contrasts), dtype=torch.float64, device=device)
        self.curve_sums, self.curve_counts = torch.zeros_like(self.sums), torch.zeros_like(self.counts)
        self.stop, self.last_mi, self.loss = False, float("nan"), None
        self.finished = False  # restored from the state of a fit that had ended
        self.label = "fit"  # names the run in progress lines

    # -- resume state --------------------------------------------------------------------------

    def restore(self, saved: dict) -> None:
        """Continue from a state written by :meth:`save_state` (checked by ``load_fit_state``)."""
        self.model.load_state_dict(saved["model"])
        if self.poses is not None:
            self.poses.load_state_dict(saved["poses"])
        self.finished = bool(saved.get("finished", False))
        self.result.stopped_by = saved.get("stopped_by", "limit")
        self.result.stopped_early = bool(saved.get("stopped_early", False))
        if not self.finished:
            self.optimiser.load_state_dict(saved["optimiser"])
        self.monitor.load_state(saved["monitor"])
        self.result.epochs, self.result.mi_curve = saved["epochs"], saved["mi_curve"]
        self.result.loss_curve = list(saved.get("loss_curve", []))
        self.step, self.first_epoch, self.first_batch = saved["step"], saved["epoch"], saved["batch"]
        self.elapsed, self.epoch_rng, self.resumed_rng = saved["seconds"], saved["epoch_rng"], saved["rng"]
        self.sums, self.counts = saved["sums"].to(self.device), saved["counts"].to(self.device)

    def save_state(self, epoch: int, batch: int, finished: bool = False) -> None:
        """Write everything needed to continue at ``batch`` of ``epoch`` (nothing without a path);
        ``finished``: the fit has ended, and the state (without the optimiser's) only keeps it
        until its outputs are written."""
        if self.state_path is None:
            return
        save_fit_state(self.state_path, {
            "config": self.config.to_dict(), "n_points": self.plan.n, "model": self.model.state_dict(),
            "poses": self.poses.state_dict() if self.poses is not None else None, "finished": finished,
            "stopped_by": self.result.stopped_by, "stopped_early": self.result.stopped_early,
            "optimiser": None if finished else self.optimiser.state_dict(), "monitor": self.monitor.state(),
            "epochs": self.result.epochs,
            "mi_curve": self.result.mi_curve, "loss_curve": self.result.loss_curve, "step": self.step, "epoch": epoch, "batch": batch,
            "seconds": time.perf_counter() - self.start, "epoch_rng": self.epoch_rng,
            "rng": self.generator.get_state(), "sums": self.sums.cpu(), "counts": self.counts.cpu(),
            "stack_thickness": self.stack_thickness,
        })

    # -- the loop ------------------------------------------------------------------------------

    def run(self, progress: bool, progress_every_s: float = PROGRESS_EVERY_S) -> FitResult:
        """Train until the step or epoch limit, the time limit or MI early stopping; with
        ``progress``, a bar on stderr (a line every ``progress_every_s`` seconds when stderr is
        not a terminal, see :class:`~inrsr.fit.progress.Progress`)."""
        plan = self.plan
        self.start = time.perf_counter() - self.elapsed
        self.last_save = time.perf_counter()
        self.bar = Progress(plan.total_steps, self.label, initial=self.step, enabled=progress, every_s=progress_every_s)
        self.last_mi = self.result.mi_curve[-1]["mi"] if self.result.mi_curve else float("nan")
        self.lr = learning_rate_at(self.step, plan.steps_per_epoch, plan.total_steps, self.config)
        try:
            self.interrupted = InterruptFlag()
            for epoch in range(self.first_epoch, 0 if self.finished else plan.n_epochs):
                self.run_epoch(epoch)
                self.record_epoch(epoch)
                if self.stop:
                    break
        finally:
            self.interrupted.restore()
            self.bar.close()
        return self.finish()

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This epoch's random order of the training voxels (the resumed epoch's order again)."""
        n, generator = self.plan.n, self.generator
        if epoch == self.first_epoch and self.resumed_rng is not None:
            generator.set_state(self.epoch_rng)
            perm = torch.randperm(n, generator=generator).to(self.device)
            generator.set_state(self.resumed_rng)
            return perm
        self.epoch_rng = generator.get_state()
        perm = torch.randperm(n, generator=generator).to(self.device)
        self.sums.zero_()
        self.counts.zero_()
        return perm

    def run_epoch(self, epoch: int) -> None:
        """The steps of one epoch (fewer when the run's step limit falls inside it)."""
        plan, config = self.plan, self.config
        perm = self.epoch_order(epoch)
        first = self.first_batch if epoch == self.first_epoch else 0
        for b in range(first, min(plan.steps_per_epoch, plan.total_steps - epoch * plan.steps_per_epoch)):
            self.lr = learning_rate_at(self.step, plan.steps_per_epoch, plan.total_steps, config)
            for group in self.optimiser.param_groups:
                group["lr"] = self.lr * group["scale"] * warmup_factor(self.step, group.get("warmup_steps", 0))
            if plan.c2f:
                self.model.set_detail_mm(detail_cut_mm(self.step, plan.total_steps, plan.c2f, config.c2f_start_mm,
                                                       plan.finest_mm))
            idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
            self.loss, per_sum, per_n = train_step(self.model, self.poses, self.optimiser, self.data, idx, config,
                                                   self.generator, self.autocast)
            self.check_finite()
            self.sums += per_sum.detach().double()
            self.counts += per_n.double()
            self.curve_sums += per_sum.detach().double()
            self.curve_counts += per_n.double()
            self.step += 1
            self.record_loss()
            self.probe()
            self.bar.update(1)  # after the probe, so that a progress line shows this step's loss and MI
            if self.stop:
                break
            if self.interrupted.raised:
                self.save_state(epoch, b + 1)
                raise KeyboardInterrupt
            if self.state_path is not None and time.perf_counter() - self.last_save >= config.checkpoint_every_s:
                self.save_state(epoch, b + 1)
                self.last_save = time.perf_counter()

    def check_finite(self) -> None:
        """Stop with :class:`FitError` when this step's loss is not finite (the weights are then
        lost: the optimisation diverged, or the data or options give no finite prediction)."""
        loss = float(self.loss.detach())
        if not math.isfinite(loss):
            raise FitError(
                f"the fit diverged: the loss became {loss} at step {self.step + 1} (learning rate {self.lr:.3g}); "
                "try a lower --lr (nothing was written)"
            )

    def probe(self) -> None:
        """After a step: the callback (its time not counted), the time limit, and every
        ``mi_every`` steps the MI between predicted contrasts and the early-stopping rule."""
        config, result = self.config, self.result
        if self.callback is not None:
            t_cb = time.perf_counter()
            self.callback(self.step, t_cb - self.start, self.model)
            self.start += time.perf_counter() - t_cb
        if config.time_limit_s and time.perf_counter() - self.start >= config.time_limit_s:
            result.stopped_by = "time"
            self.stop = True
        if self.use_mi and self.step % self.plan.mi_every == 0:
            mi = predict_mi(self.model, self.mi_coords, config.mi_bins)
            self.last_mi = mi["mi"]
            result.mi_curve.append({"step": self.step, "epoch": self.step / self.plan.steps_per_epoch, **mi})
            if self.monitor.update(self.last_mi) and config.early_stopping:
                result.stopped_early, result.stopped_by = True, "mi"
                self.stop = True
        if self.step % self.plan.mi_every == 0:
            self.bar.note(loss=f"{self.loss.item():.2e}", **({"MI": f"{self.last_mi:.4f}"} if self.use_mi else {}))

    def record_loss(self, last: bool = False) -> None:
        """Every ``total_steps / LOSS_POINTS`` steps (and, with ``last``, for the steps since the
        previous row when the fit ends), a row of :attr:`FitResult.loss_curve`: mean loss per
        contrast since the previous row."""
        every = max(1, self.plan.total_steps // LOSS_POINTS)
        if (self.step % every and not last) or not float(self.curve_counts.sum()):
            return
        mean = (self.curve_sums / self.curve_counts.clamp(min=1)).cpu().numpy()
        self.result.loss_curve.append({"step": self.step, **{f"loss_{c}": float(v) for c, v in
                                                             zip(self.contrasts, mean)}})
        self.curve_sums.zero_()
        self.curve_counts.zero_()

    def record_epoch(self, epoch: int) -> None:
        """One row of :attr:`FitResult.epochs`: mean loss per contrast over the epoch's steps."""
        mean_loss = (self.sums / self.counts.clamp(min=1)).cpu().numpy()
        self.result.epochs.append({
            "epoch": epoch + 1,
            "steps": self.step,
            **{f"loss_{name}": float(v) for name, v in zip(self.contrasts, mean_loss)},
            "lr": self.lr,
            "mi": self.last_mi,
            "seconds": time.perf_counter() - self.start,
        })

    def finish(self) -> FitResult:
        """Release all detail, fill in the totals, put the field in eval mode, save the finished state."""
        result = self.result
        if self.plan.c2f:
            self.model.set_detail_mm(None)
        self.record_loss(last=True)
        result.steps = self.step
        result.seconds = time.perf_counter() - self.start
        k = self.data.weights.shape[1]
        result.points_per_second = self.step * self.config.batch_size * k / max(result.seconds, 1e-9)
        self.model.eval()
        if not self.finished:
            self.save_state(self.plan.n_epochs, 0, finished=True)
        return result


def fit_field(
    train: TrainingSet,
    contrasts: list[str],
    config: FitConfig,
    progress: bool = True,
    callback: StepCallback | None = None,
    state_path: str | os.PathLike | None = None,
    resume: bool = False,
    initial_poses: np.ndarray | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
    stack_thickness: list[dict] | None = None,
) -> FitResult:
    """Fit a new field to ``train``: Adam on the sum over contrasts of each contrast's MSE.

    Each step draws ``batch_size`` voxels from a fresh random permutation per epoch (no per-item
    Python work); each voxel is predicted by the slice-profile forward model
    (:func:`inrsr.acquisition.forward.profile_forward`) of its stack, moved by that stack's learned
    rigid transform when ``config.register`` is set. MI between the predicted contrasts on
    ``train.mi_coords`` is evaluated every ``mi_every`` steps (or once per epoch) and drives early
    stopping when it is enabled and there are at least two contrasts. Deterministic for a given
    seed on CPU.

    ``callback(step, seconds, field)``: see :class:`Trainer`. With ``state_path``, the whole
    training state is saved there every ``checkpoint_every_s`` seconds and when the fit is
    interrupted (``KeyboardInterrupt``), and the finished fit's state at the end; ``resume=True``
    continues from that file (or takes the finished fit from it), and the result equals an
    uninterrupted run's on CPU. The caller removes the file once it has written what it needs;
    ``stack_thickness`` is saved with the state for it (see :class:`Trainer`).
    A loss that is not finite stops the fit with :class:`~inrsr.errors.FitError`.

    ``initial_poses`` ``(S, 6)``: each stack's starting rotation (degrees) and shift (mm) when
    registering, e.g. from :func:`inrsr.register.rigid.align_rigid`; zero by default.

    ``progress``: a bar on stderr, or when stderr is not a terminal a line every
    ``progress_every_s`` seconds (see :class:`~inrsr.fit.progress.Progress`).
    """
    device = resolve_device(config.device)
    with torch_threads(config.threads):
        trainer = Trainer(train, contrasts, config, device, initial_poses, callback, state_path, stack_thickness)
        if resume:
            trainer.restore(load_fit_state(state_path, config, len(train)))
        return trainer.run(progress, progress_every_s)
