"""Thick-slice stacks simulated from an isotropic volume (for evaluation and the demo)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from inrsr.acquisition.profiles import profile_name
from inrsr.geometry import rescaled_affine, voxel_sizes_mm, world_axis_of

__all__ = ["VIEWS", "PROFILES", "view_axis", "simulate_stack", "simulated_thickness_mm"]

VIEWS = {"sagittal": 0, "coronal": 1, "axial": 2}  # world axis across which slices are thick
# The slice profiles a thick stack can be simulated with (see inrsr.acquisition.profiles).
PROFILES = ("point", "box")


def view_axis(affine: np.ndarray, view: str) -> int:
    """Array axis of ``affine`` that points along the through-plane direction of ``view``.

    axial slices are thick along S–I (world z), coronal along A–P (y), sagittal along L–R (x).
    """
    return world_axis_of(affine, VIEWS[view])


def simulate_stack(
    data: np.ndarray, affine: np.ndarray, axis: int, factor: int, profile: str
) -> tuple[np.ndarray, np.ndarray]:
    """Down-sample array ``axis`` of an isotropic volume by an integer ``factor``.

    ``point`` (the paper's protocol): cubic-spline values (order 3, zero outside) at the voxel
    centres of nibabel's ``rescale_affine`` grid with ``ceil(n / factor)`` slices.
    ``box`` (thick-slice acquisition, the "slab" protocol): each new voxel is the mean of
    ``factor`` consecutive slices and is centred on them; ``n // factor`` slices, a remainder is
    dropped. ``slab`` is accepted as a former name of ``box``, with a warning.

    Returns ``(data, affine)`` of the stack; its affine is exactly the grid the values were taken
    on, so voxel centres land where the resampling put them.
    """
    if factor < 1:
        raise ValueError(f"factor must be ≥ 1, got {factor}")
    profile = profile_name(profile, allowed=PROFILES)
    data = np.asarray(data, dtype=np.float32)
    if profile == "point":
        new_affine, new_shape = rescaled_affine(affine, data.shape, axis, factor, keep="centre")
        img = nib.Nifti1Image(data, affine)
        out = resample_from_to(img, (new_shape, new_affine), order=3, mode="constant", cval=0.0)
        return np.asarray(out.dataobj, dtype=np.float32), new_affine
    new_affine, new_shape = rescaled_affine(affine, data.shape, axis, factor, keep="blocks")  # box
    n = new_shape[axis] * factor
    moved = np.moveaxis(data, axis, 0)[:n]
    blocks = moved.reshape(new_shape[axis], factor, *moved.shape[1:]).mean(axis=1)
    return np.ascontiguousarray(np.moveaxis(blocks, 0, axis), dtype=np.float32), new_affine


def simulated_thickness_mm(affine: np.ndarray, axis: int, factor: int, profile: str) -> float:
    """Slice thickness (mm) of a stack made by :func:`simulate_stack` from an isotropic volume
    with ``affine``: ``point`` samples are thin slices, one source voxel thick (with gaps between
    them); a ``box`` spans ``factor`` source voxels."""
    profile = profile_name(profile, allowed=PROFILES)
    spacing = float(voxel_sizes_mm(affine)[axis])
    return spacing if profile == "point" else factor * spacing
