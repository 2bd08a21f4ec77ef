"""Sampling a fitted field on a voxel grid, in bounded-memory chunks."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from inrsr.config import FitConfig
from inrsr.device import autocast, resolve_device, torch_threads
from inrsr.field.network import Field
from inrsr.geometry import Grid, Normaliser, axis_aligned_map, flat_voxel_points, world_to_voxel_matrix
from inrsr.samples.intensity import IntensityScale
from inrsr.samples.training_set import Subject

__all__ = ["render_grid", "render_subject", "foreground_on_grid"]


def foreground_on_grid(grid: Grid, masks: list[tuple[np.ndarray, np.ndarray]], chunk: int = 1 << 20) -> np.ndarray:
    """Whether each voxel of ``grid`` (boolean, ``grid.shape``) falls in the foreground of any
    ``(mask, affine)``: the value of the mask voxel nearest to its centre (``rint`` of its continuous
    index); voxels outside a mask's field of view are not in its foreground.

    A mask whose axes run along the grid's (possibly permuted or flipped) is read with one index
    array per axis; an oblique one ``chunk`` voxels at a time.
    """
    inside = np.zeros(grid.shape, dtype=bool)
    for mask, affine in masks:
        axes = axis_aligned_map(affine, grid.affine)
        if axes is not None:
            inside |= _nearest_along_axes(mask, axes, grid.shape)
        else:
            _add_nearest_oblique(inside.reshape(-1), mask, world_to_voxel_matrix(affine) @ grid.affine, grid, chunk)
    return inside


def _nearest_along_axes(mask: np.ndarray, axes: list[tuple[int, float, float]], shape: tuple[int, int, int]) -> np.ndarray:
    """The nearest mask voxel's value at every voxel of a grid of ``shape`` that runs along the
    mask's axes (``axes``: :func:`~inrsr.geometry.axis_aligned_map`'s); False outside the mask."""
    index = [np.rint(scale * np.arange(n) + offset).astype(np.int64) for n, (_, scale, offset) in zip(shape, axes)]
    ok = [(i >= 0) & (i < mask.shape[p]) for i, (p, _, _) in zip(index, axes)]
    by_mask_axis = [np.clip(i, 0, mask.shape[p] - 1) for i, (p, _, _) in sorted(zip(index, axes), key=lambda t: t[1][0])]
    hit = np.transpose(mask[np.ix_(*by_mask_axis)], [p for p, _, _ in axes]).astype(bool, copy=False)  # grid order
    hit &= ok[0][:, None, None]  # in place: one grid-sized array at a time
    hit &= ok[1][None, :, None]
    hit &= ok[2][None, None, :]
    return hit


def _add_nearest_oblique(inside: np.ndarray, mask: np.ndarray, to_mask: np.ndarray, grid: Grid, chunk: int) -> None:
    """Sets ``inside`` (flat, C order) where the mask voxel nearest a voxel of ``grid`` is set;
    ``to_mask``: the grid's voxel indices → the mask's; ``chunk`` voxels at a time."""
    for start in range(0, grid.n_vox, chunk):
        flat = np.arange(start, min(start + chunk, grid.n_vox))
        ijk = np.rint(flat_voxel_points(to_mask, grid.shape, flat)).astype(np.int64)
        ok = np.all((ijk >= 0) & (ijk < np.array(mask.shape)), axis=1)
        hit = np.zeros(ok.shape, dtype=bool)
        hit[ok] = mask[ijk[ok, 0], ijk[ok, 1], ijk[ok, 2]]
        inside[flat] |= hit


@torch.no_grad()
def render_grid(
    model: Field,
    grid: Grid,
    normaliser: Normaliser,
    scales: dict[str, IntensityScale],
    chunk: int = FitConfig.render_chunk,
    device: torch.device | str = "cpu",
    foreground: list[tuple[np.ndarray, np.ndarray]] | None = None,
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """Every contrast of ``model`` at every voxel centre of ``grid``, in input intensity units.

    With ``foreground`` (a list of ``(mask, affine)`` of the input stacks), the field is only
    evaluated at voxels inside some stack's foreground (:func:`foreground_on_grid`); the others get
    the background level (network value 0, i.e. each contrast's ``lo``). Memory beyond the outputs
    (``C × n_vox`` float32) is one byte per voxel for the foreground and ``O(chunk)``.
    ``precision="bf16"`` runs the network under bfloat16 autocast (about 3× faster for wide MLPs on
    CPUs with AMX/AVX-512 bf16; outputs keep ≈ 3 significant digits). Returns float32 arrays of
    shape ``grid.shape`` keyed by contrast.
    """
    model = model.to(device).eval()
    device = torch.device(device)
    out = np.zeros((model.n_contrasts, grid.n_vox), dtype=np.float32)
    keep = foreground_on_grid(grid, foreground).reshape(-1) if foreground is not None else None
    for idx in _voxel_chunks(keep, grid.n_vox, chunk):
        world = flat_voxel_points(grid.affine, grid.shape, idx)
        x = torch.from_numpy(normaliser(world).astype(np.float32)).to(device)
        with autocast(device, precision):
            out[:, idx] = model(x).float().cpu().numpy().T
    return {
        name: scales[name].inverse(out[c]).reshape(grid.shape) for c, name in enumerate(model.contrasts)
    }


def _voxel_chunks(keep: np.ndarray | None, n_vox: int, chunk: int) -> Iterator[np.ndarray]:
    """Flat indices of the voxels to evaluate (all, or those where ``keep``), ``chunk`` at a time,
    found a few chunks' worth of voxels at a time (memory ``O(chunk)``)."""
    span = chunk if keep is None else 8 * chunk
    for start in range(0, n_vox, span):
        stop = min(start + span, n_vox)
        idx = np.arange(start, stop) if keep is None else start + np.flatnonzero(keep[start:stop])
        for k in range(0, idx.shape[0], chunk):
            yield idx[k : k + chunk]


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
