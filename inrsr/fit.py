"""The optimisation loop: shuffled index batches over in-memory tensors, MSE per contrast, MI monitor."""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

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
    train: TrainingSet, contrasts: list[str], config: FitConfig, progress: bool = True
) -> FitResult:
    """Fit a new field to ``train``: Adam on the sum over contrasts of each contrast's MSE.

    Each step draws ``batch_size`` points from a fresh random permutation per epoch (no per-item
    Python work). MI between the predicted contrasts on ``train.mi_coords`` is evaluated every
    ``mi_every`` steps (or once per epoch) and drives early stopping when it is enabled and there
    are at least two contrasts. Deterministic for a given seed on CPU.
    """
    device = resolve_device(config.device)
    n_c = len(contrasts)
    with torch_threads(config.threads):
        model = build_field(contrasts, config).to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
        coords, values = train.coords.to(device), train.values.to(device)
        cids, mi_coords = train.contrast_id.to(device), train.mi_coords.to(device)
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
        result = FitResult(field=model)
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
                    group["lr"] = lr
                idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
                c = cids[idx]
                sq = (model.forward_own(coords[idx], c) - values[idx]) ** 2
                per_sum = torch.zeros(n_c, device=device).index_add_(0, c, sq)
                per_n = torch.bincount(c, minlength=n_c).to(sq.dtype)
                loss = (per_sum / per_n.clamp(min=1)).sum()  # MSE per contrast on its own voxels
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                sums += per_sum.detach().double()
                counts += per_n.double()
                step += 1
                bar.update(1)
                if use_mi and step % mi_every == 0:
                    mi = predict_mi(model, mi_coords, config.mi_bins)
                    last_mi = mi["mi"]
                    result.mi_curve.append({"step": step, "epoch": step / steps_per_epoch, **mi})
                    bar.set_postfix(loss=f"{loss.item():.2e}", mi=f"{last_mi:.4f}")
                    if monitor.update(last_mi) and config.early_stopping:
                        stop = True
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
        result.stopped_early = stop
        result.steps = step
        result.seconds = time.perf_counter() - start
        result.points_per_second = step * config.batch_size / max(result.seconds, 1e-9)
        model.eval()
    return result
