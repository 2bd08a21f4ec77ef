"""The ``inrsr check`` job: quality estimates of a saved model without ground truth (see
:mod:`inrsr.evaluate.consistency`)."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from inrsr.acquisition.forward import resimulate
from inrsr.baselines.interpolate import cubic_between_slices
from inrsr.errors import InputError
from inrsr.evaluate.consistency import held_out_slices, stack_scores
from inrsr.field.checkpoint import load_checkpoint
from inrsr.io.stack import Stack, load_stack
from inrsr.jobs.reconstruct import reconstruct
from inrsr.register.joint import registered_stacks

__all__ = ["check_model", "stacks_of_model", "stack_path"]


def stack_path(meta: dict, model_path: str | os.PathLike) -> str:
    """Where the input stack a checkpoint records is now: its recorded path, else the same path
    relative to the checkpoint's folder (a folder moved with its inputs); :class:`InputError`
    naming both when neither exists."""
    recorded = str(meta["path"])
    if os.path.exists(recorded):
        return recorded
    relative = meta.get("path_from_model")
    if isinstance(relative, str):
        moved = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(model_path)), relative))
        if os.path.exists(moved):
            return moved
        raise InputError(f"{recorded}: input stack of {model_path} not found (nor at {moved})")
    raise InputError(f"{recorded}: input stack of {model_path} not found")


def stacks_of_model(payload: dict, model_path: str | os.PathLike) -> list[Stack]:
    """The input stacks named in a checkpoint, re-read from their paths (see :func:`stack_path`)
    and checked against it."""
    stacks = []
    for meta in payload["stacks"]:
        s = load_stack(stack_path(meta, model_path), meta["contrast"], meta["thickness_mm"])
        if list(s.shape) != list(meta["shape"]) or not np.allclose(s.affine, meta["affine"], atol=1e-4):
            raise InputError(f"{s.path}: differs from the stack the model was fitted to (shape or affine)")
        stacks.append(s)
    return stacks


def check_model(model_path: str | os.PathLike, holdout_every: int = 0, progress: bool = True) -> dict:
    """Quality estimates of a fitted model without ground truth (see :mod:`inrsr.evaluate.consistency`).

    Re-reads the input stacks named in ``model_path``, places them where registration found them,
    and reports per stack the self-consistency of the network with its voxels (foreground only;
    without the back-projected residuals, which would make it agree by construction).
    With ``holdout_every`` ≥ 2, each stack is also predicted by a refit that has not seen it: a
    stack whose contrast another stack has is left out whole; otherwise every
    ``holdout_every``-th slice is left out and cubic interpolation between the kept slices is
    scored on the same voxels. Refits use the model's options and foregrounds, with its
    transforms held fixed.
    """
    model, config, subject, _, payload = load_checkpoint(model_path)
    masks = [m for m, _ in subject.foregrounds]
    # Refits train on the foregrounds the fit used (user masks included), not on new estimates.
    stacks = [replace(s, mask=m) for s, m in zip(stacks_of_model(payload, model_path), masks)]
    stacks = registered_stacks(stacks, [np.asarray(m.get("registration_mm", np.eye(4))) for m in payload["stacks"]])
    rows = []
    with model.without_correction():
        for s, mask in zip(stacks, masks):
            pred = resimulate(model, s, subject, config, where=mask)
            rows.append({"path": s.path, "contrast": s.contrast, "thickness_mm": s.slice_thickness_mm,
                         "self": stack_scores(pred, s.data, mask)})
    if holdout_every:
        if holdout_every < 2:
            raise InputError(f"--holdout must be at least 2, got {holdout_every}")
        refit = config.replace(register=False)
        contrasts = [s.contrast for s in stacks]
        for k, (s, mask) in enumerate(zip(stacks, masks)):
            if contrasts.count(s.contrast) > 1:
                others = [t for i, t in enumerate(stacks) if i != k]
                recon = reconstruct(others, refit, progress=progress)
                pred = resimulate(recon.field, s, recon.subject, refit, where=mask)
                rows[k]["left_out"] = {"mode": "stack", "inr": stack_scores(pred, s.data, mask)}
                continue
            held = held_out_slices(s.shape[s.slice_axis], holdout_every)
            if held.size == 0:
                continue
            exclude = np.zeros(s.shape, dtype=bool)
            np.moveaxis(exclude, s.slice_axis, 0)[held] = True
            excluded = [exclude if i == k else None for i in range(len(stacks))]
            recon = reconstruct(stacks, refit, exclude=excluded, progress=progress)
            where = mask & exclude
            pred = resimulate(recon.field, s, recon.subject, refit, where=where)
            cubic = cubic_between_slices(s.data, s.slice_axis, held)
            rows[k]["left_out"] = {
                "mode": f"every {holdout_every}th slice", "slices": held.tolist(),
                "inr": stack_scores(pred, s.data, where), "cubic": stack_scores(cubic, s.data, where),
            }
    for row, meta in zip(rows, payload["stacks"]):
        row["thickness_source"] = meta.get("thickness_source")
        row["estimated_thickness_mm"] = meta.get("estimated_thickness_mm")
        row["thickness_estimator"] = meta.get("thickness_estimator")
    return {"model": str(model_path), "holdout_every": holdout_every, "stacks": rows}
