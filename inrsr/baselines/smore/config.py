"""Hyper-parameters of a SMORE run (torch-free, so that the CLI's options are generated from it
without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from inrsr.config import ToolConfig, check_choices, option_field
from inrsr.errors import InputError

__all__ = ["SmoreConfig", "PROFILES", "MIN_PATCH"]

# The slice profiles SMORE can degrade with (names as in inrsr.acquisition.profiles).
PROFILES = ("gaussian", "box")
MIN_PATCH = 8


@dataclass(frozen=True)
class SmoreConfig(ToolConfig):
    """Hyper-parameters of one SMORE run (defaults: a few minutes on 2 CPU cores for 240×240×39)."""

    OPTION_NAMES: ClassVar[dict[str, str]] = {"patch_size": "--patch", "thickness_mm": "--thickness"}

    profile: str = option_field(
        "box", "slice profile: gaussian, FWHM = thickness (the paper); box, width = thickness (slices averaged "
        "over their thickness, e.g. `inrsr simulate --profile box`)", PROFILES
    )
    thickness_mm: float = option_field(0.0, "slice thickness in mm (0: the slice spacing); gaps and overlaps allowed")
    thickness_estimate: str = option_field(
        "auto", "auto: when no thickness is given (no --thickness, no SliceThickness in a BIDS sidecar), estimate "
        "it from the stack (as inrsr fit does) and use it; always: estimate and use it even when given; off: take "
        "the slice spacing when it is not given", ("auto", "always", "off")
    )
    patch_size: int = option_field(32, "side of the square training patches, voxels")
    batch_size: int = option_field(16, "patches per training step")
    iterations: int = option_field(1200, "training steps, or fewer when the time limit comes first")
    time_limit_s: float = option_field(0.0, "stop training after this many seconds, whichever limit comes first (0: none)")
    features: int = option_field(32, "channels of the network's hidden layers")
    blocks: int = option_field(8, "residual blocks of the network")
    lr: float = option_field(1e-3, "Adam learning rate at the start of the cosine schedule")
    seed: int = option_field(0, "random seed (weights, patches); the same seed on CPU gives the same result")
    device: str = option_field("auto", "auto, cpu or cuda", ("auto", "cpu", "cuda"))
    threads: int = option_field(0, "CPU threads for torch (0: torch's default)")

    def validate(self) -> "SmoreConfig":
        """Raise :class:`InputError` naming the first invalid option."""
        self.check_finite()
        self.check_positive(("batch_size", "iterations", "features", "blocks", "lr"))
        if self.patch_size < MIN_PATCH:
            raise InputError(f"--patch must be at least {MIN_PATCH} voxels, got {self.patch_size}")
        self.check_non_negative(("thickness_mm", "time_limit_s", "threads"))
        check_choices(self)
        return self
