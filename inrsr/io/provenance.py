"""Provenance: what every volume inrsr writes says about itself, in its BIDS-style JSON sidecar
(``<name>.json`` beside ``<name>.nii.gz``, see :func:`inrsr.io.files.sidecar_path`).

A sidecar (:func:`volume_sidecar`) holds

* ``Description``: what the voxels mean, in plain words;
* ``Contrast``: the contrast the volume shows (fit, sample, masks and baselines);
* ``Sources``: the absolute paths of every file the volume was made from (input stacks, masks,
  reference image, model file), as BIDS' ``Sources`` list, and ``SourcesSHA256``: path → SHA-256
  of each of them whose content is known (a recorded input that no longer exists has none);
* ``GeneratedBy``: BIDS' list with one entry: ``Name`` (``inrsr``), ``Version``, ``CommandLine``
  (the shell-quoted command, when known) and ``Date`` (ISO 8601, UTC);
* ``Preset`` and ``OptionsChanged`` when a configuration was used: the preset's name and the
  options (config field → value) whose value differs from the preset's;
* ``Grid``: ``Shape``, ``VoxelSizeMm``, ``Affine`` (voxel centre → world mm) and ``Reference``
  (the ``--ref`` image, or null).

Pure Python and NumPy: nothing here imports PyTorch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from inrsr import __version__
from inrsr.geometry import Grid, voxel_sizes_mm

__all__ = ["SOFTWARE", "utc_now", "file_sha256", "source_hashes", "command_text", "generated_by",
           "options_changed", "grid_record", "volume_sidecar"]

SOFTWARE = "inrsr"
_BLOCK = 1 << 20  # bytes read at a time when hashing


def utc_now() -> str:
    """The current time as ISO 8601 in UTC, to the second (``2026-01-31T14:05:09Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def source_hashes(paths: Iterable[str | os.PathLike | None]) -> dict[str, str]:
    """Absolute path → SHA-256 of each of ``paths`` (``None`` skipped, each file once, in order)."""
    hashes: dict[str, str] = {}
    for p in paths:
        if p is not None and os.path.abspath(p) not in hashes:
            hashes[os.path.abspath(p)] = file_sha256(p)
    return hashes


def command_text(command_line: list[str] | None) -> str | None:
    """The command as one shell-quoted string (``shlex.join``), or ``None`` when unknown."""
    return shlex.join(command_line) if command_line is not None else None


def generated_by(command_line: list[str] | None, date: str | None = None) -> list[dict]:
    """BIDS ``GeneratedBy``: one entry naming inrsr and its version, with the command line when
    known and ``date`` (ISO 8601 UTC; default: now)."""
    entry: dict[str, Any] = {"Name": SOFTWARE, "Version": __version__}
    if command_line is not None:
        entry["CommandLine"] = command_text(command_line)
    entry["Date"] = date or utc_now()
    return [entry]


def options_changed(config: Any, reference: Any) -> dict[str, Any]:
    """The fields of the config dataclass ``config`` whose value differs from ``reference``'s
    (the preset it started from), field name → value, in field order."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(reference, f.name)}


def grid_record(grid: Grid, reference: str | os.PathLike | None = None) -> dict:
    """``Shape``, ``VoxelSizeMm``, ``Affine`` (voxel centre → world mm) and ``Reference`` (the
    absolute path of the image whose grid it is, or ``None``) of an output grid."""
    return {
        "Shape": [int(n) for n in grid.shape],
        "VoxelSizeMm": [round(float(v), 6) for v in voxel_sizes_mm(grid.affine)],
        "Affine": np.asarray(grid.affine, dtype=float).tolist(),
        "Reference": os.path.abspath(reference) if reference is not None else None,
    }


def volume_sidecar(
    description: str,
    contrast: str | None,
    grid: Grid,
    sources: dict[str, str | None],
    command_line: list[str] | None,
    *,
    reference: str | os.PathLike | None = None,
    preset: str | None = None,
    options: dict[str, Any] | None = None,
    date: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict:
    """The JSON sidecar of a written volume (see the module's description of the keys).

    ``sources``: absolute path → SHA-256 (``None`` when the content is unknown) of every file the
    volume was made from. ``preset`` and ``options`` (see :func:`options_changed`) are written
    when ``preset`` is given; ``extra`` keys (``SliceThickness``, …) are added last.
    """
    sidecar: dict[str, Any] = {"Description": description}
    if contrast is not None:
        sidecar["Contrast"] = contrast
    sidecar["Sources"] = [str(Path(p)) for p in sources]
    sidecar["SourcesSHA256"] = {p: h for p, h in sources.items() if h is not None}
    sidecar["GeneratedBy"] = generated_by(command_line, date)
    if preset is not None:
        sidecar["Preset"] = preset
        sidecar["OptionsChanged"] = dict(options or {})
    sidecar["Grid"] = grid_record(grid, reference)
    sidecar.update(extra or {})
    return sidecar
