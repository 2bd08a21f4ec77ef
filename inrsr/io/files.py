"""Files on disk: atomic writes, output-folder checks, the one "output exists" refusal, and the
BIDS JSON sidecar beside an image."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from inrsr.errors import InputError

__all__ = [
    "atomic_path", "write_text", "write_json", "write_csv", "check_writable", "refuse_existing", "check_output_folder",
    "check_output_file", "sidecar_path", "write_thickness_sidecar", "sidecar_thickness",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (``.nii.gz``, ``.png``, …) so writers that choose a
    format from the name behave the same. On failure the temporary file is removed and ``path`` is
    left untouched, so no half-written output ever carries the final name.
    """
    p = Path(path)
    suffix = ".nii.gz" if p.name.lower().endswith(".nii.gz") else p.suffix
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: dict) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy scalars as floats)."""
    return write_text(path, json.dumps(obj, indent=2, default=float))


def write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the first row's keys) as CSV atomically; no rows: an empty file."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return Path(path)


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check that files can be written in it."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".inrsr-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"{d}: output folder is not writable ({exc.strerror or exc})") from None
    return d


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """Raise :class:`InputError` naming the first of ``paths`` that exists, unless ``overwrite``."""
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise InputError(f"{p}: output exists (use --overwrite to replace it)")


def check_output_folder(path: str | os.PathLike) -> Path:
    """``path`` as an output folder: :class:`InputError` when it exists and is not a folder."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    return out


def check_output_file(path: str | os.PathLike, overwrite: bool, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as one output file: refused when it exists (unless ``overwrite``), when its name
    does not end in one of ``suffixes`` (any when empty) or when its folder does not exist."""
    p = Path(path)
    refuse_existing([p], overwrite)
    if suffixes and not p.name.lower().endswith(suffixes):
        raise InputError(f"{p}: output name must end in {' or '.join(suffixes)}")
    if not p.parent.is_dir():
        raise InputError(f"{p.parent}: output folder does not exist")
    return p


def sidecar_path(path: str | os.PathLike) -> Path:
    """The BIDS JSON sidecar beside a ``.nii``/``.nii.gz`` image: the same name ending in ``.json``."""
    p = Path(path)
    name = p.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]
    return p.with_name(stem + ".json")


def write_thickness_sidecar(path: str | os.PathLike, thickness_mm: float) -> Path:
    """Write the BIDS sidecar of the image at ``path`` with its ``SliceThickness`` (mm), as a
    scanner would; :func:`inrsr.io.stack.load_stack` reads it back. Returns the sidecar's path."""
    return write_text(sidecar_path(path), json.dumps({"SliceThickness": float(thickness_mm)}) + "\n")


def sidecar_thickness(path: Path) -> float | None:
    """Slice thickness (mm) from a BIDS JSON sidecar (``SliceThickness``) beside the image, if any."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        value = json.loads(sidecar.read_text()).get("SliceThickness")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None
