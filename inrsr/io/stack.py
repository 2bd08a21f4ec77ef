"""Input stacks: the :class:`Stack` every step receives (data with its affine, contrast, slice
thickness and mask), loaded and validated one by one and cross-checked as a set."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from inrsr.errors import InputError, InputWarning
from inrsr.geometry import overlap_fraction, slice_axis, voxel_sizes_mm
from inrsr.io.files import check_input_file, sidecar_path, sidecar_thickness
from inrsr.io.nifti import HeaderCodes, image_data, load_image, load_mask

__all__ = ["Stack", "StackSpec", "load_stack", "load_stacks", "stack_from_image", "check_stack_set", "CONTRAST_NAME",
           "MIN_OVERLAP", "FEW_VOXELS", "informative_voxels"]

CONTRAST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Below this fraction of the smaller field of view, two stacks are reported as barely overlapping.
MIN_OVERLAP = 0.5
# Fewer slices, or fewer voxels that differ from the background, than this are reported.
FEW_SLICES = 4
FEW_VOXELS = 64
# Slices thicker than this many slice spacings are reported (they overlap that many times).
THICK_SLICES = 4.0
# Slices thinner than this fraction of their spacing are reported (below the thickness estimate's
# lower bound, 0.02 spacings, so that an estimate read back by `inrsr check` is not).
THIN_SLICES = 0.01


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
    thickness_from_sidecar : whether :attr:`thickness_mm` is a BIDS sidecar's ``SliceThickness``
        (the image's own, or one a BIDS App run inherits) rather than given (``--thickness``).
    mask_path : the file :attr:`mask` was read from (``--mask``), if any.
    estimated_thickness_mm : the slice thickness estimated from the data
        (:mod:`inrsr.fit.thickness`), when it was estimated, whether or not it is used.
    thickness_estimated : whether :attr:`thickness_mm` is that estimate.
    thickness_estimator : how that estimate was made: ``crossings`` (judged where the stack's
        slices cross those of another stack of its contrast, :mod:`inrsr.fit.crossings`) or ``fit``
        (learned in a short fit of the field).
    """

    data: np.ndarray
    affine: np.ndarray
    contrast: str
    path: str = "<memory>"
    thickness_mm: float | None = None
    mask: np.ndarray | None = None
    codes: HeaderCodes = field(default_factory=HeaderCodes)
    thickness_from_sidecar: bool = False
    mask_path: str | None = None
    estimated_thickness_mm: float | None = None
    thickness_estimated: bool = False
    thickness_estimator: str | None = None

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
    def in_plane_axes(self) -> list[int]:
        """The two array axes that span the slice planes (all but :attr:`slice_axis`)."""
        return [i for i in range(3) if i != self.slice_axis]

    @property
    def slice_spacing_mm(self) -> float:
        return float(self.spacing_mm[self.slice_axis])

    @property
    def slice_thickness_mm(self) -> float:
        return float(self.thickness_mm) if self.thickness_mm else self.slice_spacing_mm

    @property
    def thickness_source(self) -> str:
        """Where :attr:`slice_thickness_mm` comes from: ``sidecar`` (a BIDS sidecar's
        ``SliceThickness``), ``option`` (given: ``--thickness``), ``estimate`` (estimated from the
        data) or ``spacing`` (none given nor estimated: the slice spacing is assumed)."""
        if not self.thickness_mm:
            return "spacing"
        if self.thickness_estimated:
            return "estimate"
        return "sidecar" if self.thickness_from_sidecar else "option"

    def describe(self) -> str:
        sp = "×".join(f"{s:.3g}" for s in self.spacing_mm)
        dims = "×".join(str(s) for s in self.shape)
        return (
            f"{self.contrast}: {self.path} ({dims} voxels, {sp} mm, slice axis {self.slice_axis}, "
            f"thickness {self.slice_thickness_mm:.3g} mm)"
        )


@dataclass(frozen=True)
class StackSpec:
    """What the user named for one input stack; ``thickness_from_sidecar``: ``thickness_mm`` is a
    ``SliceThickness`` the caller read from the image's BIDS sidecars (inherited as BIDS says)."""

    contrast: str
    path: str
    thickness_mm: float | None = None
    mask_path: str | None = None
    thickness_from_sidecar: bool = False


def load_stack(
    path: str | os.PathLike,
    contrast: str,
    thickness_mm: float | None = None,
    mask_path: str | os.PathLike | None = None,
    thickness_from_sidecar: bool = False,
) -> Stack:
    """Load and validate one input stack.

    Parameters
    ----------
    path : NIfTI file (``.nii`` or ``.nii.gz``), 3D.
    contrast : contrast name for this stack.
    thickness_mm : slice thickness; when ``None``, a BIDS sidecar's ``SliceThickness`` is used if
        present, else the slice spacing.
    mask_path : optional foreground mask on the same grid as the stack.
    thickness_from_sidecar : ``thickness_mm`` is a ``SliceThickness`` the caller read from the
        image's BIDS sidecars (a BIDS App run's, inherited from a sidecar higher in the dataset):
        it is recorded as coming from a sidecar, not as given.

    Raises
    ------
    InputError
        When the file is missing/unreadable/not 3D, contains NaN or infinite values, is
        constant, its sidecar cannot be read or gives no valid ``SliceThickness``
        (:func:`~inrsr.io.files.sidecar_thickness`), or the thickness is not a positive finite
        number no larger than the stack's extent along its slice axis.

    Warns (:class:`InputWarning`) about fewer than :data:`FEW_SLICES` slices, fewer than
    :data:`FEW_VOXELS` voxels that differ from the background, and slices thicker than
    :data:`THICK_SLICES` or thinner than :data:`THIN_SLICES` slice spacings.
    """
    data, img = load_image(path, "stack")
    p = Path(path)
    read_here = thickness_mm is None
    if read_here:
        thickness_mm = sidecar_thickness(p)
        origin = f" (SliceThickness of {sidecar_path(p)})"
    else:
        origin = " (SliceThickness of its BIDS sidecars)" if thickness_from_sidecar else ""
    stack = _checked_stack(data, img, contrast, str(p), thickness_mm, origin)
    stack.thickness_from_sidecar = thickness_mm is not None and (read_here or thickness_from_sidecar)
    if mask_path is not None:
        stack.mask = load_mask(mask_path, data.shape, img.affine)
        stack.mask_path = str(mask_path)
    return stack


def stack_from_image(img: nib.Nifti1Image, contrast: str, name: str, thickness_mm: float | None = None) -> Stack:
    """An input stack from a NIfTI image held in memory (the Python API), validated as
    :func:`load_stack` validates a file; ``name`` names it in messages (and in the log as its
    path)."""
    return _checked_stack(image_data(img, name, "stack"), img, contrast, name, thickness_mm)


def _checked_stack(data: np.ndarray, img: nib.Nifti1Image, contrast: str, name: str,
                   thickness_mm: float | None, origin: str = "") -> Stack:
    """A :class:`Stack` of ``data`` with ``img``'s affine and header codes, after the checks every
    stack passes: finite and not constant voxels, a usable thickness (see :func:`_check_slices`;
    ``origin`` says in its messages where the thickness came from)."""
    if not np.all(np.isfinite(data)):
        raise InputError(f"{name}: contains NaN or infinite values")
    if float(data.max()) == float(data.min()):
        raise InputError(f"{name}: image is constant (all voxels = {float(data.min()):g}); nothing to fit")
    stack = Stack(data=data, affine=np.asarray(img.affine, dtype=np.float64), contrast=contrast, path=name,
                  thickness_mm=thickness_mm, codes=HeaderCodes.from_header(img.header))
    _check_slices(stack, origin)
    return stack


def _check_slices(stack: Stack, origin: str = "") -> None:
    """The thickness must be usable; few slices, few informative voxels and very thick or thin
    slices are reported (see :func:`load_stack`; ``origin``: where the thickness came from, for
    the messages)."""
    n_slices = stack.shape[stack.slice_axis]
    spacing, extent = stack.slice_spacing_mm, stack.shape[stack.slice_axis] * stack.slice_spacing_mm
    thickness = stack.thickness_mm
    if thickness is not None and not (np.isfinite(thickness) and thickness > 0):
        raise InputError(f"{stack.path}: slice thickness must be a positive number of mm, got {thickness}{origin}")
    if thickness is not None and thickness > extent:
        raise InputError(f"{stack.path}: slice thickness {thickness:g} mm{origin} exceeds the stack's whole extent "
                         f"along its slice axis ({n_slices} slices × {spacing:.3g} mm)")
    if thickness is not None and thickness > THICK_SLICES * spacing:
        warnings.warn(f"{stack.path}: slices {thickness:g} mm thick{origin} are {thickness / spacing:.1f} times their "
                      f"spacing ({spacing:.3g} mm); is the thickness right?", InputWarning, stacklevel=3)
    if thickness is not None and thickness < THIN_SLICES * spacing:
        warnings.warn(f"{stack.path}: slices {thickness:.3g} mm thick{origin} are under {THIN_SLICES:.0%} of their "
                      f"spacing ({spacing:.3g} mm); is the thickness right?", InputWarning, stacklevel=3)
    if n_slices < FEW_SLICES:
        warnings.warn(f"{stack.path}: only {n_slices} slice{'s' if n_slices > 1 else ''} along its slice axis "
                      f"{stack.slice_axis}", InputWarning, stacklevel=3)
    informative = informative_voxels(stack)
    if informative < FEW_VOXELS:
        warnings.warn(f"{stack.path}: only {informative} voxels differ from the background", InputWarning,
                      stacklevel=3)


def informative_voxels(stack: Stack) -> int:
    """How many of ``stack``'s voxels differ from the background (its median)."""
    return int(np.count_nonzero(stack.data != np.median(stack.data)))


def load_stacks(specs: list[StackSpec]) -> list[Stack]:
    """Load and cross-check the input stacks.

    Several stacks may share a contrast (e.g. T2 axial + coronal): they train the same head.
    Raises :class:`InputError` for no stacks, a bad contrast name, a file given twice, any
    unreadable or invalid file, or a stack whose field of view does not overlap the first stack's.
    Warns (:class:`InputWarning`) when a stack covers less than :data:`MIN_OVERLAP` of the smaller
    field of view of itself and the first stack.
    """
    if not specs:
        raise InputError("no input stacks: give --t1/--t2/--flair PATH or --stack CONTRAST=PATH")
    seen: set[Path] = set()
    for spec in specs:
        if not CONTRAST_NAME.match(spec.contrast):
            raise InputError(f"{spec.path}: contrast name {spec.contrast!r} must be letters, digits, '_' or '-'")
        resolved = check_input_file(spec.path, "stack").resolve()
        if resolved in seen:
            raise InputError(f"{spec.path}: the same file is given twice")
        seen.add(resolved)
    stacks = [load_stack(s.path, s.contrast, s.thickness_mm, s.mask_path, s.thickness_from_sidecar) for s in specs]
    check_stack_set(stacks)
    return stacks


def check_stack_set(stacks: list[Stack]) -> None:
    """Cross-check loaded stacks: each must overlap the first one's field of view
    (:class:`InputError` otherwise), and a small overlap is reported (:class:`InputWarning`)."""
    first = stacks[0]
    for s in stacks[1:]:
        overlap = overlap_fraction((first.shape, first.affine), (s.shape, s.affine))
        if overlap <= 0.0:
            raise InputError(f"{s.path}: field of view does not overlap that of {first.path}")
        if overlap < MIN_OVERLAP:
            warnings.warn(
                f"{s.path}: its field of view overlaps only {100 * overlap:.0f}% of {first.path}'s "
                f"(is it the same subject and session?)", InputWarning, stacklevel=3,
            )
