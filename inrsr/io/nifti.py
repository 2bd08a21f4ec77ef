"""NIfTI images: validated reading (sizes checked against the file and the memory budget before
anything is allocated; header oddities reported as warnings), and atomic float32 writing that
keeps the source's header codes."""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from inrsr.errors import FitError, InputError, InputWarning, one_line
from inrsr.geometry import fov_corners_world, voxel_sizes_mm
from inrsr.io.files import atomic_path, check_input_file
from inrsr.resources import check_memory, format_bytes

__all__ = ["image_data", "NIFTI_SUFFIXES", "HeaderCodes", "load_image", "load_mask", "check_finite_volumes", "nifti_image",
           "save_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class HeaderCodes:
    """The qform/sform codes and spatial/temporal units of a source header, kept on outputs."""

    qform_code: int = 1
    sform_code: int = 1
    xyz_unit: str = "mm"
    t_unit: str = "sec"

    @classmethod
    def from_header(cls, header: nib.Nifti1Header) -> "HeaderCodes":
        xyz, t = header.get_xyzt_units()
        return cls(
            int(header["qform_code"]) or 0,
            int(header["sform_code"]) or 0,
            xyz if xyz != "unknown" else "mm",
            t if t != "unknown" else "sec",
        )

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# Plausible geometry (mm): voxel sizes and the distance of the image from the scanner origin.
VOXEL_MM = (1e-3, 1e3)
MAX_OFFSET_MM = 1e5
# Where the sform and qform of a header may differ before a warning (mm, over the corners' map).
FORM_TOL_MM = 1e-2


@contextlib.contextmanager
def _header_notes(p: Path) -> Iterator[None]:
    """Turn what nibabel logs about a header it had to fix (``pixdim`` 0 taken as 1, …) into
    :class:`InputWarning` s naming the file, instead of stray lines on stderr."""
    notes: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    logger = nib.imageglobals.logger  # it has its own stderr handler: replaced while loading
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [Collect()], False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = handlers, propagate
    for note in dict.fromkeys(notes):
        warnings.warn(f"{p}: header: {one_line(note)} (nibabel)", InputWarning, stacklevel=3)


def _stored_bytes(p: Path, needed: int) -> int:
    """Bytes of the stored (uncompressed) stream of ``p``, or at least ``needed`` when it holds
    that many: the file size for ``.nii``; for ``.nii.gz`` the size gzip records (modulo 4 GiB)
    when it agrees, else counted by decompressing in pieces (several gzip members, a truncated
    stream), stopping at ``needed``; memory stays a few MB."""
    size = p.stat().st_size
    if not p.name.lower().endswith(".gz"):
        return size
    with open(p, "rb") as fh:
        fh.seek(max(size - 4, 0))
        tail = fh.read(4)
    recorded = struct.unpack("<I", tail)[0] if len(tail) == 4 else -1
    if recorded == needed % (1 << 32) or (needed < 1 << 32 and recorded >= needed):
        return needed
    total = 0
    with contextlib.suppress(OSError, EOFError, zlib.error), gzip.open(p, "rb") as stream:
        while total < needed:
            chunk = stream.read(1 << 22)
            if not chunk:
                break
            total += len(chunk)
    return total


def _corner_gap_mm(shape: tuple[int, ...], a: np.ndarray, b: np.ndarray) -> float:
    """How far apart (mm, largest coordinate difference) the affines ``a`` and ``b`` place the
    corners of a ``shape`` grid's field of view."""
    return float(np.abs(fov_corners_world(shape, a) - fov_corners_world(shape, b)).max())


def _check_declared_size(p: Path, img: nib.Nifti1Image, what: str, max_memory_gb: float | None) -> None:
    """Refuse, before the voxels are read, an image whose header declares more voxels than its
    file holds (a truncated or lying file), or more than the memory budget (float32 copy included)."""
    header = img.header
    shape = tuple(int(n) for n in img.shape)
    n_vox = math.prod(shape)
    itemsize = np.dtype(header.get_data_dtype()).itemsize
    needed = int(header.get("vox_offset", 0)) + n_vox * itemsize
    dims = "×".join(map(str, shape))
    stored = _stored_bytes(p, needed)
    if needed > stored:
        raise InputError(f"{p}: truncated or inconsistent: the header declares {dims} voxels of "
                         f"{header.get_data_dtype()} ({format_bytes(needed)}) but the file holds {format_bytes(stored)}")
    check_memory(n_vox * (itemsize + 4), f"{p}: reading the {what} ({dims} voxels)", max_memory_gb)


def _check_forms(p: Path, img: nib.Nifti1Image) -> None:
    """Warn when the header's qform and sform both claim to be valid but place the voxels
    differently (readers take the sform, as here)."""
    header = img.header
    if int(header["qform_code"]) <= 0 or int(header["sform_code"]) <= 0:
        return
    gap = _corner_gap_mm(img.shape, header.get_qform(), header.get_sform())
    if gap > FORM_TOL_MM:
        warnings.warn(f"{p}: the header's qform and sform disagree (voxels up to {gap:.3g} mm apart); "
                      "the sform is used", InputWarning, stacklevel=3)


def _check_affine(p: Path, affine: np.ndarray) -> None:
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{p}: affine is singular or not finite")
    sizes = voxel_sizes_mm(affine)
    if sizes.min() < VOXEL_MM[0] or sizes.max() > VOXEL_MM[1]:
        raise InputError(f"{p}: implausible voxel size {'×'.join(f'{v:.3g}' for v in sizes)} mm "
                         f"(expected between {VOXEL_MM[0]:g} and {VOXEL_MM[1]:g} mm)")
    if np.abs(affine[:3, 3]).max() > MAX_OFFSET_MM:
        raise InputError(f"{p}: implausible position: the affine places the image "
                         f"{np.abs(affine[:3, 3]).max():.3g} mm from the scanner origin")


def load_image(
    path: str | os.PathLike, what: str = "image", max_memory_gb: float | None = None
) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load a 3D NIfTI image as float32 data plus the nibabel image (for affine and header).

    A trailing singleton 4th axis is dropped; complex data is taken as its magnitude (with a
    warning). Before any voxel is read, the size the header declares is checked against the
    file and against the memory budget (``max_memory_gb``, default: what is available). Raises
    :class:`InputError` for a missing or unreadable file, a truncated or lying header, non-3D
    data, or an implausible affine (singular, voxels outside 0.001–1000 mm, 100 m from the
    origin). Warns (:class:`InputWarning`) about header fields nibabel had to fix and about a
    qform that disagrees with the sform.
    """
    p = check_input_file(path, what)
    if not str(p).lower().endswith(NIFTI_SUFFIXES):
        raise InputError(f"{p}: not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        with _header_notes(p):
            img = nib.load(str(p))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"{p}: not a NIfTI image ({type(img).__name__})")
        shape = tuple(int(n) for n in img.shape)
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != 3:
            raise InputError(f"{p}: {what} must be 3D, got shape {tuple(img.shape)}")
        if min(shape) < 1:
            raise InputError(f"{p}: {what} is empty (shape {shape})")
        _check_affine(p, img.affine)
        _check_declared_size(p, img, what, max_memory_gb)
        _check_forms(p, img)
        data = _voxels(img, str(p), shape)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{p}: not enough memory to read the {what}") from None
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{p}: cannot read as NIfTI ({type(exc).__name__}: {one_line(exc)})") from None
    return data, img


def _voxels(img: nib.Nifti1Image, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The image's voxels as float32 of ``shape``; complex data as its magnitude, with a warning."""
    raw = np.asanyarray(img.dataobj)
    if np.iscomplexobj(raw):
        warnings.warn(f"{name}: complex-valued voxels; their magnitude is used", InputWarning, stacklevel=3)
        raw = np.abs(raw)
    return np.asarray(raw, dtype=np.float32).reshape(shape)


def image_data(img: object, name: str, what: str = "image") -> np.ndarray:
    """The voxels of a NIfTI image held in memory (the Python API), as float32, checked as
    :func:`load_image` checks a file: a nibabel NIfTI image, 3D (a trailing singleton axis is
    dropped), a plausible affine, magnitude of complex data (with a warning). ``name`` names the
    image in messages."""
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{name}: expected a nibabel NIfTI image or a file path, got {type(img).__name__}")
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"{name}: {what} must be 3D and not empty, got shape {tuple(img.shape)}")
    _check_affine(Path(name), np.asarray(img.affine, dtype=np.float64))
    return _voxels(img, name, shape)


def load_mask(path: str | os.PathLike, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Load a binary mask (non-zero = foreground) that must lie on the grid ``(shape, affine)``."""
    data, img = load_image(path, "mask")
    p = Path(path)
    if data.shape != tuple(shape[:3]):
        raise InputError(f"{p}: mask shape {data.shape} differs from its image's {tuple(shape[:3])}")
    if not np.allclose(img.affine, affine, atol=1e-3):
        gap = _corner_gap_mm(shape, img.affine, affine)
        raise InputError(f"{p}: mask lies elsewhere than its image (same shape, but its affine places voxels up "
                         f"to {gap:.3g} mm away)")
    mask = np.isfinite(data) & (data != 0)
    if not mask.any():
        raise InputError(f"{p}: mask is empty")
    return mask


def check_finite_volumes(volumes: dict[str, np.ndarray], paths: dict[str, Path] | dict[str, str]) -> None:
    """:class:`~inrsr.errors.FitError` naming the first volume (by its output path) that holds a
    value that is not finite: such a result is never written."""
    for c, v in volumes.items():
        bad = int(v.size - np.count_nonzero(np.isfinite(v)))
        if bad:
            raise FitError(f"{paths[c]}: {bad} rendered voxels are not finite (the field diverged); nothing was written")


def nifti_image(
    data: np.ndarray, affine: np.ndarray, codes: HeaderCodes | None = None, dtype: type = np.float32
) -> nib.Nifti1Image:
    """An in-memory NIfTI image of ``data`` as ``dtype``, with ``affine`` as both qform and sform
    and the codes and units of ``codes`` (kept as they are; when both codes are 0 the sform code
    becomes 1 so the affine is used)."""
    codes = codes or HeaderCodes()
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), np.asarray(affine, dtype=np.float64))
    qform_code, sform_code = codes.qform_code, codes.sform_code
    if qform_code == 0 and sform_code == 0:  # neither would be honoured by readers
        sform_code = 1
    img.set_qform(affine, code=qform_code)
    img.set_sform(affine, code=sform_code)
    img.header.set_xyzt_units(codes.xyz_unit, codes.t_unit)
    img.header.set_data_dtype(dtype)
    return img


def save_nifti(
    data: np.ndarray, affine: np.ndarray, path: str | os.PathLike, codes: HeaderCodes | None = None,
    dtype: type = np.float32,
) -> Path:
    """Write ``data`` as NIfTI of ``dtype`` (float32; ``np.uint8`` for masks) atomically (temporary
    file in the same folder, then rename).

    The header gets ``affine`` as both qform and sform with the codes and units of ``codes``
    (kept as they are; when both codes are 0 the sform code becomes 1 so the affine is used).
    """
    p = Path(path)
    img = nifti_image(data, affine, codes, dtype)
    with atomic_path(p) as tmp:
        nib.save(img, tmp)
    return p
