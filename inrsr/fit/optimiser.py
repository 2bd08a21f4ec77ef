"""The optimiser and the schedules of a fit: Adam and its parameter groups, the learning rate at
each step, and the coarse-to-fine release of encoded detail."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

import torch

from inrsr.config import FitConfig

if TYPE_CHECKING:
    from inrsr.field.network import Field
    from inrsr.register.poses import StackPoses

__all__ = ["Adam", "make_optimiser", "learning_rate_at", "warmup_factor", "detail_cut_mm", "DEFAULT_REGISTER_C2F"]

# Coarse-to-fine fraction used by --register when --c2f-fraction is 0.
DEFAULT_REGISTER_C2F = 0.5


# Hyperparameters a group takes from the optimiser's defaults when it does not set them.
_ADAM_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8}


class Adam:
    """Adam (Kingma & Ba 2015, no weight decay) over parameter groups, with the arithmetic of
    ``torch.optim.Adam(fused=True)`` (its fused kernel where PyTorch has one for the parameters'
    device and dtype, the same update step by step elsewhere) and its ``param_groups``,
    ``add_param_group``, ``zero_grad``, ``step``, ``state_dict`` and ``load_state_dict``, whose
    layout is torch's: a fit interrupted while inrsr used ``torch.optim.Adam`` resumes.

    Why not ``torch.optim.Adam`` itself: building it, its first step and its ``state_dict`` import
    ``torch._dynamo``, 1.3 to 3.5 s of every fit on 2 CPU cores (docs/design.md, "Optimiser").
    Each group's keys other than ``params`` (``lr``, ``betas``, ``eps`` and the fit's own
    ``scale`` and ``warmup_steps``) are kept as given; ``lr``, ``betas`` and ``eps`` default to
    ``lr`` and torch's defaults.
    """

    def __init__(self, groups: Iterable[dict[str, Any]], lr: float):
        self.defaults = {"lr": lr, **_ADAM_DEFAULTS}
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group (a dict with ``params`` and any hyperparameters) after the others."""
        group = {**self.defaults, **group, "params": list(group["params"])}
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("a parameter appears in two groups")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def _state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state.get(p)
        if state is None:
            state = self.state[p] = {
                "step": torch.tensor(0.0, dtype=torch.float32, device=p.device),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return state

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state_of(p) for p in params]
            beta1, beta2 = group["betas"]
            lr, eps = float(group["lr"]), float(group["eps"])
            by_kind: dict[tuple[torch.device, torch.dtype], list[int]] = {}
            for i, p in enumerate(params):
                by_kind.setdefault((p.device, p.dtype), []).append(i)
            for (device, dtype), idx in by_kind.items():
                ps = [params[i] for i in idx]
                st = [states[i] for i in idx]
                steps = [s["step"] for s in st]
                torch._foreach_add_(steps, 1)
                grads, avgs, sqs = [p.grad for p in ps], [s["exp_avg"] for s in st], [s["exp_avg_sq"] for s in st]
                if _has_fused_adam(device, dtype):
                    torch._fused_adam_(ps, grads, avgs, sqs, [], steps, lr=lr, beta1=beta1, beta2=beta2,
                                       weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
                else:
                    for p, g, m, v, t in zip(ps, grads, avgs, sqs, steps):
                        _adam_update(p, g, m, v, float(t), lr, beta1, beta2, eps)

    def state_dict(self) -> dict[str, Any]:
        """The state in ``torch.optim.Optimizer``'s layout: parameters numbered in group order."""
        index, groups = {}, []
        for group in self.param_groups:
            numbers = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                numbers.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": numbers})
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Take the state and hyperparameters of :meth:`state_dict` (or of ``torch.optim.Adam``'s)
        for groups made the same way; raises ``ValueError`` when the groups do not match."""
        groups = saved["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError("the saved optimiser state has other parameter groups")
        params = {n: p for g, mine in zip(groups, self.param_groups) for n, p in zip(g["params"], mine["params"])}
        self.state = {}
        for n, s in saved["state"].items():
            p = params[int(n)]
            self.state[p] = {
                "step": torch.as_tensor(s["step"], dtype=torch.float32).to(p.device).clone(),
                "exp_avg": s["exp_avg"].to(device=p.device, dtype=p.dtype).clone(),
                "exp_avg_sq": s["exp_avg_sq"].to(device=p.device, dtype=p.dtype).clone(),
            }
        for g, mine in zip(groups, self.param_groups):
            mine.update({k: v for k, v in g.items() if k != "params"})
            mine["betas"] = tuple(mine["betas"])


def _has_fused_adam(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether PyTorch has a fused Adam kernel for tensors of ``device`` and ``dtype``."""
    return hasattr(torch, "_fused_adam_") and device.type in ("cpu", "cuda", "mps") and dtype.is_floating_point


def _adam_update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: float, lr: float,
                 beta1: float, beta2: float, eps: float) -> None:
    """One Adam update of ``p`` in place (moments ``m``, ``v`` updated too), at ``step`` (1-based)."""
    m.lerp_(g, 1.0 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
    denom = (v.sqrt() / math.sqrt(1.0 - beta2**step)).add_(eps)
    p.addcdiv_(m, denom, value=-lr / (1.0 - beta1**step))


def make_optimiser(model: "Field", config: FitConfig, poses: "StackPoses | None" = None) -> Adam:
    """Adam with parameter groups: grid tables (``grid_lr``, or ``lr`` when 0), the rest of the
    field (``lr``) and the stack transforms (``register_lr``, in mm and degrees per step). Each
    group's ``scale`` is its learning rate relative to ``lr``, which the schedule multiplies. The
    field's groups use ``adam_beta2``; the transforms keep torch's 0.999."""
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
    return Adam(groups, lr=config.lr)


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
