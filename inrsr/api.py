"""The Python API: one call fits a subject's stacks and returns isotropic images.

    import inrsr
    out = inrsr.fit_stacks({"t1": "t1_ax.nii.gz", "t2": ["t2_ax.nii.gz", t2_cor_image]}, preset="fast")
    out.images["t1"].to_filename("t1_iso.nii.gz")

Stacks are file paths or nibabel images held in memory; nothing is written unless
``output_dir`` is given, in which case everything ``inrsr fit`` writes is written there (the
command line calls this function that way). Errors are :class:`~inrsr.errors.InputError` (a
mistake in the input, one line naming it) or :class:`~inrsr.errors.FitError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import nibabel as nib
import numpy as np

from inrsr.config import PRESETS, FitConfig, preset as preset_config
from inrsr.errors import InputError, recorded_warnings
from inrsr.geometry import Grid
from inrsr.io.files import read_json
from inrsr.io.nifti import HeaderCodes, image_data, load_mask, nifti_image
from inrsr.io.stack import CONTRAST_NAME, Stack, StackSpec, check_stack_set, load_stack, stack_from_image

if TYPE_CHECKING:
    from inrsr.field.network import Field
    from inrsr.jobs.fit_stacks import Fitted

__all__ = ["fit_stacks", "FitOutput", "StackInput"]

StackInput = Union[nib.Nifti1Image, str, os.PathLike]
MaskInput = Union[nib.Nifti1Image, np.ndarray, str, os.PathLike, None]


@dataclass
class FitOutput:
    """What :func:`fit_stacks` returns.

    images : contrast → the isotropic volume (float32 NIfTI image in the input's intensity
        units, with the output grid's affine as qform and sform).
    model : the fitted field (``inrsr.field.network.Field``); ``model.pt`` holds it when
        ``output_dir`` was given.
    config : the options the fit used.
    log : what ``log.json`` holds (grid, stacks, timings, curves, warnings, …); without
        ``output_dir``, all but what the written files add (``outputs``, and the report's
        ``support`` and ``self_consistency``).
    output_dir : where the outputs were written, or ``None`` when nothing was written.
    """

    images: dict[str, nib.Nifti1Image]
    model: "Field"
    config: FitConfig
    log: dict
    output_dir: Path | None = None


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _entries(stacks: Any, masks: Any, thickness_mm: Any) -> list[tuple[str, Any, float | None, Any]]:
    """``(contrast, stack, thickness, mask)`` per stack, in the order given."""
    if isinstance(stacks, Sequence) and not isinstance(stacks, str) and stacks:
        entries = _pair_entries(stacks, masks, thickness_mm)
    elif not isinstance(stacks, Mapping) or not stacks:
        raise InputError("stacks: expected a non-empty dict of contrast name → image, path or list of them")
    else:
        entries = _dict_entries(stacks, masks, thickness_mm)
    for k, (contrast, given, _, _) in enumerate(entries, start=1):
        if not isinstance(contrast, str) or not CONTRAST_NAME.match(contrast):
            raise InputError(f"{_name(given, contrast, k)}: contrast name {contrast!r} must be letters, digits, '_' "
                             "or '-'")
    return entries


def _name(given: Any, contrast: Any, k: int) -> str:
    """How a stack is named in messages: its path, or its place among the stacks in memory."""
    return str(given) if _is_path(given) else f"{contrast} stack {k} (in memory)"


def _dict_entries(stacks: Mapping[str, Any], masks: Any, thickness_mm: Any) -> list[tuple[str, Any, float | None, Any]]:
    """Entries of stacks given as a dict of contrast → stack(s)."""
    if masks is not None and not isinstance(masks, Mapping):
        raise InputError("masks: with stacks given as a dict, give masks as a dict of contrast → mask(s)")
    if isinstance(thickness_mm, (list, tuple)):
        raise InputError("thickness_mm: with stacks given as a dict, give one number for all stacks or a dict of "
                         "contrast → number(s)")
    entries = []
    for contrast, given in stacks.items():
        items = _as_list(given)
        mask = masks.get(contrast) if masks else None
        per_mask = _as_list(mask) if mask is not None else [None] * len(items)
        thick = thickness_mm.get(contrast) if isinstance(thickness_mm, Mapping) else thickness_mm
        per_thick = _as_list(thick) if isinstance(thick, (list, tuple)) else [thick] * len(items)
        if len(per_mask) != len(items) or len(per_thick) != len(items):
            raise InputError(f"{contrast}: give one mask and one thickness per stack ({len(items)} stacks)")
        entries += [(contrast, s, t, m) for s, t, m in zip(items, per_thick, per_mask)]
    if masks and set(masks) - set(stacks):
        raise InputError(f"masks given for contrasts without stacks: {', '.join(sorted(set(masks) - set(stacks)))}")
    return entries


def _pair_entries(stacks: Sequence, masks: Any, thickness_mm: Any) -> list[tuple[str, Any, float | None, Any]]:
    """Entries of stacks given as ``(contrast, stack)`` pairs, with masks and thicknesses as
    sequences in the same order (a single thickness applies to every stack)."""
    n = len(stacks)
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in stacks):
        raise InputError("stacks: expected (contrast, stack) pairs")
    if isinstance(masks, Mapping) or isinstance(thickness_mm, Mapping):
        raise InputError("masks, thickness_mm: with stacks given as (contrast, stack) pairs, give lists in the same "
                         "order (or one thickness for all)")
    per_mask = list(masks) if masks is not None else [None] * n
    per_thick = list(thickness_mm) if isinstance(thickness_mm, (list, tuple)) else [thickness_mm] * n
    if len(per_mask) != n or len(per_thick) != n:
        raise InputError(f"give one mask and one thickness per stack ({n} stacks)")
    return [(c, s, t, m) for (c, s), t, m in zip(stacks, per_thick, per_mask)]


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _with_mask(stack: Stack, mask: MaskInput, name: str) -> Stack:
    """``stack`` with its foreground ``mask`` (a file, an image or an array on the stack's grid;
    ``None``: estimated later), checked like ``--mask``: on the stack's grid, with foreground."""
    if mask is None:
        return stack
    if _is_path(mask):
        stack.mask = load_mask(mask, stack.shape, stack.affine)
        stack.mask_path = str(mask)
        return stack
    if isinstance(mask, np.ndarray):
        data, affine = mask, stack.affine
    else:
        data, affine = image_data(mask, f"{name} (mask)", "mask"), np.asarray(mask.affine, dtype=np.float64)
    if data.shape != stack.shape or not np.allclose(affine, stack.affine, atol=1e-3):
        raise InputError(f"{name}: its mask is not on the stack's grid (shape {data.shape}, stack {stack.shape})")
    if not np.any(data):
        raise InputError(f"{name}: its mask holds no foreground voxel")
    stack.mask = np.asarray(data) != 0
    return stack


def _config(preset: str, config: FitConfig | None, options: dict[str, Any]) -> FitConfig:
    """``config`` (or the preset ``preset``) with ``options`` replacing its fields, validated."""
    known = {f.name for f in fields(FitConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown option{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if config is None:
        return preset_config(preset, **options)
    return config.replace(**{k: v for k, v in options.items() if v is not None}).validate()


def _reference(ref: StackInput | None, max_memory_gb: float | None) -> tuple[tuple[Grid, HeaderCodes] | None, str | None]:
    """The grid and header codes of ``ref`` (a path or an image), and its name."""
    from inrsr.io.grids import reference_grid

    if ref is None:
        return None, None
    if _is_path(ref):
        return reference_grid(str(ref), max_memory_gb), str(ref)
    data = image_data(ref, "ref", "reference")
    return (Grid(data.shape, np.asarray(ref.affine, dtype=np.float64)), HeaderCodes.from_header(ref.header)), "ref"


def fit_stacks(
    stacks: Mapping[str, StackInput | Sequence[StackInput]] | Sequence[tuple[str, StackInput]],
    *,
    preset: str = "default",
    config: FitConfig | None = None,
    masks: Mapping[str, MaskInput | Sequence[MaskInput]] | None = None,
    thickness_mm: float | Mapping[str, float | Sequence[float | None] | None] | None = None,
    ref: StackInput | None = None,
    resolution_mm: float | None = None,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
    verbose: bool = False,
    max_memory_gb: float | None = None,
    command_line: list[str] | None = None,
    **options: Any,
) -> FitOutput:
    """Fit one field to a subject's stacks and render one isotropic volume per contrast.

    Parameters
    ----------
    stacks : contrast name → a stack or a list of stacks of that contrast (each a NIfTI file
        path or a nibabel image). Contrasts get one head each, in the order given. Or a list of
        ``(contrast, stack)`` pairs, when the stacks' order matters (``register_stack`` counts
        in it); ``masks`` and ``thickness_mm`` are then lists in the same order.
    preset : ``default``, ``fast`` or ``paper`` (see the README's *Presets*); ``config``, a
        :class:`~inrsr.config.FitConfig`, replaces its values (the preset is still named in the
        sidecars, with the options that differ from it); ``options`` (any field of FitConfig,
        e.g. ``max_steps=300``, ``register=True``) override either.
    masks : contrast → a foreground mask (path, image or boolean array on the stack's grid) or a
        list of them, one per stack; default: estimated from each stack.
    thickness_mm : slice thickness in mm, for every stack, or per contrast (a number or a list
        with one per stack; ``None`` entries: a BIDS sidecar's ``SliceThickness`` beside a file,
        else estimated from the data as ``thickness_estimate`` says, see
        :mod:`inrsr.fit.thickness`).
    ref : render exactly on this image's grid (path or image); otherwise on an isotropic grid of
        ``resolution_mm`` (default: the finest input spacing) over the stacks' union.
    output_dir : when given, every output of ``inrsr fit`` is written there (stacks, masks and
        ``ref`` must then be file paths, which the sidecars name with their SHA-256);
        ``overwrite`` and ``resume`` act as the command line's options. Otherwise nothing is
        written to disk.
    progress : a progress bar (or progress lines when stderr is not a terminal) on stderr;
        ``verbose``: also a line as each phase ends, and progress lines every 5 s.
    max_memory_gb : the memory the output grid may use (default: what is available).
    command_line : the command that asked for this fit, recorded in the sidecars and the log.

    Returns
    -------
    FitOutput : the images, the fitted field, the options used and the log.
    """
    cfg = _config(preset, config, options)
    preset_name = preset if preset in PRESETS else None
    entries = _entries(stacks, masks, thickness_mm)
    if output_dir is not None:
        return _fit_to_folder(entries, cfg, ref, resolution_mm, output_dir, overwrite, resume, progress, verbose,
                              max_memory_gb, command_line, preset_name)
    from inrsr.jobs.fit_stacks import fit_and_render, fit_summary, memory_fit_request
    from inrsr.jobs.outputs import FitRun

    with recorded_warnings() as seen:
        loaded = []
        for k, (contrast, given, thick, mask) in enumerate(entries, start=1):
            name = _name(given, contrast, k)
            s = load_stack(given, contrast, thick) if _is_path(given) else stack_from_image(given, contrast, name, thick)
            loaded.append(_with_mask(s, mask, name))
        check_stack_set(loaded)
        ref_grid, ref_name = _reference(ref, max_memory_gb)
        files = [str(g) for _, g, _, _ in entries if _is_path(g)] + [str(m) for *_, m in entries if _is_path(m)]
        request = memory_fit_request(loaded, cfg, ref_grid, ref_name, resolution_mm, max_memory_gb,
                                     files + ([str(ref)] if _is_path(ref) else []))
        run = FitRun(command_line, preset_name, warnings=seen, verbose=verbose)
        fitted = fit_and_render(request, progress, run)
        log = {**fit_summary(request, fitted, run), "epochs": fitted.recon.fit.epochs,
               "mi_curve": fitted.recon.fit.mi_curve, "loss_curve": fitted.recon.fit.loss_curve}
    return FitOutput(_images(fitted), fitted.recon.field, cfg, log)


def _images(fitted: "Fitted") -> dict[str, nib.Nifti1Image]:
    return {c: nifti_image(v, fitted.grid.affine, fitted.codes) for c, v in fitted.volumes.items()}


def _fit_to_folder(entries: list, cfg: FitConfig, ref: StackInput | None, resolution_mm: float | None,
                   output_dir: str | os.PathLike, overwrite: bool, resume: bool, progress: bool, verbose: bool,
                   max_memory_gb: float | None, command_line: list[str] | None, preset_name: str | None) -> FitOutput:
    """:func:`fit_stacks` with an output folder: the ``inrsr fit`` job, which reads its inputs from files."""
    from inrsr.jobs.fit_stacks import fit_and_write

    if not all(_is_path(g) and (m is None or _is_path(m)) for _, g, _, m in entries) or not (ref is None or _is_path(ref)):
        raise InputError("output_dir: the stacks, masks and ref must be file paths to be written with their "
                         "sources (save the images first, or leave output_dir out to keep the result in memory)")
    specs = [StackSpec(c, str(g), t, str(m) if m is not None else None) for c, g, t, m in entries]
    _, fitted = fit_and_write(specs, cfg, output_dir, str(ref) if ref is not None else None, resolution_mm,
                                    overwrite, progress, resume, max_memory_gb, command_line, preset_name, verbose)
    log = read_json(Path(output_dir) / "log.json")
    return FitOutput(_images(fitted), fitted.recon.field, cfg, log, Path(output_dir))
