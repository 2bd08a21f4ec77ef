"""Re-simulate the input stacks from the fitted field: quality estimates without ground truth,
and the residuals that data consistency back-projects (:mod:`inrsr.backproject`).

* **Self-consistency**: every input stack predicted from the field through its own forward model
  (its slice profile, at its possibly registered position) and compared with its voxels. Low error
  means the field explains the data; it does not prove the field is right between slices.
* **Held-out slices**: every ``k``-th slice of a stack is left out of a refit and predicted; cubic
  interpolation between the kept slices is scored on the same voxels, so the two can be compared
  on real data where no isotropic truth exists. It is pessimistic for both: the gaps the methods
  must bridge are twice the real slice spacing next to each held-out slice.
* **Left-out stacks**: a stack whose contrast another stack also has is left out of a refit
  entirely and predicted from the others.
* **Residuals**: measured minus re-simulated voxels, kept on the stacks' grids for back-projection.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .backproject import StackResiduals, half_support_voxels, to_voxel_map
from .config import FitConfig
from .field import Field
from .fit import profile_forward, resolve_device, torch_threads
from .geometry import apply_affine
from .io import Stack
from .metrics import psnr
from .samples import Subject, profile_offsets

__all__ = ["resimulate", "stack_residuals", "stack_scores", "held_out_slices", "registered_stacks"]


def registered_stacks(stacks: list[Stack], matrices: list[np.ndarray] | None) -> list[Stack]:
    """The stacks placed where registration found them (``M @ affine``); unchanged without ``matrices``."""
    if matrices is None:
        return list(stacks)
    return [replace(s, affine=np.asarray(m) @ s.affine) for s, m in zip(stacks, matrices)]


@torch.no_grad()
def resimulate(
    model: Field, stack: Stack, subject: Subject, config: FitConfig, where: np.ndarray | None = None,
    device: str | None = None,
) -> np.ndarray:
    """The stack as the field predicts it: each voxel is the profile-weighted mean of the field of
    the stack's contrast along the slice normal (the fit's forward model), in input intensity units.

    Only voxels where ``where`` (boolean, stack shape; default all) is set are predicted; the
    others are NaN. ``stack.affine`` must already include any registration.
    """
    dev = resolve_device(config.device if device is None else device)
    model = model.to(dev).eval()
    out = np.full(stack.shape, np.nan, dtype=np.float32)
    flat = np.flatnonzero(where.ravel()) if where is not None else np.arange(out.size)
    offs, wts = profile_offsets([stack], config.slice_profile, config.profile_points, subject.normaliser)
    offsets, weights = torch.from_numpy(offs[0]).to(dev), torch.from_numpy(wts[0]).to(dev)
    contrast = subject.contrasts.index(stack.contrast)
    chunk = max(1, config.render_chunk // weights.shape[0])
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    values = np.empty(flat.size, dtype=np.float32)
    with torch_threads(config.threads):
        for start in range(0, flat.size, chunk):
            idx = flat[start : start + chunk]
            world = apply_affine(stack.affine, np.stack(np.unravel_index(idx, stack.shape), axis=-1))
            x = torch.from_numpy(subject.normaliser(world).astype(np.float32)).to(dev)
            pts = x[:, None, :] + offsets[None]
            c = torch.full((idx.size,), contrast, dtype=torch.int64, device=dev)
            with autocast:
                pred = profile_forward(model, pts, c, weights.expand(idx.size, -1))
            values[start : start + idx.size] = pred.float().cpu().numpy()
    out.ravel()[flat] = subject.scales[stack.contrast].inverse(values)
    return out


@torch.no_grad()
def stack_residuals(
    model: Field, stacks: list[Stack], subject: Subject, config: FitConfig,
    exclude: list[np.ndarray | None] | None = None, device: str | None = None,
) -> StackResiduals:
    """Every stack's residual (measured − predicted through its slice profile, network units) on
    its foreground voxels, minus ``exclude`` (per stack, boolean voxel masks or ``None``); 0
    elsewhere. ``stacks`` must be placed where the fit put them (registration included) and in
    the order of ``subject.foregrounds``. The residuals are taken from ``model`` without any
    correction it already carries."""
    residuals, maps, meta = [], [], []
    with model.without_correction():
        for k, (s, (mask, _)) in enumerate(zip(stacks, subject.foregrounds)):
            where = mask if exclude is None or exclude[k] is None else mask & ~exclude[k]
            pred = resimulate(model, s, subject, config, where=where, device=device)
            scale = subject.scales[s.contrast]
            r = np.zeros(s.shape, dtype=np.float32)
            r[where] = scale.forward(s.data[where]) - scale.forward(pred[where])
            residuals.append(torch.from_numpy(r))
            maps.append(torch.from_numpy(to_voxel_map(s.affine, subject.normaliser).astype(np.float32)))
            half = half_support_voxels(config.slice_profile, s.slice_thickness_mm, s.slice_spacing_mm)
            meta.append([subject.contrasts.index(s.contrast), s.slice_axis, half])
    module = StackResiduals(residuals, maps, torch.tensor(meta, dtype=torch.float32), len(subject.contrasts))
    return module.to(next(model.parameters()).device)


def stack_scores(pred: np.ndarray, data: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How well ``pred`` reproduces ``data`` on ``mask`` voxels: ``psnr`` (dB, peak = the data's
    1–99.5 % percentile range on the mask), ``nrmse`` (RMSE over that range) and Pearson ``corr``."""
    p, d = pred[mask].astype(np.float64), data[mask].astype(np.float64)
    lo, hi = np.percentile(d, [1.0, 99.5])
    scale = float(hi - lo) if hi > lo else 1.0
    rmse = float(np.sqrt(np.mean((p - d) ** 2)))
    corr = float(np.corrcoef(p, d)[0, 1]) if p.size > 1 and p.std() > 0 and d.std() > 0 else float("nan")
    return {"psnr": psnr(p / scale, d / scale), "nrmse": rmse / scale, "corr": corr, "voxels": int(mask.sum())}


def held_out_slices(n_slices: int, every: int) -> np.ndarray:
    """Indices of the slices held out: every ``every``-th slice, never the first or the last (so
    each has kept neighbours on both sides)."""
    if every < 2:
        raise ValueError(f"every must be at least 2, got {every}")
    idx = np.arange(every // 2, n_slices - 1, every)
    return idx[idx > 0]
