"""Sampling a fitted field on a voxel grid, in bounded-memory chunks."""

from __future__ import annotations

import numpy as np
import torch

from inrsr.config import FitConfig
from inrsr.device import autocast, resolve_device, torch_threads
from inrsr.field.network import Field
from inrsr.geometry import Grid, Normaliser, grid_points_world, world_to_voxel_index
from inrsr.samples.intensity import IntensityScale
from inrsr.samples.training_set import Subject

__all__ = ["render_grid", "render_subject", "inside_foreground"]


def inside_foreground(world_mm: np.ndarray, masks: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Whether each world point (``(N, 3)`` mm) falls in the foreground of any ``(mask, affine)``.

    A point takes the value of the nearest voxel of each stack; points outside a stack's field of
    view are not in its foreground.
    """
    inside = np.zeros(world_mm.shape[0], dtype=bool)
    for mask, affine in masks:
        ijk = world_to_voxel_index(affine, world_mm)
        ok = np.all((ijk >= 0) & (ijk < np.array(mask.shape)), axis=1)
        hit = np.zeros_like(inside)
        hit[ok] = mask[ijk[ok, 0], ijk[ok, 1], ijk[ok, 2]]
        inside |= hit
    return inside


@torch.no_grad()
def render_grid(
    model: Field,
    grid: Grid,
    normaliser: Normaliser,
    scales: dict[str, IntensityScale],
    chunk: int = 65536,
    device: torch.device | str = "cpu",
    foreground: list[tuple[np.ndarray, np.ndarray]] | None = None,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """Every contrast of ``model`` at every voxel centre of ``grid``, in input intensity units.

    With ``foreground`` (a list of ``(mask, affine)`` of the input stacks), the field is only
    evaluated at voxels inside some stack's foreground; the others get the background level
    (network value 0, i.e. each contrast's ``lo``). Memory beyond the outputs (``C × n_vox``
    float32) is ``O(chunk)``. ``precision="bf16"`` runs the network under bfloat16 autocast (about
    3× faster for wide MLPs on CPUs with AMX/AVX-512 bf16; outputs keep ≈ 3 significant digits). Returns float32 arrays of shape ``grid.shape`` keyed by contrast.
    """
    model = model.to(device).eval()
    device = torch.device(device)
    out = np.zeros((model.n_contrasts, grid.n_vox), dtype=np.float32)
    for start in range(0, grid.n_vox, chunk):
        stop = min(start + chunk, grid.n_vox)
        world = grid_points_world(grid, start, stop)
        keep = inside_foreground(world, foreground) if foreground is not None else slice(None)
        x = torch.from_numpy(normaliser(world[keep]).astype(np.float32)).to(device)
        if x.shape[0]:
            with autocast(device, precision):
                out[:, start:stop][:, keep] = model(x).float().cpu().numpy().T
    return {
        name: scales[name].inverse(out[c]).reshape(grid.shape) for c, name in enumerate(model.contrasts)
    }


def render_subject(
    model: Field, grid: Grid, subject: Subject, config: FitConfig, device: str | None = None, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Every contrast on ``grid`` in input units, with the config's chunking, foreground rule and
    precision; ``device`` and ``threads`` default to the config's."""
    with torch_threads(config.threads if threads is None else threads):
        return render_grid(
            model, grid, subject.normaliser, subject.scales, config.render_chunk,
            resolve_device(config.device if device is None else device),
            subject.foregrounds if config.render_foreground else None, config.precision,
        )
