"""The optimisation loop: shuffled index batches over in-memory tensors, MSE per contrast, MI monitor."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import read_tagged
from .config import FitConfig
from .errors import InputError
from .field import Field, build_field
from .io import atomic_path
from .mi import mutual_information
from .monitor import MIPlateau
from .pose import StackPoses
from .register import soft_mutual_information
from .samples import TrainingSet

__all__ = [
    "FitResult", "fit_field", "resolve_device", "torch_threads", "predict_mi", "profile_forward", "profile_points",
    "training_forward", "smoothness_points", "smoothness_of", "smoothness_penalty",
    "detail_cut_mm", "save_fit_state", "load_fit_state",
]

# Coarse-to-fine fraction used by --register when --c2f-fraction is 0.
DEFAULT_REGISTER_C2F = 0.5
STATE_FORMAT = "inrsr-fit-state-1"
# Options that do not change the optimisation and may differ when resuming.
RESUME_MAY_CHANGE = ("device", "threads", "render_chunk", "render_foreground", "checkpoint_every_s")


@dataclass
class FitResult:
    """A fitted field and what happened while fitting.

    epochs : one dict per (possibly partial) epoch: ``epoch``, ``steps``, ``loss_<contrast>``,
        ``lr``, ``mi``, ``seconds`` (wall time since the start of the fit).
    mi_curve : one dict per MI evaluation: ``step``, ``epoch`` (fractional), ``mi`` (mean over
        contrast pairs) and ``mi_<a>_<b>`` per pair.
    """

    field: Field
    epochs: list[dict] = field(default_factory=list)
    mi_curve: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    stopped_by: str = "limit"  # "limit" (steps/epochs), "mi" (early stopping) or "time"
    poses: StackPoses | None = None  # the learned stack transforms (``config.register``)
    steps_per_epoch: int = 0
    steps: int = 0
    seconds: float = 0.0
    points_per_second: float = 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` intra-op CPU threads inside the block (0 leaves torch's default)."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_optimiser(model: Field, config: FitConfig, poses: StackPoses | None = None) -> torch.optim.Adam:
    """Adam with parameter groups: grid tables (``grid_lr``, or ``lr`` when 0), the rest of the
    field (``lr``) and the stack transforms (``register_lr``, in mm and degrees per step). Each
    group's ``scale`` is its learning rate relative to ``lr``, which the schedule multiplies. The
    field's groups use ``adam_beta2``; the transforms keep torch's 0.999. Uses the fused
    implementation when torch offers it for the device."""
    tables = [p for n, p in model.named_parameters() if n.endswith("table")]
    ids = {id(p) for p in tables}
    others = [p for p in model.parameters() if id(p) not in ids]
    grid_scale = (config.grid_lr or config.lr) / config.lr
    betas = (0.9, config.adam_beta2)
    groups = [{"params": others, "scale": 1.0, "betas": betas}]
    if tables:
        groups.append({"params": tables, "scale": grid_scale, "eps": 1e-15, "betas": betas})
    if poses is not None:
        groups.append({"params": list(poses.parameters()), "scale": config.register_lr / config.lr})
    try:
        return torch.optim.Adam(groups, lr=config.lr, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(groups, lr=config.lr)


def profile_forward(model: Field, points: torch.Tensor, contrast_id: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Predicted voxel values under the slice-profile forward model.

    ``points`` (B, K, 3) normalised positions of each voxel's K profile points (its centre plus
    offsets along its slice normal, see :func:`profile_points`), ``contrast_id`` (B,),
    ``weights`` (B, K). Returns (B,): ``Σ_k w_k f(p_k)``.
    """
    b, k = weights.shape
    if k == 1:
        return model.forward_own(points[:, 0], contrast_id)
    vals = model.forward_own(points.reshape(b * k, 3), contrast_id.repeat_interleave(k)).view(b, k)
    return (vals * weights).sum(dim=1)


def profile_points(
    x: torch.Tensor, offsets: torch.Tensor, stack_id: torch.Tensor, poses: StackPoses | None
) -> torch.Tensor:
    """``(B, K, 3)`` profile points of voxels centred at ``x`` (B, 3) with ``offsets`` (B, K, 3),
    moved by their stacks' rigid transforms when ``poses`` is given."""
    if poses is None:
        return x[:, None, :] + offsets
    return poses(x, offsets, stack_id)


def detail_cut_mm(step: int, total_steps: int, fraction: float, start_mm: float, finest_mm: float) -> float | None:
    """Coarse-to-fine schedule: the finest detail (mm) allowed at ``step``, shrinking geometrically
    from ``start_mm`` to ``finest_mm`` over the first ``fraction`` of the run; ``None`` (all detail)
    afterwards or when ``fraction`` is 0."""
    end = fraction * total_steps
    if step >= end or start_mm <= finest_mm:
        return None
    return float(start_mm * (finest_mm / start_mm) ** (step / end))


def smoothness_points(centres: torch.Tensor, jitter: float, step: float, generator: torch.Generator) -> torch.Tensor:
    """``(2n, 3)`` points for the smoothness penalty: ``n`` random points and, after them, each
    one's neighbour ``step`` away in a random direction (normalised units).

    The points are ``centres`` (n, 3) moved uniformly within ``±jitter`` per axis, so that they
    fill the space between sampled planes.
    """
    n = centres.shape[0]
    noise = torch.rand(n, 3, generator=generator).to(centres.device)
    p = centres + (2.0 * noise - 1.0) * jitter
    d = torch.randn(n, 3, generator=generator).to(centres.device)
    d = d / d.norm(dim=1, keepdim=True).clamp(min=1e-12) * step
    return torch.cat([p, p + d])


def smoothness_of(values: torch.Tensor, norm: str) -> torch.Tensor:
    """The smoothness penalty from the field's values ``(2n, C)`` at :func:`smoothness_points`.

    ``l1`` penalises ``|Δf|`` of each contrast (total variation, keeps edges), ``l2`` penalises
    ``Δf²``, ``joint`` penalises ``√(mean_c Δf_c²)`` per point (joint total variation: an edge
    costs less where the other contrasts have one too; equal to ``l1`` for one contrast).
    """
    pair = values.view(2, values.shape[0] // 2, -1)
    diff = pair[1] - pair[0]
    if norm == "joint":
        return (diff.float().square().mean(dim=1) + 1e-12).sqrt().mean()
    return diff.abs().mean() if norm == "l1" else diff.square().mean()


def smoothness_penalty(
    model: Field, centres: torch.Tensor, jitter: float, step: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """Mean finite difference of every contrast between random points near ``centres`` and their
    neighbours (:func:`smoothness_points`, :func:`smoothness_of`)."""
    return smoothness_of(model(smoothness_points(centres, jitter, step, generator)), norm)


def training_forward(
    model: Field, points: torch.Tensor, contrast_id: torch.Tensor, weights: torch.Tensor, extra: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's pass through the field: :func:`profile_forward`'s predictions ``(B,)`` of voxels
    with profile ``points`` (B, K, 3), ``contrast_id`` (B,) and ``weights`` (B, K), and every
    contrast at the ``extra`` points ``(M, 3)`` → ``(M, C)``.

    The shared-trunk variants take all points through the encoding and the trunk at once (one
    call instead of two costs less on the CPU)."""
    if model.variant == "single":
        return profile_forward(model, points, contrast_id, weights), model(extra)
    b, k = weights.shape
    vals = model(torch.cat([points.reshape(b * k, 3), extra]))
    own = vals[: b * k].gather(1, contrast_id.repeat_interleave(k)[:, None]).view(b, k)
    return (own.float() * weights).sum(dim=1), vals[b * k :]


def _lr_at(step: int, steps_per_epoch: int, total_steps: int, config: FitConfig) -> float:
    """Learning rate at ``step`` (0-based) of a run of ``total_steps``."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine-epoch":  # torch CosineAnnealingLR(T_max=epochs), stepped per epoch
        progress = (step // steps_per_epoch) / math.ceil(total_steps / steps_per_epoch)
    else:
        progress = step / total_steps
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def predict_mi(model: Field, coords: torch.Tensor, bins: int, chunk: int = 65536) -> dict[str, float]:
    """MI between every pair of predicted contrasts at ``coords``; ``mi`` is the pairs' mean."""
    preds = torch.cat([model(coords[i : i + chunk]) for i in range(0, coords.shape[0], chunk)]).cpu().numpy()
    out: dict[str, float] = {}
    for a, b in itertools.combinations(range(model.n_contrasts), 2):
        out[f"mi_{model.contrasts[a]}_{model.contrasts[b]}"] = mutual_information(preds[:, a], preds[:, b], bins)
    out["mi"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out


def alignment_gradient(
    model: Field,
    poses: StackPoses,
    x: torch.Tensor,
    offsets: torch.Tensor,
    stack_id: torch.Tensor,
    select: torch.Tensor,
    values: torch.Tensor,
    ref_contrast: int,
    weights: torch.Tensor,
    autocast: contextlib.AbstractContextManager,
    max_points: int = 4096,
) -> None:
    """Add to the poses' gradients that of ``-MI`` between the selected voxels' values and the
    reference contrast predicted at their moved profile points (voxel centres ``x``, ``offsets``,
    as in :meth:`StackPoses.forward`): a similarity that needs no shared intensity scale. The
    field's own parameters get no gradient from it."""
    sel = select.nonzero(as_tuple=True)[0][:max_points]
    if sel.numel() < 64:
        return
    with autocast:
        pts = poses(x[sel], offsets[sel], stack_id[sel])
        ref = profile_forward(model, pts, torch.full_like(sel, ref_contrast), weights[sel])
    mi = soft_mutual_information(values[sel].float().clamp(0, 1), ref.float().clamp(0, 1), torch.ones_like(values[sel]))
    params = [poses.rotation_deg, poses.shift_mm]
    grads = torch.autograd.grad(-mi, params)
    for p, g in zip(params, grads):
        p.grad = g if p.grad is None else p.grad + g


class _InterruptFlag:
    """Defers SIGINT/SIGTERM while training: the handler only sets :attr:`raised`, so the loop can
    finish its step, save its state and stop cleanly. A no-op outside the main thread."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.raised = False
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.raised:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.raised = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def save_fit_state(path: str | os.PathLike, state: dict) -> None:
    """Write a training state for ``--resume`` atomically (see :func:`fit_field`)."""
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)


def load_fit_state(path: str | os.PathLike | None, config: FitConfig, n_points: int) -> dict:
    """A training state saved by :func:`fit_field`, checked against this fit's config and data."""
    if path is None:
        raise InputError("no state file to resume from")
    p = Path(path)
    state = read_tagged(p, STATE_FORMAT, "inrsr fit state", "no interrupted fit to resume (the state file is missing)")
    saved = FitConfig.from_dict(state["config"]).to_dict()
    changed = [k for k, v in config.to_dict().items() if k not in RESUME_MAY_CHANGE and saved.get(k) != v]
    if changed:
        raise InputError(f"{p}: cannot resume with different options ({', '.join('--' + c.replace('_', '-') for c in changed)})")
    if state["n_points"] != n_points:
        raise InputError(f"{p}: cannot resume: the inputs differ from the interrupted fit's")
    return state


def fit_field(
    train: TrainingSet,
    contrasts: list[str],
    config: FitConfig,
    progress: bool = True,
    callback: Callable[[int, float, Field], None] | None = None,
    state_path: str | os.PathLike | None = None,
    resume: bool = False,
    initial_poses: np.ndarray | None = None,
) -> FitResult:
    """Fit a new field to ``train``: Adam on the sum over contrasts of each contrast's MSE.

    Each step draws ``batch_size`` voxels from a fresh random permutation per epoch (no per-item
    Python work); each voxel is predicted by the slice-profile forward model
    (:func:`profile_forward`) of its stack, moved by that stack's learned rigid transform when
    ``config.register`` is set. MI between the predicted contrasts on ``train.mi_coords`` is
    evaluated every ``mi_every`` steps (or once per epoch) and drives early stopping when it is
    enabled and there are at least two contrasts. Deterministic for a given seed on CPU.

    ``callback(step, seconds, field)``, when given, is called after every step with the training
    seconds so far; the time it spends is not counted (neither in ``seconds`` nor against
    ``time_limit_s``), so it can evaluate the field without distorting timings.

    With ``state_path``, the whole training state is saved there every ``checkpoint_every_s``
    seconds and when the fit is interrupted (``KeyboardInterrupt``); ``resume=True`` continues from
    that file, and the result equals an uninterrupted run's on CPU. The file is removed when the
    fit completes.

    ``initial_poses`` ``(S, 6)``: each stack's starting rotation (degrees) and shift (mm) when
    registering, e.g. from :func:`inrsr.register.align_rigid`; zero by default.
    """
    device = resolve_device(config.device)
    n_c = len(contrasts)
    with torch_threads(config.threads):
        model = build_field(contrasts, config, train.mm_per_unit, train.base).to(device)
        n_stacks = int(train.profile_weights.shape[0])
        poses = None
        if config.register and n_stacks > 1:
            if config.register_stack >= n_stacks:
                raise InputError(f"--register-stack {config.register_stack}: there are only {n_stacks} stacks")
            poses = StackPoses(train.stack_centres, config.register_stack, train.mm_per_unit).to(device)
            if initial_poses is not None:
                with torch.no_grad():
                    init = torch.as_tensor(np.asarray(initial_poses), dtype=torch.float32, device=device)
                    poses.rotation_deg.copy_(init[:, :3])
                    poses.shift_mm.copy_(init[:, 3:])
        optimiser = make_optimiser(model, config, poses)
        # Stacks that share a contrast with another stack are aligned by their data. Every stack
        # whose contrast differs from the reference stack's is also pulled by the MI between its
        # voxels and the reference contrast predicted through its forward model; for a stack with
        # a contrast of its own that is the only pull (its own head would follow it anywhere).
        mi_driven = data_blind = None
        ref_contrast = 0
        if poses is not None:
            stack_contrast = [int(train.contrast_id[train.stack_id == k][0]) for k in range(n_stacks)]
            ref_contrast = stack_contrast[config.register_stack]
            mi_driven = torch.tensor([c != ref_contrast for c in stack_contrast], device=device)
            data_blind = torch.tensor([stack_contrast.count(c) == 1 for c in stack_contrast], device=device)
        coords, values = train.coords.to(device), train.values.to(device)
        cids, mi_coords = train.contrast_id.to(device), train.mi_coords.to(device)
        sids = train.stack_id.to(device)
        offsets, weights = train.profile_offsets.to(device), train.profile_weights.to(device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
        reg_jitter = 0.5 * train.gap_mm / train.mm_per_unit
        reg_step = config.reg_step_mm / train.mm_per_unit
        c2f = config.c2f_fraction or (DEFAULT_REGISTER_C2F if poses is not None else 0.0)
        finest_mm = config.grid_finest_mm if config.encoding == "hash" else 0.5
        n = len(train)
        steps_per_epoch = max(1, math.ceil(n / config.batch_size))
        total_steps = steps_per_epoch * config.max_epochs
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        n_epochs = math.ceil(total_steps / steps_per_epoch)
        mi_every = config.mi_every or steps_per_epoch
        monitor = MIPlateau(config.es_buffer, config.es_tol, config.es_min_evals)
        use_mi = n_c >= 2
        generator = torch.Generator().manual_seed(config.seed)
        result = FitResult(field=model, steps_per_epoch=steps_per_epoch, poses=poses)
        step, first_epoch, first_batch, elapsed = 0, 0, 0, 0.0
        epoch_rng = generator.get_state()
        sums = torch.zeros(n_c, dtype=torch.float64, device=device)
        counts = torch.zeros(n_c, dtype=torch.float64, device=device)
        if resume:
            saved = load_fit_state(state_path, config, n)
            model.load_state_dict(saved["model"])
            if poses is not None:
                poses.load_state_dict(saved["poses"])
            optimiser.load_state_dict(saved["optimiser"])
            monitor.load_state(saved["monitor"])
            result.epochs, result.mi_curve = saved["epochs"], saved["mi_curve"]
            step, first_epoch, first_batch, elapsed = saved["step"], saved["epoch"], saved["batch"], saved["seconds"]
            epoch_rng = saved["epoch_rng"]
            sums, counts = saved["sums"].to(device), saved["counts"].to(device)
        start = time.perf_counter() - elapsed
        last_save = time.perf_counter()
        bar = tqdm(
            total=total_steps, initial=step, desc="fit", unit="step", file=sys.stderr, dynamic_ncols=True,
            disable=not progress or not sys.stderr.isatty(),
        )

        def save_state(epoch: int, batch: int) -> None:
            if state_path is None:
                return
            save_fit_state(state_path, {
                "config": config.to_dict(), "n_points": n, "model": model.state_dict(),
                "poses": poses.state_dict() if poses is not None else None, "optimiser": optimiser.state_dict(),
                "monitor": monitor.state(), "epochs": result.epochs, "mi_curve": result.mi_curve, "step": step,
                "epoch": epoch, "batch": batch, "seconds": time.perf_counter() - start, "epoch_rng": epoch_rng,
                "rng": generator.get_state(), "sums": sums.cpu(), "counts": counts.cpu(),
            })

        last_mi = result.mi_curve[-1]["mi"] if result.mi_curve else float("nan")
        stop, lr = False, _lr_at(step, steps_per_epoch, total_steps, config)
        try:
            interrupted = _InterruptFlag()
            for epoch in range(first_epoch, n_epochs):
                if epoch == first_epoch and resume:
                    generator.set_state(epoch_rng)
                    perm = torch.randperm(n, generator=generator).to(device)
                    generator.set_state(saved["rng"])
                else:
                    epoch_rng = generator.get_state()
                    perm = torch.randperm(n, generator=generator).to(device)
                    sums.zero_()
                    counts.zero_()
                for b in range(first_batch if epoch == first_epoch else 0, min(steps_per_epoch, total_steps - epoch * steps_per_epoch)):
                    lr = _lr_at(step, steps_per_epoch, total_steps, config)
                    for group in optimiser.param_groups:
                        group["lr"] = lr * group["scale"]
                    if c2f:
                        model.set_detail_mm(detail_cut_mm(step, total_steps, c2f, config.c2f_start_mm, finest_mm))
                    idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
                    c, s = cids[idx], sids[idx]
                    pts = profile_points(coords[idx], offsets[s], s, poses)
                    by_mi = mi_driven[s] if mi_driven is not None else None
                    data_pts = pts if data_blind is None else torch.where(data_blind[s][:, None, None], pts.detach(), pts)
                    reg_pts = coords.new_empty(0, 3)
                    if config.reg_weight > 0:
                        reg_pts = smoothness_points(coords[idx[: config.reg_points]], reg_jitter, reg_step, generator)
                    with autocast:
                        pred, reg_vals = training_forward(model, data_pts, c, weights[s], reg_pts)
                    sq = (pred.float() - values[idx]) ** 2
                    per_sum = torch.zeros(n_c, device=device).index_add_(0, c, sq)
                    per_n = torch.bincount(c, minlength=n_c).to(sq.dtype)
                    loss = (per_sum / per_n.clamp(min=1)).sum()  # MSE per contrast on its own voxels
                    if config.reg_weight > 0:
                        loss = loss + config.reg_weight * smoothness_of(reg_vals, config.reg_norm).float()
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    if by_mi is not None and bool(by_mi.any()):
                        alignment_gradient(model, poses, coords[idx], offsets[s], s, by_mi, values[idx], ref_contrast,
                                           weights[s], autocast)
                    optimiser.step()
                    sums += per_sum.detach().double()
                    counts += per_n.double()
                    step += 1
                    bar.update(1)
                    if callback is not None:
                        t_cb = time.perf_counter()
                        callback(step, t_cb - start, model)
                        start += time.perf_counter() - t_cb
                    if config.time_limit_s and time.perf_counter() - start >= config.time_limit_s:
                        result.stopped_by = "time"
                        stop = True
                    if use_mi and step % mi_every == 0:
                        mi = predict_mi(model, mi_coords, config.mi_bins)
                        last_mi = mi["mi"]
                        result.mi_curve.append({"step": step, "epoch": step / steps_per_epoch, **mi})
                        bar.set_postfix(loss=f"{loss.item():.2e}", mi=f"{last_mi:.4f}")
                        if monitor.update(last_mi) and config.early_stopping:
                            result.stopped_early, result.stopped_by = True, "mi"
                            stop = True
                    if stop:
                        break
                    if interrupted.raised:
                        save_state(epoch, b + 1)
                        raise KeyboardInterrupt
                    if state_path is not None and time.perf_counter() - last_save >= config.checkpoint_every_s:
                        save_state(epoch, b + 1)
                        last_save = time.perf_counter()
                mean_loss = (sums / counts.clamp(min=1)).cpu().numpy()
                result.epochs.append({
                    "epoch": epoch + 1,
                    "steps": step,
                    **{f"loss_{name}": float(v) for name, v in zip(contrasts, mean_loss)},
                    "lr": lr,
                    "mi": last_mi,
                    "seconds": time.perf_counter() - start,
                })
                if stop:
                    break
        finally:
            interrupted.restore()
            bar.close()
        if c2f:
            model.set_detail_mm(None)
        result.steps = step
        result.seconds = time.perf_counter() - start
        k = train.profile_weights.shape[1]
        result.points_per_second = step * config.batch_size * k / max(result.seconds, 1e-9)
        model.eval()
        if state_path is not None and Path(state_path).exists():
            Path(state_path).unlink()
    return result
