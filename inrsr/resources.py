"""Memory budgets: what a step will allocate, checked against what the machine can give before
it is allocated, so that an impossible request fails at once with one line instead of an hour
later (or by the kernel's out-of-memory killer)."""

from __future__ import annotations

import math
import os
import resource

from inrsr.errors import InputError

__all__ = ["available_memory_bytes", "memory_budget_bytes", "check_memory", "format_bytes", "peak_rss_gb",
           "RENDER_BYTES_PER_VOXEL", "RENDER_FOREGROUND_BYTES_PER_VOXEL", "render_bytes"]

# Bytes a render holds per output voxel and contrast: the float32 field values, their rescaled
# copy and the float32 array nibabel writes (measured: about 10; see docs/design.md).
RENDER_BYTES_PER_VOXEL = 12
# Bytes a render holds per output voxel whatever the contrasts: the foreground of the grid (bool).
RENDER_FOREGROUND_BYTES_PER_VOXEL = 1


def render_bytes(n_vox: int, n_volumes: int) -> int:
    """Memory (bytes) that rendering ``n_volumes`` volumes of ``n_vox`` voxels is budgeted."""
    return n_vox * (n_volumes * RENDER_BYTES_PER_VOXEL + RENDER_FOREGROUND_BYTES_PER_VOXEL)


def available_memory_bytes() -> int:
    """Memory the system can give this process now (bytes): Linux's ``MemAvailable``, bounded by
    a cgroup (container) limit when there is one; the physical memory elsewhere."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            available = 1 << 62
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                text = fh.read().strip()
            with open(usage_file) as fh:
                used = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if text.isdigit() and int(text) < 1 << 60:
            available = min(available, max(int(text) - used, 0))
        break
    return int(available)


def memory_budget_bytes(limit_gb: float | None) -> int:
    """The bytes a run may allocate: ``limit_gb`` (``--max-memory``) when given, else what the
    system has available now (:func:`available_memory_bytes`)."""
    if limit_gb is None:
        return available_memory_bytes()
    if not (math.isfinite(limit_gb) and limit_gb > 0):
        raise InputError(f"--max-memory must be a positive number of GB, got {limit_gb}")
    return int(limit_gb * 1024**3)


def peak_rss_gb() -> float:
    """The most memory this process has held so far (peak resident set size), GiB (Linux reports
    ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (or MB below one GB), for messages."""
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def check_memory(needed: float, what: str, limit_gb: float | None = None, hint: str = "") -> None:
    """Raise :class:`InputError` when ``needed`` bytes exceed the budget of
    :func:`memory_budget_bytes` (``what`` names the request, ``hint`` what the user can change)."""
    budget = memory_budget_bytes(limit_gb)
    if needed > budget:
        source = f"--max-memory {limit_gb:g}" if limit_gb is not None else "available now"
        raise InputError(f"{what} needs about {format_bytes(needed)} of memory but {format_bytes(budget)} is "
                         f"{source}{'; ' + hint if hint else ''}")


# glibc's mallopt parameters (malloc.h) and the values a fit runs well with: freed memory is kept
# for reuse up to 256 MiB, and only blocks above 32 MiB are mapped on their own.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES, OWN_MAPPING_BYTES = 256 << 20, 32 << 20


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of returning it to the system at once.

    Dask's worker processes start with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc give
    back every freed block above 64 KiB; a fit, which allocates and frees large tensors at every
    step, then runs about 40 % slower (docs/experiment-log.md, 2026-11-30). Setting the trim
    threshold also fixes glibc's mmap threshold, so it is raised too. Returns whether the
    settings were applied (glibc only; elsewhere nothing is changed)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not hasattr(ctypes.CDLL(name), "mallopt"):
        return False
    libc = ctypes.CDLL(name)
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)) and bool(libc.mallopt(_M_MMAP_THRESHOLD,
                                                                                       OWN_MAPPING_BYTES))
