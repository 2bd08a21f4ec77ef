"""Where and how torch computes: the device, CPU threads and mixed precision of a run."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from inrsr.errors import InputError

__all__ = ["resolve_device", "torch_threads", "thread_count", "autocast"]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` intra-op CPU threads inside the block (0 leaves torch's default)."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def thread_count(n: int) -> int:
    """The intra-op CPU threads that :func:`torch_threads` ``(n)`` uses (0: torch's default)."""
    return n if n > 0 else torch.get_num_threads()


def autocast(device: torch.device | str, precision: str) -> torch.autocast:
    """bfloat16 autocast on ``device`` when ``precision`` is ``bf16``; a disabled one for ``fp32``."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")
