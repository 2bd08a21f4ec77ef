"""Reading and writing NIfTI images: validated :class:`Stack` objects in, atomic float32 files out."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np

from .errors import InputError
from .geometry import slice_axis, voxel_sizes_mm

__all__ = [
    "Stack", "load_image", "load_stack", "load_mask", "save_nifti", "HeaderCodes", "check_writable", "atomic_path",
    "write_text",
]

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


@dataclass
class Stack:
    """One image with its geometry: what every function that takes image data receives.

    Attributes
    ----------
    data : float32 array of shape ``(X, Y, Z)``.
    affine : 4×4 voxel-centre → world (mm) map.
    contrast : contrast name (``t1``, ``flair``, …); names the output volume.
    path : source file (for messages).
    thickness_mm : slice thickness along :attr:`slice_axis`; defaults to the slice spacing.
    mask : optional boolean foreground array of the same shape.
    codes : qform/sform codes and units of the source header.
    """

    data: np.ndarray
    affine: np.ndarray
    contrast: str
    path: str = "<memory>"
    thickness_mm: float | None = None
    mask: np.ndarray | None = None
    codes: HeaderCodes = field(default_factory=HeaderCodes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape[:3])  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> np.ndarray:
        return voxel_sizes_mm(self.affine)

    @property
    def slice_axis(self) -> int:
        return slice_axis(self.affine)

    @property
    def slice_spacing_mm(self) -> float:
        return float(self.spacing_mm[self.slice_axis])

    @property
    def slice_thickness_mm(self) -> float:
        return float(self.thickness_mm) if self.thickness_mm else self.slice_spacing_mm

    def describe(self) -> str:
        sp = "×".join(f"{s:.3g}" for s in self.spacing_mm)
        dims = "×".join(str(s) for s in self.shape)
        return (
            f"{self.contrast}: {self.path} ({dims} voxels, {sp} mm, slice axis {self.slice_axis}, "
            f"thickness {self.slice_thickness_mm:.3g} mm)"
        )


def _check_nifti_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a .nii or .nii.gz file")
    if not str(p).lower().endswith(NIFTI_SUFFIXES):
        raise InputError(f"{p}: not a NIfTI file (expected a .nii or .nii.gz name)")
    return p


def load_image(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load a 3D NIfTI image as float32 data plus the nibabel image (for affine and header).

    A trailing singleton 4th axis is dropped. Raises :class:`InputError` for a missing or
    unreadable file, non-3D data, or data with no finite voxels.
    """
    p = _check_nifti_path(path)
    try:
        img = nib.load(str(p))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"{p}: not a NIfTI image ({type(img).__name__})")
        data = np.asarray(img.dataobj, dtype=np.float32)
    except InputError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{p}: cannot read as NIfTI ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{p}: {what} must be 3D, got shape {tuple(img.shape)}")
    if min(data.shape) < 1:
        raise InputError(f"{p}: {what} is empty (shape {data.shape})")
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{p}: affine is singular or not finite")
    return data, img


def sidecar_path(path: str | os.PathLike) -> Path:
    """The BIDS JSON sidecar beside a ``.nii``/``.nii.gz`` image: the same name ending in ``.json``."""
    p = Path(path)
    name = p.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]
    return p.with_name(stem + ".json")


def write_thickness_sidecar(path: str | os.PathLike, thickness_mm: float) -> Path:
    """Write the BIDS sidecar of the image at ``path`` with its ``SliceThickness`` (mm), as a
    scanner would; :func:`load_stack` reads it back. Returns the sidecar's path."""
    return write_text(sidecar_path(path), json.dumps({"SliceThickness": float(thickness_mm)}) + "\n")


def _sidecar_thickness(path: Path) -> float | None:
    """Slice thickness (mm) from a BIDS JSON sidecar (``SliceThickness``) beside the image, if any."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        value = json.loads(sidecar.read_text()).get("SliceThickness")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def load_stack(
    path: str | os.PathLike,
    contrast: str,
    thickness_mm: float | None = None,
    mask_path: str | os.PathLike | None = None,
) -> Stack:
    """Load and validate one input stack.

    Parameters
    ----------
    path : NIfTI file (``.nii`` or ``.nii.gz``), 3D.
    contrast : contrast name for this stack.
    thickness_mm : slice thickness; when ``None``, a BIDS sidecar's ``SliceThickness`` is used if
        present, else the slice spacing.
    mask_path : optional foreground mask on the same grid as the stack.

    Raises
    ------
    InputError
        When the file is missing/unreadable/not 3D, contains NaN or infinite values, or is constant.
    """
    data, img = load_image(path, "stack")
    p = Path(path)
    if not np.all(np.isfinite(data)):
        raise InputError(f"{p}: contains NaN or infinite values")
    if float(data.max()) == float(data.min()):
        raise InputError(f"{p}: image is constant (all voxels = {float(data.min()):g}); nothing to fit")
    if thickness_mm is None:
        thickness_mm = _sidecar_thickness(p)
    elif not thickness_mm > 0:
        raise InputError(f"{p}: slice thickness must be positive, got {thickness_mm}")
    mask = load_mask(mask_path, data.shape, img.affine) if mask_path is not None else None
    return Stack(
        data=data,
        affine=np.asarray(img.affine, dtype=np.float64),
        contrast=contrast,
        path=str(p),
        thickness_mm=thickness_mm,
        mask=mask,
        codes=HeaderCodes.from_header(img.header),
    )


def load_mask(path: str | os.PathLike, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Load a binary mask (non-zero = foreground) that must lie on the grid ``(shape, affine)``."""
    data, img = load_image(path, "mask")
    p = Path(path)
    if data.shape != tuple(shape[:3]) or not np.allclose(img.affine, affine, atol=1e-3):
        raise InputError(f"{p}: mask grid {data.shape} does not match its image's grid {tuple(shape[:3])}")
    mask = np.isfinite(data) & (data != 0)
    if not mask.any():
        raise InputError(f"{p}: mask is empty")
    return mask


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


def save_nifti(
    data: np.ndarray, affine: np.ndarray, path: str | os.PathLike, codes: HeaderCodes | None = None
) -> Path:
    """Write ``data`` as float32 NIfTI atomically (temporary file in the same folder, then rename).

    The header gets ``affine`` as both qform and sform with the codes and units of ``codes``
    (kept as they are; when both codes are 0 the sform code becomes 1 so the affine is used).
    """
    codes = codes or HeaderCodes()
    p = Path(path)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    qform_code, sform_code = codes.qform_code, codes.sform_code
    if qform_code == 0 and sform_code == 0:  # neither would be honoured by readers
        sform_code = 1
    img.set_qform(affine, code=qform_code)
    img.set_sform(affine, code=sform_code)
    img.header.set_xyzt_units(codes.xyz_unit, codes.t_unit)
    img.header.set_data_dtype(np.float32)
    with atomic_path(p) as tmp:
        nib.save(img, tmp)
    return p


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
