"""NIfTI images: validated reading, and atomic float32 writing that keeps the source's header codes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from inrsr.errors import InputError
from inrsr.io.files import atomic_path

__all__ = ["NIFTI_SUFFIXES", "HeaderCodes", "load_image", "load_mask", "save_nifti"]

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
