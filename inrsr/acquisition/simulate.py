"""Thick-slice stacks simulated from an isotropic volume (for evaluation and the demo)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to
from scipy import ndimage

from inrsr.acquisition.profiles import profile_name
from inrsr.errors import InputError
from inrsr.geometry import fwhm_to_sigma, rescaled_affine, voxel_sizes_mm, world_axis_of

__all__ = ["VIEWS", "PROFILES", "view_axis", "simulate_stack", "simulated_thickness_mm"]

VIEWS = {"sagittal": 0, "coronal": 1, "axial": 2}  # world axis across which slices are thick
# The slice profiles a thick stack can be simulated with (see inrsr.acquisition.profiles).
PROFILES = ("point", "box", "gaussian")
# A Gaussian narrower than this standard deviation (voxels) changes no value by a float32 step,
# and below about 1e-150 its weights divide by zero: it is not applied.
MIN_SIGMA_VOX = 1e-3


def view_axis(affine: np.ndarray, view: str) -> int:
    """Array axis of ``affine`` that points along the through-plane direction of ``view``.

    axial slices are thick along S–I (world z), coronal along A–P (y), sagittal along L–R (x).
    """
    return world_axis_of(affine, VIEWS[view])


def simulate_stack(
    data: np.ndarray, affine: np.ndarray, axis: int, factor: int, profile: str, thickness_vox: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Down-sample array ``axis`` of an isotropic volume by an integer ``factor``.

    ``point`` (the paper's protocol): cubic-spline values (order 3, zero outside) at the voxel
    centres of nibabel's ``rescale_affine`` grid with ``ceil(n / factor)`` slices.
    ``box`` (thick-slice acquisition, the "slab" protocol): each new voxel is the mean of
    ``thickness_vox`` (default ``factor``) consecutive slices centred on its block of ``factor``
    slices; ``n // factor`` slices, a remainder is dropped. ``thickness_vox`` must be a whole number
    of slices with the parity of ``factor`` (so that the box is centred), and may be smaller
    (thin slices with gaps) or larger (overlapping slices) than ``factor``. ``gaussian``: the
    volume blurred along ``axis`` by a Gaussian of FWHM ``thickness_vox`` slices (default
    ``factor``), then sampled as ``point``. ``slab`` is accepted as a former name of ``box``.

    Returns ``(data, affine)`` of the stack; its affine is exactly the grid the values were taken
    on, so voxel centres land where the resampling put them.
    """
    if factor < 1:
        raise ValueError(f"factor must be ≥ 1, got {factor}")
    profile = profile_name(profile, allowed=PROFILES)
    data = np.asarray(data, dtype=np.float32)
    width = float(factor if thickness_vox is None else thickness_vox)
    if profile == "gaussian" and fwhm_to_sigma(width) >= MIN_SIGMA_VOX:  # narrower: point samples already
        data = ndimage.gaussian_filter1d(data, fwhm_to_sigma(width), axis=axis, mode="constant", truncate=3.0)
    if profile in ("point", "gaussian"):
        new_affine, new_shape = rescaled_affine(affine, data.shape, axis, factor, keep="centre")
        img = nib.Nifti1Image(data, affine)
        out = resample_from_to(img, (new_shape, new_affine), order=3, mode="constant", cval=0.0)
        return np.asarray(out.dataobj, dtype=np.float32), new_affine
    k = int(round(width))  # box
    if abs(k - width) > 1e-6 or k < 1 or (factor - k) % 2:
        raise InputError(f"a box slice must span a whole number of voxels of the parity of the factor {factor} "
                         f"(to stay centred on its block), got {width:.3g}")
    new_affine, new_shape = rescaled_affine(affine, data.shape, axis, factor, keep="blocks")
    moved = np.moveaxis(data, axis, 0)
    n_out, pad = new_shape[axis], max(0, (k - factor) // 2)
    padded = np.concatenate([np.zeros((pad, *moved.shape[1:]), np.float32), moved[: n_out * factor],
                             np.zeros((pad, *moved.shape[1:]), np.float32)])
    first = pad + (factor - k) // 2  # first slice of block 0's box in ``padded``
    sums = np.cumsum(np.concatenate([np.zeros((1, *moved.shape[1:]), np.float64), padded]), axis=0)
    starts = first + factor * np.arange(n_out)
    blocks = (sums[starts + k] - sums[starts]) / k
    return np.ascontiguousarray(np.moveaxis(blocks, 0, axis), dtype=np.float32), new_affine


def simulated_thickness_mm(affine: np.ndarray, axis: int, factor: int, profile: str,
                           thickness_vox: float | None = None) -> float:
    """Slice thickness (mm) of a stack made by :func:`simulate_stack` from an isotropic volume
    with ``affine``: ``point`` samples are thin slices, one source voxel thick (with gaps between
    them); a ``box`` spans, and a ``gaussian``'s FWHM is, ``thickness_vox`` source voxels (default
    ``factor``)."""
    profile = profile_name(profile, allowed=PROFILES)
    spacing = float(voxel_sizes_mm(affine)[axis])
    if profile == "point":
        return spacing
    return float(factor if thickness_vox is None else thickness_vox) * spacing
