"""The fit configuration: one typed dataclass; presets are instances of it.

Every field is also a ``inrsr fit`` option (``--field-name``); the field's ``help`` metadata is the
option's help text, so ``--help`` and this file cannot disagree.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InputError

__all__ = ["FitConfig", "PRESETS", "preset", "VARIANTS", "SCHEDULES"]

VARIANTS = ("split", "vanilla", "single")
SCHEDULES = ("cosine", "cosine-epoch", "constant")


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of one fit. Units: coordinates are normalised so the union box of all
    stacks spans [-1, 1] along its largest world extent; frequencies are in cycles per unit."""

    # encoding: Gaussian Fourier features [sin(2πBx), cos(2πBx)], B ~ N(0, ff_scale²)
    n_frequencies: int = _opt(256, "number of Gaussian Fourier frequencies (features = 2×this)")
    ff_scale: float = _opt(4.0, "standard deviation of the Fourier frequencies, cycles per normalised unit")
    # network
    variant: str = _opt(
        "split",
        "split: shared trunk + one head per contrast; vanilla: shared trunk + one shared output layer; "
        "single: an independent network per contrast",
        VARIANTS,
    )
    width: int = _opt(1024, "width of the shared ReLU trunk")
    depth: int = _opt(4, "hidden layers of the trunk after its input layer")
    head_width: int = _opt(512, "hidden width of each contrast head (split variant)")
    # optimisation
    lr: float = _opt(4e-4, "Adam learning rate")
    batch_size: int = _opt(1000, "training points per step")
    max_epochs: int = _opt(50, "maximum number of passes over the training points")
    max_steps: int = _opt(0, "maximum number of steps, whichever limit comes first (0: no step limit)")
    lr_schedule: str = _opt(
        "cosine-epoch",
        "cosine: annealed to 0 every step; cosine-epoch: annealed once per epoch (as the paper); constant",
        SCHEDULES,
    )
    background_ratio: float = _opt(
        -1.0,
        "background training points per foreground point (sampled once); negative: train on every voxel",
    )
    # mutual information monitor and early stopping (the paper's buffer rule)
    mi_bins: int = _opt(32, "histogram bins per contrast for MI")
    mi_every: int = _opt(0, "evaluate MI every N steps (0: once per epoch)")
    mi_points: int = _opt(50000, "fixed foreground points on which MI is evaluated")
    early_stopping: bool = _opt(True, "stop when the MI change plateaus (needs ≥ 2 contrasts)")
    es_buffer: int = _opt(4, "MI values in the early-stopping buffer")
    es_tol: float = _opt(1e-4, "stop when the mean absolute MI change moves by less than this")
    es_min_evals: int = _opt(4, "MI evaluations before early stopping may trigger")
    # execution
    seed: int = _opt(0, "random seed (weights, frequencies, batches)")
    device: str = _opt("auto", "auto, cpu or cuda", ("auto", "cpu", "cuda"))
    threads: int = _opt(0, "CPU threads for torch (0: all cores)")
    render_chunk: int = _opt(65536, "points per chunk when sampling the field on a grid")
    render_foreground: bool = _opt(
        True, "sample the field only inside the stacks' foreground; elsewhere write the background level"
    )

    def replace(self, **changes: Any) -> "FitConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "FitConfig":
        """Raise :class:`InputError` naming the first invalid option."""
        positive = ("n_frequencies", "width", "head_width", "lr", "batch_size", "max_epochs", "mi_bins",
                    "mi_points", "es_buffer", "render_chunk")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("ff_scale", "es_tol"):
            if not getattr(self, name) >= 0:
                raise InputError(f"--{name.replace('_', '-')} must be non-negative, got {getattr(self, name)}")
        if min(self.depth, self.mi_every, self.threads, self.es_min_evals, self.max_steps) < 0:
            raise InputError("--depth, --mi-every, --threads, --es-min-evals and --max-steps must be non-negative")
        if self.es_buffer < 2:
            raise InputError(f"--es-buffer must be at least 2, got {self.es_buffer}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise InputError(f"--{f.name.replace('_', '-')} must be one of {', '.join(choices)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


PRESETS: dict[str, FitConfig] = {
    # McGinnis et al. (MICCAI 2023), config_brats.yaml of the authors' code: exact.
    "paper": FitConfig(),
    # Best measured quality within a few minutes on 2 CPU cores (see README, "Presets").
    "default": FitConfig(
        n_frequencies=128,
        ff_scale=2.0,
        width=256,
        depth=3,
        head_width=128,
        lr=1e-3,
        batch_size=8192,
        max_epochs=100,
        max_steps=1400,
        lr_schedule="cosine",
        background_ratio=0.25,
        mi_every=100,
        mi_points=20000,
    ),
    # A quick look: about a minute on 2 CPU cores.
    "fast": FitConfig(
        n_frequencies=64,
        ff_scale=2.0,
        width=128,
        depth=2,
        head_width=64,
        lr=3e-3,
        batch_size=8192,
        max_epochs=100,
        max_steps=300,
        lr_schedule="cosine",
        background_ratio=0.25,
        mi_every=50,
        mi_points=10000,
    ),
}


def preset(name: str, **overrides: Any) -> FitConfig:
    """A preset with some fields overridden (``None`` values are ignored), validated."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[name].replace(**changes).validate()
