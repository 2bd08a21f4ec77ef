"""What a fit writes into its output folder, and the writing of it: one volume per contrast and
one foreground mask per input stack, each with its JSON sidecar (see :mod:`inrsr.io.provenance`),
``model.pt``, ``config.json``, ``log.json``, ``log.csv``, ``mi.csv``, ``mi.png``, ``report.html``
(:mod:`inrsr.jobs.report`) and, with registration, ``transforms.json``."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inrsr import __version__
from inrsr.config import PRESETS, FitConfig
from inrsr.errors import InputError
from inrsr.fit.progress import say
from inrsr.geometry import Grid
from inrsr.io.files import sidecar_path, write_csv, write_json, write_sidecar
from inrsr.io.nifti import HeaderCodes, save_nifti
from inrsr.io.provenance import command_text, options_changed, utc_now, volume_sidecar
from inrsr.io.stack import Stack
from inrsr.resources import peak_rss_gb

if TYPE_CHECKING:  # the file names are needed before PyTorch is imported (inrsr.jobs.fit_stacks)
    from inrsr.jobs.reconstruct import Reconstruction

__all__ = ["FIT_FILES", "STATE_FILE", "TRANSFORMS_FILE", "FitRun", "volume_paths", "mask_name", "fit_output_paths",
           "stack_records", "volume_description", "write_mask", "write_fit_outputs"]

# Files every fit writes beside its volumes and masks.
FIT_FILES = ("model.pt", "config.json", "log.json", "log.csv", "mi.csv", "mi.png", "report.html")
TRANSFORMS_FILE = "transforms.json"  # with registration
# The training state of a running fit, in the output folder (removed when the fit completes).
STATE_FILE = "fit_state.pt"


@dataclass
class FitRun:
    """How a fit was asked for and what surrounds it, for the sidecars and ``log.json``.

    command_line : the command as typed (``['inrsr', 'fit', …]``); ``None`` when called from Python.
    preset : the preset the configuration started from; ``None`` when unknown.
    date : when the run started (ISO 8601, UTC).
    warnings : the one-line message of every input warning shown so far, in order.
    verbose : print a line on stderr as each phase ends (:meth:`say`).
    device, threads : the torch device the fit runs on and its CPU threads; ``sources``: absolute
        path → SHA-256 of every input file (stacks, masks, reference image); filled in before the fit.
    """

    command_line: list[str] | None = None
    preset: str | None = None
    date: str = field(default_factory=utc_now)
    warnings: list[str] = field(default_factory=list)
    verbose: bool = False
    device: str = "cpu"
    threads: int = 0
    sources: dict[str, str] = field(default_factory=dict)

    def say(self, text: str) -> None:
        """``inrsr: TEXT`` on stderr when :attr:`verbose`."""
        if self.verbose:
            say(text)

    def options(self, config: FitConfig) -> dict[str, Any]:
        """The options of ``config`` that differ from :attr:`preset`'s (none when it is unknown)."""
        return options_changed(config, PRESETS[self.preset]) if self.preset in PRESETS else {}

    def log_record(self) -> dict:
        """What ``log.json`` says of the run: inrsr's version, the command line (one string, or
        ``None``), the start date, the preset, the device, the CPU threads, the peak memory
        (GiB) so far and the warnings shown."""
        return {"version": __version__, "command_line": command_text(self.command_line), "date": self.date,
                "preset": self.preset, "device": self.device, "threads": self.threads,
                "peak_rss_gb": round(peak_rss_gb(), 3), "warnings": list(self.warnings)}


def volume_paths(out_dir: Path, contrasts: list[str]) -> dict[str, Path]:
    """``CONTRAST.nii.gz`` in ``out_dir`` for each contrast."""
    return {c: out_dir / f"{c}.nii.gz" for c in contrasts}


def mask_name(k: int, contrast: str) -> str:
    """The file of the foreground mask of stack ``k`` (1-based, in the order given) of ``contrast``."""
    return f"mask-{k}_{contrast}.nii.gz"


def fit_output_paths(out_dir: Path, stack_contrasts: list[str], registering: bool) -> dict[str, Path]:
    """Every file a fit of stacks of ``stack_contrasts`` (one per stack, in order) writes: keyed
    by contrast for the volumes, by file name for the rest (masks, sidecars, model, logs).
    :class:`InputError` when a contrast's volume or sidecar would have the name of another output
    (a contrast called ``log`` would write ``log.json``)."""
    contrasts = list(dict.fromkeys(stack_contrasts))
    others = {name: out_dir / name for name in FIT_FILES}
    masks = [mask_name(k, c) for k, c in enumerate(stack_contrasts, start=1)]
    others.update({name: out_dir / name for m in masks for name in (m, sidecar_path(m).name)})
    if registering:
        others[TRANSFORMS_FILE] = out_dir / TRANSFORMS_FILE
    taken = set(others) | {TRANSFORMS_FILE}
    volumes = volume_paths(out_dir, contrasts)
    for c, path in volumes.items():
        for name in (path.name, sidecar_path(path).name):
            if name in taken:
                raise InputError(f"contrast name {c!r}: its output {name} would replace the fit's own {name}; "
                                 "choose another contrast name")
    sidecars = {sidecar_path(p).name: sidecar_path(p) for p in volumes.values()}
    return {**volumes, **sidecars, **others}


def stack_records(stacks: list[Stack], recon: Reconstruction, transforms: list[dict] | None,
                  hashes: dict[str, str] | None = None) -> list[dict]:
    """Per input stack, what the model file and the log keep of it (absolute path and its SHA-256
    from ``hashes`` when known, grid, thickness and where it came from, the thickness estimated
    from its voxels (``None`` when not estimated), whether its foreground
    mask was given or estimated, the training voxels it gave and the world map registration found)."""
    hashes = hashes or {}
    return [
        {"contrast": s.contrast, "path": os.path.abspath(s.path) if os.path.isfile(s.path) else s.path,
         "sha256": hashes.get(os.path.abspath(s.path)),
         "shape": list(s.shape), "affine": s.affine.tolist(), "thickness_mm": s.slice_thickness_mm,
         "thickness_source": s.thickness_source, "estimated_thickness_mm": s.estimated_thickness_mm,
         "thickness_estimator": s.thickness_estimator,
         "slice_axis": s.slice_axis,
         "mask_source": "given" if s.mask is not None else "estimated",
         "n_train_points": int((recon.train.stack_id == k).sum()),
         "registration_mm": transforms[k]["matrix_mm"] if transforms else np.eye(4).tolist()}
        for k, s in enumerate(stacks)
    ]


def volume_description(contrast: str, config: FitConfig, model_path: str | os.PathLike | None = None) -> str:
    """What the voxels of a rendered ``contrast`` volume mean (``model_path``: the model file it
    was rendered from by ``inrsr sample``)."""
    saved = f" (saved in {os.path.abspath(model_path)})" if model_path is not None else ""
    text = (f"{contrast} intensity predicted by the field fitted to all input stacks{saved}, in the units of the "
            f"input {contrast} stacks (their intensity scale restored)")
    if config.data_consistency:
        text += ", with each stack's residual added back where its voxels measured it (data consistency)"
    if config.render_foreground:
        text += (f"; voxels outside every stack's foreground hold the background level (the {contrast} stacks' "
                 "low intensity)")
    return text


def _mask_description(k: int, stack: Stack) -> str:
    """What the mask of stack ``k`` (1-based) is."""
    how = f"given with --mask ({os.path.abspath(stack.mask_path)})" if stack.mask_path else \
        "estimated from its intensities"
    return (f"foreground mask the fit used for stack {k} ({os.path.abspath(stack.path)}), on that stack's grid "
            f"(1: foreground, 0: background): {how}")


def write_mask(path: Path, k: int, stack: Stack, mask: np.ndarray, run: FitRun) -> None:
    """The foreground mask of stack ``k`` (1-based) as uint8 0/1 on the stack's own grid (the
    affine and header codes of its file, so that it overlays it), and its sidecar."""
    save_nifti(mask.astype(np.uint8), stack.affine, path, stack.codes, dtype=np.uint8)
    files = [f for f in (stack.path, stack.mask_path) if f]
    sources = {os.path.abspath(f): run.sources.get(os.path.abspath(f)) for f in files}
    write_sidecar(path, volume_sidecar(_mask_description(k, stack), stack.contrast, Grid(stack.shape, stack.affine),
                                       sources, run.command_line, date=run.date))


def write_fit_outputs(
    paths: dict[str, Path], volumes: dict[str, np.ndarray], grid: Grid, codes: HeaderCodes, config: FitConfig,
    recon: Reconstruction, stacks: list[Stack], summary: dict, transforms: list[dict] | None, run: FitRun,
    reference: str | None = None,
) -> None:
    """Write the volumes (each with its sidecar), the masks of the input ``stacks`` (as given,
    not moved by registration), the model, the report and the logs of a finished fit (each file
    atomically). The report's seconds are added to ``summary["seconds"]``."""
    from inrsr.evaluate.plots import plot_mi_curve
    from inrsr.field.checkpoint import save_checkpoint
    from inrsr.jobs.report import fit_evidence, write_report

    for c in recon.subject.contrasts:
        save_nifti(volumes[c], grid.affine, paths[c], codes)
        write_sidecar(paths[c], volume_sidecar(
            volume_description(c, config), c, grid, dict(run.sources), run.command_line, reference=reference,
            preset=run.preset, options=run.options(config), date=run.date))
    for k, (stack, (mask, _)) in enumerate(zip(stacks, recon.subject.foregrounds), start=1):
        write_mask(paths[mask_name(k, stack.contrast)], k, stack, mask, run)
    save_checkpoint(paths["model.pt"], recon.field, config, recon.subject, stacks[0].codes, summary["stacks"])
    write_json(paths["config.json"], config.to_dict())
    log = {**summary, "epochs": recon.fit.epochs, "mi_curve": recon.fit.mi_curve, "loss_curve": recon.fit.loss_curve}
    t0 = time.perf_counter()
    evidence = fit_evidence(paths["model.pt"].parent, grid, volumes, recon.field, recon.subject, recon.stacks,
                            [s.affine for s in stacks], config, log)
    write_report(paths["report.html"], evidence)
    summary["seconds"]["report"] = time.perf_counter() - t0
    log["support"], log["self_consistency"] = evidence.support, evidence.consistency
    write_json(paths["log.json"], log)
    write_csv(paths["log.csv"], recon.fit.epochs)
    write_csv(paths["mi.csv"], recon.fit.mi_curve)
    plot_mi_curve(recon.fit.mi_curve, paths["mi.png"], recon.fit.stopped_early)
    if transforms is not None:
        write_json(paths[TRANSFORMS_FILE], {"reference_stack": config.register_stack, "stacks": transforms})
