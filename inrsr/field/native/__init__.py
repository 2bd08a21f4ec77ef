"""Compiled CPU kernels, built on first use with the system C compiler and loaded with ctypes.

The C sources ship with the package. A kernel is compiled once per source, compiler and machine
into the cache folder (``$INRSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/inrsr``, else
``~/.cache/inrsr``) and reused by later processes. Nothing here is required: when no compiler
is found or the build fails, :func:`load_hashgrid` raises :class:`NativeUnavailable` and the
callers fall back to their pure-PyTorch paths.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["NativeUnavailable", "load_hashgrid", "cache_dir", "find_compiler"]

_SOURCE_DIR = Path(__file__).resolve().parent
# -ffp-contract=off: no fused multiply-adds, so that the rounding matches the PyTorch path.
_CFLAGS = ("-O3", "-std=c99", "-fPIC", "-shared", "-pthread", "-ffp-contract=off")
# Tried first: the kernels' threads are then those of the OpenMP runtime PyTorch already loaded
# (libgomp in PyTorch's Linux wheels), not threads of their own competing with its spinning workers.
# Where the compiler has no OpenMP (Apple's clang), the kernels fall back to POSIX threads.
_OPENMP_FLAGS = ("-fopenmp",)


class NativeUnavailable(RuntimeError):
    """A compiled kernel cannot be built or loaded here (the message says why)."""


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$INRSR_CACHE_DIR``, ``$XDG_CACHE_HOME/inrsr`` or ``~/.cache/inrsr``."""
    if os.environ.get("INRSR_CACHE_DIR"):
        return Path(os.environ["INRSR_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "inrsr"


def find_compiler() -> str:
    """The C compiler the kernels are built with: ``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        raise NativeUnavailable("no C compiler found (set CC)")
    return compiler


def _load(name: str) -> ctypes.CDLL:
    """``<name>.c`` compiled (if not in the cache yet) and loaded: with OpenMP where the compiler
    has it and the library loads, else without."""
    compiler = find_compiler()
    try:
        return ctypes.CDLL(str(_compile(compiler, name, (*_CFLAGS, *_OPENMP_FLAGS))))
    except (NativeUnavailable, OSError):
        pass
    try:
        return ctypes.CDLL(str(_compile(compiler, name, _CFLAGS)))
    except OSError as exc:
        raise NativeUnavailable(f"cannot load the {name} kernel: {exc}") from exc


def _compile(compiler: str, name: str, flags: tuple[str, ...]) -> Path:
    """``<name>.c`` compiled with ``flags`` into the cache (if not there yet): the library's path."""
    source = _SOURCE_DIR / f"{name}.c"
    key = hashlib.sha256(
        source.read_bytes() + " ".join((compiler, *flags, platform.machine(), platform.system())).encode()
    ).hexdigest()[:16]
    folder = cache_dir()
    target = folder / f"{name}-{key}.so"
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise NativeUnavailable(f"cannot write the kernel cache {folder}: {exc}") from exc
    try:
        done = subprocess.run([compiler, *flags, str(source), "-o", tmp, "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no message"])[0]
            raise NativeUnavailable(f"{compiler} failed on {source.name}: {first}")
        os.replace(tmp, target)  # atomic: concurrent builders never see a half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.lru_cache(maxsize=None)
def load_hashgrid() -> ctypes.CDLL:
    """The hash-grid kernel library (see ``hashgrid.c``), built if needed; loaded once per process."""
    lib = _load("hashgrid")
    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    signature = [ptr, i64, ptr, ptr, ptr, i32, i32, i64, i32, ptr, ptr, i32]
    for fn in (lib.inrsr_hashgrid_forward, lib.inrsr_hashgrid_backward):
        fn.argtypes = signature
        fn.restype = None
    lib.inrsr_hashgrid_backward_points.argtypes = signature[:9] + [ptr, ptr, ptr, i32]
    lib.inrsr_hashgrid_backward_points.restype = None
    lib.inrsr_hashgrid_openmp.argtypes = []
    lib.inrsr_hashgrid_openmp.restype = ctypes.c_int
    return lib
