"""The optimisation loop: shuffled index batches over in-memory tensors, MSE per contrast, MI monitor."""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import FitConfig
from .errors import InputError
from .field import Field, build_field
from .mi import mutual_information
from .monitor import MIPlateau
from .samples import TrainingSet

__all__ = ["FitResult", "fit_field", "resolve_device", "torch_threads", "predict_mi"]


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


def make_optimiser(model: Field, config: FitConfig) -> torch.optim.Adam:
    """Adam with two parameter groups: grid tables (``grid_lr``, or ``lr`` when 0) and the rest
    (``lr``). Each group's ``scale`` is its learning rate relative to ``lr``, which the schedule
    multiplies. Uses the fused implementation when torch offers it for the device."""
    tables = [p for n, p in model.named_parameters() if n.endswith("table")]
    ids = {id(p) for p in tables}
    others = [p for p in model.parameters() if id(p) not in ids]
    grid_scale = (config.grid_lr or config.lr) / config.lr
    groups = [{"params": others, "scale": 1.0}]
    if tables:
        groups.append({"params": tables, "scale": grid_scale, "eps": 1e-15})
    try:
        return torch.optim.Adam(groups, lr=config.lr, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(groups, lr=config.lr)


def profile_forward(
    model: Field, x: torch.Tensor, contrast_id: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Predicted voxel values under the slice-profile forward model.

    ``x`` (B, 3) voxel centres, ``contrast_id`` (B,), ``offsets`` (B, K, 3) normalised offsets
    along each voxel's slice normal, ``weights`` (B, K). Returns (B,): ``Σ_k w_k f(x + o_k)``.
    """
    b, k = weights.shape
    if k == 1:
        return model.forward_own(x + offsets[:, 0], contrast_id)
    pts = (x[:, None, :] + offsets).reshape(b * k, 3)
    vals = model.forward_own(pts, contrast_id.repeat_interleave(k)).view(b, k)
    return (vals * weights).sum(dim=1)


def smoothness_penalty(
    model: Field, centres: torch.Tensor, jitter: float, step: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """Mean finite difference of every contrast between random points and neighbours ``step`` away.

    Points are ``centres`` (normalised) moved uniformly within ``±jitter`` per axis, so that they
    fill the space between sampled planes; each neighbour lies in a random direction. ``l1``
    penalises ``|Δf|`` (total variation, keeps edges), ``l2`` penalises ``Δf²``.
    """
    n = centres.shape[0]
    noise = torch.rand(n, 3, generator=generator).to(centres.device)
    p = centres + (2.0 * noise - 1.0) * jitter
    d = torch.randn(n, 3, generator=generator).to(centres.device)
    d = d / d.norm(dim=1, keepdim=True).clamp(min=1e-12) * step
    diff = model(torch.cat([p, p + d])).view(2, n, -1)
    diff = diff[1] - diff[0]
    return diff.abs().mean() if norm == "l1" else diff.square().mean()


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


def fit_field(
    train: TrainingSet,
    contrasts: list[str],
    config: FitConfig,
    progress: bool = True,
    callback: Callable[[int, float, Field], None] | None = None,
) -> FitResult:
    """Fit a new field to ``train``: Adam on the sum over contrasts of each contrast's MSE.

    Each step draws ``batch_size`` voxels from a fresh random permutation per epoch (no per-item
    Python work); each voxel is predicted by the slice-profile forward model
    (:func:`profile_forward`) of its stack. MI between the predicted contrasts on ``train.mi_coords`` is evaluated every
    ``mi_every`` steps (or once per epoch) and drives early stopping when it is enabled and there
    are at least two contrasts. Deterministic for a given seed on CPU.

    ``callback(step, seconds, field)``, when given, is called after every step with the training
    seconds so far; the time it spends is not counted (neither in ``seconds`` nor against
    ``time_limit_s``), so it can evaluate the field without distorting timings.
    """
    device = resolve_device(config.device)
    n_c = len(contrasts)
    with torch_threads(config.threads):
        model = build_field(contrasts, config, train.mm_per_unit).to(device)
        optimiser = make_optimiser(model, config)
        coords, values = train.coords.to(device), train.values.to(device)
        cids, mi_coords = train.contrast_id.to(device), train.mi_coords.to(device)
        sids = train.stack_id.to(device)
        offsets, weights = train.profile_offsets.to(device), train.profile_weights.to(device)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
        reg_jitter = 0.5 * train.gap_mm / train.mm_per_unit
        reg_step = config.reg_step_mm / train.mm_per_unit
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
        result = FitResult(field=model, steps_per_epoch=steps_per_epoch)
        start = time.perf_counter()
        bar = tqdm(
            total=total_steps, desc="fit", unit="step", file=sys.stderr, dynamic_ncols=True,
            disable=not progress or not sys.stderr.isatty(),
        )
        step, last_mi, stop = 0, float("nan"), False
        for epoch in range(n_epochs):
            perm = torch.randperm(n, generator=generator).to(device)
            sums = torch.zeros(n_c, dtype=torch.float64, device=device)
            counts = torch.zeros(n_c, dtype=torch.float64, device=device)
            for b in range(min(steps_per_epoch, total_steps - step)):
                lr = _lr_at(step, steps_per_epoch, total_steps, config)
                for group in optimiser.param_groups:
                    group["lr"] = lr * group["scale"]
                idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
                c, s = cids[idx], sids[idx]
                with autocast:
                    pred = profile_forward(model, coords[idx], c, offsets[s], weights[s])
                sq = (pred.float() - values[idx]) ** 2
                per_sum = torch.zeros(n_c, device=device).index_add_(0, c, sq)
                per_n = torch.bincount(c, minlength=n_c).to(sq.dtype)
                loss = (per_sum / per_n.clamp(min=1)).sum()  # MSE per contrast on its own voxels
                if config.reg_weight > 0:
                    centres = coords[idx[: config.reg_points]]
                    with autocast:
                        reg = smoothness_penalty(model, centres, reg_jitter, reg_step, config.reg_norm, generator)
                    loss = loss + config.reg_weight * reg.float()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
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
        bar.close()
        result.steps = step
        result.seconds = time.perf_counter() - start
        k = train.profile_weights.shape[1]
        result.points_per_second = step * config.batch_size * k / max(result.seconds, 1e-9)
        model.eval()
    return result
