"""The training state of an interrupted fit (``--resume``), and the deferral of Ctrl-C / SIGTERM
until a step is finished and that state is saved."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import torch

from inrsr.config import RUN_ONLY_OPTIONS, FitConfig
from inrsr.errors import InputError
from inrsr.field.checkpoint import read_tagged
from inrsr.io.files import atomic_path

__all__ = ["STATE_FORMAT", "RESUME_MAY_CHANGE", "InterruptFlag", "save_fit_state", "load_fit_state",
           "saved_thickness"]

STATE_FORMAT = "inrsr-fit-state-1"
# Options that do not change the optimisation and may differ when resuming.
RESUME_MAY_CHANGE = ("device", "threads", "render_foreground", *RUN_ONLY_OPTIONS)


class InterruptFlag:
    """Defers SIGINT/SIGTERM while training: the handler only sets :attr:`raised`, so the loop can
    finish its step, save its state and stop cleanly. A no-op outside the main thread."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.raised = False
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.raised:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.raised = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def save_fit_state(path: str | os.PathLike, state: dict) -> None:
    """Write a training state for ``--resume`` atomically (see :func:`inrsr.fit.loop.fit_field`)."""
    with atomic_path(path) as tmp:
        torch.save({"format": STATE_FORMAT, **state}, tmp)


def load_fit_state(path: str | os.PathLike | None, config: FitConfig, n_points: int) -> dict:
    """A training state saved by :func:`inrsr.fit.loop.fit_field`, checked against this fit's config and data."""
    if path is None:
        raise InputError("no state file to resume from")
    p = Path(path)
    state = read_tagged(p, STATE_FORMAT, "inrsr fit state", "no interrupted fit to resume (the state file is missing)")
    saved = FitConfig.from_dict(state["config"]).to_dict()
    changed = [k for k, v in config.to_dict().items() if k not in RESUME_MAY_CHANGE and saved.get(k) != v]
    if changed:
        raise InputError(f"{p}: cannot resume with different options ({', '.join('--' + c.replace('_', '-') for c in changed)})")
    if state["n_points"] != n_points:
        raise InputError(f"{p}: cannot resume: the inputs differ from the interrupted fit's")
    return state


def saved_thickness(path: str | os.PathLike) -> list[dict] | None:
    """The stacks' slice thickness an interrupted fit's state at ``path`` records
    (:func:`inrsr.fit.thickness.thickness_record`); ``None`` for a state saved without it."""
    state = read_tagged(Path(path), STATE_FORMAT, "inrsr fit state",
                        "no interrupted fit to resume (the state file is missing)")
    return state.get("stack_thickness")
