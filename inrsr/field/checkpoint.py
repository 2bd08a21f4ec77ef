"""``model.pt``: weights, config, contrasts, normalisation and geometry, enough to re-render."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from inrsr import __version__
from inrsr.config import FitConfig
from inrsr.errors import InputError
from inrsr.field.base import BaseVolume
from inrsr.field.correction import StackResiduals
from inrsr.field.network import Field, build_field
from inrsr.geometry import Box, Normaliser
from inrsr.io.files import atomic_path
from inrsr.io.nifti import HeaderCodes
from inrsr.samples.intensity import IntensityScale
from inrsr.samples.training_set import Subject

__all__ = ["save_checkpoint", "load_checkpoint", "read_tagged"]

FORMAT = "inrsr-model-1"


def save_checkpoint(
    path: str | os.PathLike,
    model: Field,
    config: FitConfig,
    subject: Subject,
    codes: HeaderCodes,
    stacks: list[dict],
) -> Path:
    """Write the checkpoint atomically. ``stacks`` describes the inputs (path, contrast, shape, affine)."""
    payload = {
        "format": FORMAT,
        "version": __version__,
        "config": config.to_dict(),
        "contrasts": subject.contrasts,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "box": subject.box.to_dict(),
        "normaliser": subject.normaliser.to_dict(),
        "scales": {c: s.to_dict() for c, s in subject.scales.items()},
        "codes": codes.to_dict(),
        "foregrounds": [
            {"shape": list(m.shape), "affine": np.asarray(a).tolist(), "bits": np.packbits(m.ravel()).tobytes()}
            for m, a in subject.foregrounds
        ],
        "stacks": stacks,
    }
    p = Path(path)
    with atomic_path(p) as tmp:
        torch.save(payload, tmp)
    return p


def read_tagged(path: str | os.PathLike, fmt: str, what: str, missing: str) -> dict:
    """The dict saved with ``torch.save`` at ``path`` whose ``format`` is ``fmt``, loaded on the CPU
    without running code (``weights_only``). :class:`InputError` says ``missing`` when there is no
    file and names ``what`` the file should have been otherwise."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {missing}")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{p}: not an {what} ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise InputError(f"{p}: not an {what} (format {payload.get('format') if isinstance(payload, dict) else '?'})")
    return payload


def load_checkpoint(path: str | os.PathLike) -> tuple[Field, FitConfig, Subject, HeaderCodes, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns model (eval mode), config,
    subject description, header codes and the raw payload."""
    payload = read_tagged(path, FORMAT, "inrsr model file", "model file not found")
    config = FitConfig.from_dict(payload["config"])
    normaliser = Normaliser.from_dict(payload["normaliser"])
    state = payload["state_dict"]
    base = BaseVolume.empty_like_state(state, "base.") if "base.volume" in state else None
    model = build_field(payload["contrasts"], config, normaliser.scale_mm, base)
    if "correction.meta" in state:
        model.correction = StackResiduals.empty_like_state(state, "correction.", len(payload["contrasts"]))
    model.load_state_dict(state)
    model.eval()
    subject = Subject(
        contrasts=list(payload["contrasts"]),
        box=Box.from_dict(payload["box"]),
        normaliser=normaliser,
        scales={c: IntensityScale(**s) for c, s in payload["scales"].items()},
        foregrounds=[
            (
                np.unpackbits(np.frombuffer(f["bits"], dtype=np.uint8), count=int(np.prod(f["shape"])))
                .astype(bool)
                .reshape(f["shape"]),
                np.asarray(f["affine"], dtype=np.float64),
            )
            for f in payload.get("foregrounds", [])
        ],
    )
    return model, config, subject, HeaderCodes(**payload["codes"]), payload
