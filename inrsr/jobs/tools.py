"""The single-file jobs of the command line: simulate a thick stack, evaluate a prediction
against a truth, and the two baselines (cubic interpolation, SMORE) on one stack."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from inrsr.errors import InputError
from inrsr.geometry import Grid, voxel_sizes_mm
from inrsr.io.files import (
    check_output_file, check_writable, refuse_existing, refuse_inputs, sidecar_path, with_sidecars, write_sidecar,
)
from inrsr.io.nifti import NIFTI_SUFFIXES, HeaderCodes, check_finite_volumes, load_image, load_mask, save_nifti
from inrsr.io.provenance import source_hashes, volume_sidecar

__all__ = ["simulate_file", "evaluate_files", "cubic_file", "smore_file"]


def _claim_output(output: str, inputs: list[str | None], overwrite: bool) -> None:
    """``output`` and its JSON sidecar as the outputs of a single-file job: a NIfTI name in a
    writable folder, refused when either exists (unless ``overwrite``) or is one of ``inputs``
    or their sidecars."""
    check_output_file(output, overwrite, NIFTI_SUFFIXES)
    refuse_inputs(with_sidecars([output]), with_sidecars(inputs))
    refuse_existing([sidecar_path(output)], overwrite)


def simulate_file(
    hr: str, output: str, view: str | None, axis: int | None, factor: int, profile: str, overwrite: bool,
    command_line: list[str] | None = None, thickness_mm: float | None = None,
) -> dict:
    """Write a thick-slice stack simulated from the isotropic volume ``hr`` (see
    :func:`inrsr.acquisition.simulate.simulate_stack`), with a BIDS sidecar giving its
    ``SliceThickness`` and its provenance (:mod:`inrsr.io.provenance`, with ``command_line``).
    Thick along ``view`` or array ``axis`` (exactly one of them); ``thickness_mm``: the slice
    thickness of a ``box`` or ``gaussian`` profile (default ``factor`` voxels of ``hr``)."""
    from inrsr.acquisition.profiles import profile_name
    from inrsr.acquisition.simulate import PROFILES, simulate_stack, simulated_thickness_mm, view_axis

    if (view is None) == (axis is None):
        raise InputError("give exactly one of --view or --axis")
    profile = profile_name(profile, allowed=PROFILES)
    if thickness_mm is not None and profile == "point":
        raise InputError("--thickness is for the box and gaussian profiles; point samples have none")
    _claim_output(output, [hr], overwrite)
    data, img = load_image(hr, "volume")
    ax = axis if axis is not None else view_axis(img.affine, view)
    if data.shape[ax] < factor:
        raise InputError(f"{hr}: axis {ax} has {data.shape[ax]} voxels, fewer than --factor {factor}")
    width_vox = None if thickness_mm is None else thickness_mm / float(voxel_sizes_mm(img.affine)[ax])
    if width_vox is not None and width_vox > data.shape[ax]:
        raise InputError(f"{hr}: --thickness {thickness_mm:g} mm exceeds axis {ax}'s extent")
    lr, lr_affine = simulate_stack(data, img.affine, ax, factor, profile, width_vox)
    thickness = simulated_thickness_mm(img.affine, ax, factor, profile, width_vox)
    check_finite_volumes({"stack": lr}, {"stack": output})
    save_nifti(lr, lr_affine, output, HeaderCodes.from_header(img.header))
    description = (f"thick-slice stack simulated from {os.path.abspath(hr)}: thick along its array axis {ax}, "
                   f"{profile} slice profile {thickness:g} mm thick, slices {factor} voxels apart, in its intensity "
                   "units")
    write_sidecar(output, volume_sidecar(description, None, Grid(lr.shape, lr_affine), source_hashes([hr]),
                                         command_line, extra={"SliceThickness": float(thickness)}))
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


def cubic_file(input_path: str, output: str, ref: str | None, resolution: float | None, overwrite: bool,
               command_line: list[str] | None = None) -> dict:
    """Cubic B-spline interpolation of one stack onto ``ref``'s grid or an isotropic grid, with a
    JSON sidecar (:mod:`inrsr.io.provenance`, with ``command_line``)."""
    from inrsr.baselines.interpolate import interpolate_to_grid
    from inrsr.io.grids import stack_output_grid

    _claim_output(output, [input_path, ref], overwrite)
    data, img = load_image(input_path, "stack")
    sources = source_hashes([input_path, ref])
    grid, ref_codes = stack_output_grid(data.shape, img.affine, ref, resolution)
    codes = ref_codes or HeaderCodes.from_header(img.header)
    volume = interpolate_to_grid(data, img.affine, grid, order=3)
    check_finite_volumes({"cubic": volume}, {"cubic": output})
    save_nifti(volume, grid.affine, output, codes)
    description = (f"cubic B-spline interpolation of {os.path.abspath(input_path)}, in its intensity units; beyond "
                   "its outermost voxels the edge value is repeated")
    write_sidecar(output, volume_sidecar(description, None, grid, sources, command_line, reference=ref))
    return {"shape": list(grid.shape)}


def smore_file(input_path: str, output: str, ref: str | None, resolution: float | None, thickness: float | None,
               overwrite: bool, progress: bool, command_line: list[str] | None = None, **options) -> dict:
    """SMORE on one stack (``options``: fields of :class:`~inrsr.baselines.smore.config.SmoreConfig`
    but its thickness), written on ``ref``'s grid or an isotropic grid with a JSON sidecar
    (:mod:`inrsr.io.provenance`, with ``command_line`` and every SMORE option). Everything is
    checked before training. Returns SMORE's run information and the output grid's shape."""
    from pathlib import Path

    from inrsr.baselines.smore.config import SmoreConfig
    from inrsr.baselines.smore.geometry import check_volume
    from inrsr.baselines.smore.run import smore_volume
    from inrsr.device import resolve_device
    from inrsr.io.grids import stack_output_grid
    from inrsr.io.stack import load_stack

    _claim_output(output, [input_path, ref], overwrite)
    check_writable(Path(output).parent)
    stack = load_stack(input_path, "stack", thickness_mm=thickness)
    sources = source_hashes([input_path, ref])
    config = SmoreConfig(thickness_mm=stack.thickness_mm or 0.0, **options).validate()
    try:
        check_volume(stack.shape, stack.affine, config)
    except InputError as exc:
        raise InputError(f"{input_path}: {exc}") from None
    resolve_device(config.device)
    grid, ref_codes = stack_output_grid(stack.shape, stack.affine, ref, resolution)
    from inrsr.fit.thickness import single_stack_estimate_mm, wants_estimate, warn_if_disagrees

    if wants_estimate(config.thickness_estimate, stack):
        width = single_stack_estimate_mm(stack, config.profile, config.seed, config.threads, config.device, progress)
        warn_if_disagrees(stack, width, config.profile, used=True)
        stack = replace(stack, thickness_mm=width, thickness_estimated=True, estimated_thickness_mm=width,
                        thickness_estimator="fit")
        config = config.replace(thickness_mm=width).validate()
    volume, info = smore_volume(stack.data, stack.affine, grid, config, progress=progress)
    check_finite_volumes({"smore": volume}, {"smore": output})
    save_nifti(volume, grid.affine, output, ref_codes or stack.codes)
    description = (f"SMORE super-resolution of {os.path.abspath(input_path)} (slices {stack.slice_thickness_mm:g} mm "
                   f"thick, from {stack.thickness_source}), resampled by cubic interpolation, in its intensity units")
    write_sidecar(output, volume_sidecar(description, None, grid, sources, command_line, reference=ref,
                                         extra={"Options": config.to_dict()}))
    return {**info, "shape": list(grid.shape), "thickness_source": stack.thickness_source}
