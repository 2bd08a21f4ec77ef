"""The single-file jobs of the command line: simulate a thick stack, evaluate a prediction
against a truth, and the two baselines (cubic interpolation, SMORE) on one stack."""

from __future__ import annotations

import numpy as np

from inrsr.errors import InputError
from inrsr.io.files import (
    check_output_file, check_writable, refuse_existing, refuse_inputs, sidecar_path, write_thickness_sidecar,
)
from inrsr.io.nifti import NIFTI_SUFFIXES, HeaderCodes, check_finite_volumes, load_image, load_mask, save_nifti

__all__ = ["simulate_file", "evaluate_files", "cubic_file", "smore_file"]


def simulate_file(
    hr: str, output: str, view: str | None, axis: int | None, factor: int, profile: str, overwrite: bool
) -> dict:
    """Write a thick-slice stack simulated from the isotropic volume ``hr`` (see
    :func:`inrsr.acquisition.simulate.simulate_stack`), with a BIDS sidecar giving its
    ``SliceThickness``. Thick along ``view`` or array ``axis`` (exactly one of them)."""
    from inrsr.acquisition.profiles import profile_name
    from inrsr.acquisition.simulate import PROFILES, simulate_stack, simulated_thickness_mm, view_axis

    if (view is None) == (axis is None):
        raise InputError("give exactly one of --view or --axis")
    profile = profile_name(profile, allowed=PROFILES)
    check_output_file(output, overwrite, NIFTI_SUFFIXES)
    refuse_inputs([output, sidecar_path(output)], [hr, sidecar_path(hr)])
    refuse_existing([sidecar_path(output)], overwrite)
    data, img = load_image(hr, "volume")
    ax = axis if axis is not None else view_axis(img.affine, view)
    if data.shape[ax] < factor:
        raise InputError(f"{hr}: axis {ax} has {data.shape[ax]} voxels, fewer than --factor {factor}")
    lr, lr_affine = simulate_stack(data, img.affine, ax, factor, profile)
    thickness = simulated_thickness_mm(img.affine, ax, factor, profile)
    save_nifti(lr, lr_affine, output, HeaderCodes.from_header(img.header))
    write_thickness_sidecar(output, thickness)
    return {"shape": list(lr.shape), "axis": ax, "thickness_mm": thickness}


def evaluate_files(pred: str, truth: str, mask: str | None) -> dict:
    """PSNR/SSIM inside the brain, the paper's whole-volume convention and MI of ``pred`` against
    ``truth`` (same grid; ``mask`` default: the truth's foreground), with the mask's voxel count."""
    from inrsr.evaluate.metrics import evaluate
    from inrsr.samples.foreground import estimate_foreground

    p, p_img = load_image(pred, "prediction")
    t, t_img = load_image(truth, "truth")
    if p.shape != t.shape or not np.allclose(p_img.affine, t_img.affine, atol=1e-3):
        raise InputError(f"{pred}: grid {p.shape} differs from the truth's grid {t.shape} (resample with --ref)")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(t))):
        raise InputError(f"{pred}: prediction or truth contains NaN or infinite values")
    m = load_mask(mask, t.shape, t_img.affine) if mask else estimate_foreground(t, dilate_vox=0)
    return {"mask_voxels": int(m.sum()), **evaluate(p, t, m)}


def cubic_file(input_path: str, output: str, ref: str | None, resolution: float | None, overwrite: bool) -> dict:
    """Cubic B-spline interpolation of one stack onto ``ref``'s grid or an isotropic grid."""
    from inrsr.baselines.interpolate import interpolate_to_grid
    from inrsr.io.grids import stack_output_grid

    check_output_file(output, overwrite, NIFTI_SUFFIXES)
    refuse_inputs([output], [input_path, ref])
    data, img = load_image(input_path, "stack")
    grid, ref_codes = stack_output_grid(data.shape, img.affine, ref, resolution)
    codes = ref_codes or HeaderCodes.from_header(img.header)
    volume = interpolate_to_grid(data, img.affine, grid, order=3)
    check_finite_volumes({"cubic": volume}, {"cubic": output})
    save_nifti(volume, grid.affine, output, codes)
    return {"shape": list(grid.shape)}


def smore_file(input_path: str, output: str, ref: str | None, resolution: float | None, thickness: float | None,
               overwrite: bool, progress: bool, **options) -> dict:
    """SMORE on one stack (``options``: fields of :class:`~inrsr.baselines.smore.config.SmoreConfig`
    but its thickness), written on ``ref``'s grid or an isotropic grid. Everything is checked
    before training. Returns SMORE's run information and the output grid's shape."""
    from pathlib import Path

    from inrsr.baselines.smore.config import SmoreConfig
    from inrsr.baselines.smore.geometry import check_volume
    from inrsr.baselines.smore.run import smore_volume
    from inrsr.device import resolve_device
    from inrsr.io.grids import stack_output_grid
    from inrsr.io.stack import load_stack

    check_output_file(output, overwrite, NIFTI_SUFFIXES)
    refuse_inputs([output], [input_path, ref])
    check_writable(Path(output).parent)
    stack = load_stack(input_path, "stack", thickness_mm=thickness)
    config = SmoreConfig(thickness_mm=stack.thickness_mm or 0.0, **options).validate()
    try:
        check_volume(stack.shape, stack.affine, config)
    except InputError as exc:
        raise InputError(f"{input_path}: {exc}") from None
    resolve_device(config.device)
    grid, ref_codes = stack_output_grid(stack.shape, stack.affine, ref, resolution)
    volume, info = smore_volume(stack.data, stack.affine, grid, config, progress=progress)
    check_finite_volumes({"smore": volume}, {"smore": output})
    save_nifti(volume, grid.affine, output, ref_codes or stack.codes)
    return {**info, "shape": list(grid.shape)}
