"""The optimiser and the schedules of a fit: Adam's parameter groups, the learning rate at each
step, and the coarse-to-fine release of encoded detail."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from inrsr.config import FitConfig

if TYPE_CHECKING:
    from inrsr.field.network import Field
    from inrsr.register.poses import StackPoses

__all__ = ["make_optimiser", "learning_rate_at", "warmup_factor", "detail_cut_mm", "DEFAULT_REGISTER_C2F"]

# Coarse-to-fine fraction used by --register when --c2f-fraction is 0.
DEFAULT_REGISTER_C2F = 0.5


def make_optimiser(model: "Field", config: FitConfig, poses: "StackPoses | None" = None) -> torch.optim.Adam:
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


def learning_rate_at(step: int, steps_per_epoch: int, total_steps: int, config: FitConfig) -> float:
    """Learning rate at ``step`` (0-based) of a run of ``total_steps``."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine-epoch":  # torch CosineAnnealingLR(T_max=epochs), stepped per epoch
        progress = (step // steps_per_epoch) / math.ceil(total_steps / steps_per_epoch)
    else:
        progress = step / total_steps
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up of a parameter group's learning rate (its ``warmup_steps`` key): 0 at step 0,
    ``step / warmup_steps`` up to ``warmup_steps``, then 1; always 1 when ``warmup_steps`` is 0."""
    return 1.0 if warmup_steps <= 0 else min(1.0, step / warmup_steps)


def detail_cut_mm(step: int, total_steps: int, fraction: float, start_mm: float, finest_mm: float) -> float | None:
    """Coarse-to-fine schedule: the finest detail (mm) allowed at ``step``, shrinking geometrically
    from ``start_mm`` to ``finest_mm`` over the first ``fraction`` of the run; ``None`` (all detail)
    afterwards or when ``fraction`` is 0."""
    end = fraction * total_steps
    if step >= end or start_mm <= finest_mm:
        return None
    return float(start_mm * (finest_mm / start_mm) ** (step / end))
