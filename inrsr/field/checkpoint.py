"""``model.pt``: weights, config, contrasts, normalisation and geometry, enough to re-render."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from inrsr import __version__
from inrsr.config import FitConfig
from inrsr.errors import InputError, one_line
from inrsr.field.base import BaseVolume
from inrsr.field.correction import StackResiduals
from inrsr.field.network import Field, build_field
from inrsr.geometry import Box, Normaliser
from inrsr.io.files import atomic_path
from inrsr.io.nifti import HeaderCodes
from inrsr.resources import check_memory
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
    """Write the checkpoint atomically. ``stacks`` describes the inputs (absolute path, contrast,
    shape, affine); each also gets its path relative to the checkpoint's folder
    (``path_from_model``), so that a folder moved with its inputs still finds them."""
    p = Path(path)
    stacks = [{**m, "path_from_model": os.path.relpath(os.path.abspath(m["path"]), p.parent.absolute())}
              for m in stacks]
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


# Keys every model file holds.
REQUIRED = ("config", "contrasts", "state_dict", "box", "normaliser", "scales", "codes", "stacks")
# Plausible normaliser and box values (mm): within 100 m of the scanner origin, scale above 1 µm.
MAX_MM = 1e5
MIN_SCALE_MM = 1e-3


class _Damaged(Exception):
    """What is wrong with a model file's contents (turned into an :class:`InputError` naming it)."""


def _array(value: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape`` (``-1``: any length), or :class:`_Damaged`."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Damaged(f"{what} is not numeric") from None
    if a.ndim != len(shape) or any(n not in (-1, m) for n, m in zip(shape, a.shape)):
        raise _Damaged(f"{what} has shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.abs(a).max(initial=0.0) > MAX_MM:
        raise _Damaged(f"{what} holds values that are not finite or out of range")
    return a


def _contrasts(value: object) -> list[str]:
    from inrsr.io.stack import CONTRAST_NAME

    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
        raise _Damaged("its contrasts are not a list of distinct names")
    for c in value:
        if not isinstance(c, str) or not CONTRAST_NAME.match(c):
            raise _Damaged(f"contrast name {c!r} is not letters, digits, '_' or '-'")
    return list(value)


def _foreground(f: object) -> tuple[np.ndarray, np.ndarray]:
    """One stored foreground mask: its shape must match its packed bits before anything is unpacked."""
    if not isinstance(f, dict) or not isinstance(f.get("bits"), bytes):
        raise _Damaged("a foreground mask is malformed")
    shape = tuple(int(n) for n in _array(f.get("shape"), (3,), "a foreground's shape"))
    if min(shape) < 1 or (int(np.prod(shape)) + 7) // 8 != len(f["bits"]):
        raise _Damaged(f"a foreground's shape {shape} does not match its {len(f['bits'])} bytes")
    bits = np.unpackbits(np.frombuffer(f["bits"], dtype=np.uint8), count=int(np.prod(shape)))
    return bits.astype(bool).reshape(shape), _array(f.get("affine"), (4, 4), "a foreground's affine")


def _build(payload: dict, config: FitConfig, normaliser: Normaliser) -> Field:
    """The (untrained) field the payload's config and weights describe, on the current default device."""
    state, contrasts = payload["state_dict"], payload["contrasts"]
    base = BaseVolume.empty_like_state(state, "base.") if "base.volume" in state else None
    model = build_field(contrasts, config, normaliser.scale_mm, base)
    if "correction.meta" in state:
        model.correction = StackResiduals.empty_like_state(state, "correction.", len(contrasts))
    return model


def _weight_count(payload: dict, config: FitConfig, normaliser: Normaliser) -> int:
    """The number of weights of the field, after checking that the stored weights are finite and
    have exactly the shapes its config gives (the field is built on PyTorch's ``meta`` device,
    which allocates nothing)."""
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _Damaged("its weights are malformed")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise _Damaged(f"weight {k} holds values that are not finite")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in _build(payload, config, normaliser).state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != stored:
        wrong = sorted(set(shapes) ^ set(stored)) or [k for k in shapes if shapes[k] != stored[k]]
        raise _Damaged(f"its weights' shapes do not match its config ({', '.join(wrong[:3])})")
    return sum(int(np.prod(s)) for s in shapes.values())


def load_checkpoint(
    path: str | os.PathLike, max_memory_gb: float | None = None
) -> tuple[Field, FitConfig, Subject, HeaderCodes, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns model (eval mode), config,
    subject description, header codes and the raw payload.

    Everything read is validated before it is used: the keys, the contrast names (they become
    file names), the config, finite and plausible geometry and intensity scales, foreground
    masks whose shapes match their bits, and weights whose shapes match the config (checked
    without allocating them) and fit the memory budget (``max_memory_gb``, default: available).
    """
    p = Path(path)
    payload = read_tagged(p, FORMAT, "inrsr model file", "model file not found")
    try:
        missing = [k for k in REQUIRED if k not in payload]
        if missing:
            raise _Damaged(f"it has no {', '.join(missing)}")
        contrasts = _contrasts(payload["contrasts"])
        config = FitConfig.from_dict(payload["config"]).validate()
        normaliser = Normaliser(_array(payload["normaliser"]["centre_mm"], (3,), "the normaliser's centre"),
                                float(_array(payload["normaliser"]["scale_mm"], (), "the normaliser's scale")))
        if not normaliser.scale_mm >= MIN_SCALE_MM:
            raise _Damaged(f"the normaliser's scale {normaliser.scale_mm} mm is not positive")
        box = Box(*(_array(payload["box"][k], s, f"the box's {k}")
                    for k, s in (("rotation", (3, 3)), ("lo_mm", (3,)), ("hi_mm", (3,)))))
        scales = {}
        for c in contrasts:
            lo, hi = (float(_array(payload["scales"][c][k], (), f"the intensity scale of {c}")) for k in ("lo", "hi"))
            if not hi > lo:
                raise _Damaged(f"the intensity scale of {c} is empty")
            scales[c] = IntensityScale(lo, hi)
        codes = HeaderCodes(**payload["codes"])
        foregrounds = [_foreground(f) for f in payload.get("foregrounds", [])]
        if not isinstance(payload["stacks"], list) or not all(isinstance(m, dict) for m in payload["stacks"]):
            raise _Damaged("its stack records are malformed")
        for m in payload["stacks"]:
            _array(m.get("affine"), (4, 4), "a stack's affine")
            _array(m.get("registration_mm", np.eye(4)), (4, 4), "a stack's registration")
        n_weights = _weight_count(payload, config, normaliser)
    except (InputError, _Damaged) as exc:
        raise InputError(f"{p}: damaged inrsr model file: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        raise InputError(f"{p}: damaged inrsr model file ({type(exc).__name__}: {one_line(exc)[:200]})") from None
    check_memory(8 * n_weights, f"{p}: loading the model", max_memory_gb)
    model = _build(payload, config, normaliser)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    subject = Subject(contrasts=contrasts, box=box, normaliser=normaliser, scales=scales, foregrounds=foregrounds)
    return model, config, subject, codes, payload
