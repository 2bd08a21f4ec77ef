"""Everything the report shows of one fit, gathered in memory: the job that writes the report
(:mod:`inrsr.jobs.report`) fills it from a fit that just ended or from a saved model's folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inrsr.config import FitConfig
from inrsr.geometry import Grid
from inrsr.io.stack import Stack

__all__ = ["Evidence"]


@dataclass
class Evidence:
    """What a report is made from.

    folder : the fit's output folder (named in the report).
    grid : the output grid (voxel → world mm).
    volumes : contrast → output volume on ``grid``.
    stacks : the input stacks, placed where the fit put them (registered when it registered).
    file_affines : each stack's affine as its file gives it (before registration).
    masks : each stack's foreground mask (the one the fit used), on the stack's grid.
    config : the fit's options.
    log : the fit's ``log.json`` (timings, curves, warnings, transforms, …).
    consistency : per stack, the self-consistency scores (``psnr``, ``nrmse``, ``corr``, ``voxels``).
    point_mm : world point (mm) the three planes pass through.
    support : per contrast, the support summary over the foreground
        (:func:`inrsr.report.sections.brain_support`), once computed.
    """

    folder: Path
    grid: Grid
    volumes: dict[str, np.ndarray]
    stacks: list[Stack]
    file_affines: list[np.ndarray]
    masks: list[np.ndarray]
    config: FitConfig
    log: dict
    consistency: list[dict]
    point_mm: np.ndarray
    support: dict[str, dict[str, float]] | None = None

    @property
    def contrasts(self) -> list[str]:
        return list(self.volumes)

    def stacks_of(self, contrast: str) -> list[int]:
        """Indices of the stacks of ``contrast``."""
        return [k for k, s in enumerate(self.stacks) if s.contrast == contrast]

    @property
    def registered(self) -> bool:
        return bool(self.log.get("transforms"))
