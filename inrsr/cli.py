"""Command-line interface: parses arguments, builds a config, calls a job (:mod:`inrsr.jobs`). Nothing else."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import warnings
from functools import wraps
from pathlib import Path
from typing import Any, Callable

import click

from inrsr import __version__
from inrsr.baselines.smore.config import SmoreConfig
from inrsr.config import PRESETS, FitConfig, ToolConfig, fit_config, option_name, preset
from inrsr.errors import InputError, InputWarning, InrsrError, Interrupted, one_line

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _PositiveNumber(click.ParamType):
    """A finite number above 0 (mm, GB): checked while parsing, before any work."""

    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"must be a positive finite number, got {value}", param, ctx)
        return number


POSITIVE = _PositiveNumber()


class _Commands(click.Group):
    """The command group, with click's own usage errors (unknown option, bad value) reported as
    one ``inrsr: error:`` line like every other error, instead of a usage block."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `inrsr` alone: the help text
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"inrsr: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("inrsr: error: interrupted; no output was completed", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fail_cleanly(func: Callable) -> Callable:
    """Turn every way a run can end badly into one ``inrsr: error:`` line on stderr and a
    non-zero exit status: 2 for input and fit errors, 130 for an interruption (Ctrl-C or
    SIGTERM, which is made to interrupt like Ctrl-C so that partial files are removed), 1 for a
    failure of the system (a full disk, memory). Warnings about the input become one
    ``inrsr: warning:`` line each. Only bugs keep their traceback."""

    def show(message, category, *_args: Any, **_kwargs: Any) -> None:
        label = "warning" if issubclass(category, InputWarning) else category.__name__
        click.echo(f"inrsr: {label}: {one_line(message)}", err=True)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default", InputWarning)
                warnings.showwarning = show
                return func(*args, **kwargs)
        except Interrupted as exc:
            click.echo(f"inrsr: error: {exc}", err=True)
            sys.exit(130)
        except InrsrError as exc:
            click.echo(f"inrsr: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("inrsr: error: interrupted; no output was completed", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("inrsr: error: out of memory (try a coarser --resolution or a smaller --batch-size)", err=True)
            sys.exit(1)
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"inrsr: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def _dataclass_options(cls: type[ToolConfig], keep_defaults: bool = False, skip: tuple[str, ...] = ()) -> Callable:
    """One option per field of the config dataclass ``cls`` (named by :func:`option_name`), with
    its ``help`` and ``choices`` metadata. ``keep_defaults``: the field's default is the option's
    (shown in ``--help``); otherwise an unset option is ``None`` and keeps the preset's value.
    Fields in ``skip`` get no option."""

    def decorate(func: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip:
                continue
            name = option_name(cls, f.name)
            extra: dict[str, Any] = {"default": f.default, "show_default": True} if keep_defaults else {"default": None}
            help_text = f.metadata.get("help", "")
            if f.type in ("bool", bool):
                decl = f"{name}/--no-{name[2:]}"
                func = click.option(decl, f.name, help=help_text, **extra)(func)
                continue
            kind: Any = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            if f.metadata.get("choices"):
                kind = click.Choice(f.metadata["choices"])
            func = click.option(name, f.name, type=kind, help=help_text, **extra)(func)
        return func

    return decorate


def _command_line() -> list[str]:
    """The command as the user typed it, for the outputs' provenance (``inrsr`` and its arguments)."""
    return ["inrsr", *sys.argv[1:]]


def _split_assignment(value: str, option: str) -> tuple[str, str]:
    if "=" not in value:
        raise InputError(f"{option} {value!r}: expected CONTRAST=PATH")
    name, path = value.split("=", 1)
    return name.strip(), path.strip()


@click.group(cls=_Commands, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="inrsr")
def main() -> None:
    """inrsr: isotropic high-resolution MRI from a subject's own thick-slice stacks.

    Fits an implicit neural representation (world position in mm → one intensity per contrast)
    to all input stacks at once and samples it on any grid.
    """


@main.command(context_settings=CONTEXT)
@click.option("--t1", multiple=True, type=click.Path(), help="T1-weighted stack (contrast name 't1'); repeatable.")
@click.option("--t2", multiple=True, type=click.Path(), help="T2-weighted stack (contrast name 't2'); repeatable.")
@click.option("--flair", multiple=True, type=click.Path(), help="FLAIR stack (contrast name 'flair'); repeatable.")
@click.option("--stack", "extra", multiple=True, metavar="CONTRAST=PATH", help="Any named stack; repeatable.")
@click.option("--mask", "masks", multiple=True, type=click.Path(),
              help="Foreground mask per stack, in stack order (--t1, --t2, --flair, then each --stack); "
                   "default: estimated from each stack.")
@click.option("--thickness", "thicknesses", multiple=True, type=POSITIVE, metavar="MM",
              help="Slice thickness per stack in stack order, or one value for all; default: a BIDS "
                   "sidecar's SliceThickness, else estimated from the data (see --thickness-estimate).")
@click.option("--ref", type=click.Path(), help="Render exactly on this image's grid.")
@click.option("--resolution", type=POSITIVE, metavar="MM",
              help="Isotropic output spacing over the union of the stacks' fields of view, aligned with "
                   "the first stack (default: the finest input spacing).")
@click.option("-o", "--output", required=True, type=click.Path(), help="Output folder.")
@click.option("--preset", "preset_name", type=click.Choice(list(PRESETS)), default="default", show_default=True,
              help="Hyper-parameter preset; any option below overrides it.")
@click.option("--config", "config_file", type=click.Path(), metavar="FILE",
              help="config.json of an earlier fit (or a JSON object with some of its options): its values replace "
                   "the preset's; options given here override it.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted fit from OUTPUT/fit_state.pt (same stacks and options).")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@click.option("--verbose", is_flag=True,
              help="A line on stderr as each phase ends (stacks, training set, alignment, fit, render, write), and "
                   "progress every 5 s instead of 30 s when stderr is not a terminal.")
@click.option("--max-memory", type=POSITIVE, metavar="GB",
              help="Memory the run may use; refused at once when the output grid needs more (default: the "
                   "memory available when it starts).")
@_dataclass_options(FitConfig)
@_fail_cleanly
def fit(t1, t2, flair, extra, masks, thicknesses, ref, resolution, output, preset_name, config_file, overwrite,
        resume, quiet, verbose, max_memory, **cfg):
    """Fit one field to all stacks and write one isotropic volume per contrast.

    Several stacks may share a contrast (e.g. --stack t2=ax.nii.gz --stack t2=cor.nii.gz); each
    contrast gets one head and one output. Writes CONTRAST.nii.gz per contrast, mask-K_CONTRAST.nii.gz
    per input stack K (1, 2, … in stack order: the foreground the fit used, on that stack's grid),
    a JSON sidecar beside each of these volumes (what its voxels mean, the inputs with their
    SHA-256, the command, the preset and the options changed from it, the grid), model.pt (for
    `inrsr sample` and `inrsr check`), config.json (loadable with --config), log.json, log.csv (per
    epoch), mi.csv and mi.png (MI between predicted contrasts), report.html (a self-contained page
    to check the result by eye: inputs, outputs, cubic, masks, support, registration, profiles,
    self-consistency, curves; rebuild it with `inrsr report`), and with --register
    transforms.json, into OUTPUT. While fitting, OUTPUT/fit_state.pt holds the training state
    (saved every --checkpoint-every-s seconds, on Ctrl-C and when the fit ends; removed once every
    output is written) for --resume. OUTPUT is locked while the run writes into it. Progress: a
    bar on a terminal, otherwise a line every 30 s (--verbose: 5 s); none with --quiet.
    """
    from inrsr.api import fit_stacks

    if quiet and verbose:
        raise InputError("--quiet and --verbose exclude each other; give one of them")
    named = [(c, p) for c, paths in (("t1", t1), ("t2", t2), ("flair", flair)) for p in paths]
    named += [_split_assignment(v, "--stack") for v in extra]
    if masks and len(masks) != len(named):
        raise InputError(f"--mask given {len(masks)} times for {len(named)} stacks (one per stack, in order)")
    if thicknesses and len(thicknesses) not in (1, len(named)):
        raise InputError(f"--thickness given {len(thicknesses)} times for {len(named)} stacks")
    if not named:
        raise InputError("no input stacks: give --t1/--t2/--flair PATH or --stack CONTRAST=PATH")
    config = fit_config(preset_name, config_file, **cfg)
    summary = fit_stacks(named, preset=preset_name, config=config, masks=list(masks) or None,
                      thickness_mm=list(thicknesses) if len(thicknesses) > 1 else (thicknesses or [None])[0], ref=ref,
                      resolution_mm=resolution, output_dir=output, overwrite=overwrite, resume=resume,
                      progress=not quiet, verbose=verbose, max_memory_gb=max_memory, command_line=_command_line()).log
    if not quiet:
        s = summary["seconds"]
        stop = {"mi": "MI early stop", "time": "time limit"}.get(summary["stopped_by"], "step/epoch limit")
        click.echo(
            f"fitted {summary['n_train_points']} voxels in {s['fit']:.1f} s ({summary['steps']} steps, {stop}); "
            f"rendered {'×'.join(map(str, summary['grid']['shape']))} in {s['render']:.1f} s → {output}",
            err=True,
        )
        estimated = [f"{Path(r['path']).name} {r['estimated_thickness_mm']:.2f} mm ({r.get('thickness_estimator')})"
                     for r in summary["stacks"]
                     if r.get("estimated_thickness_mm") is not None]
        if estimated:  # no time when a resumed fit took the interrupted one's estimates
            when = f" in {s['thickness_estimate']:.1f} s" if s["thickness_estimate"] > 0 else " by the interrupted fit"
            click.echo(f"slice thickness estimated{when}: {', '.join(estimated)}", err=True)


@main.command(context_settings=CONTEXT)
@click.option("--model", "model_path", required=True, type=click.Path(), help="model.pt written by `inrsr fit`.")
@click.option("--ref", type=click.Path(), help="Render exactly on this image's grid.")
@click.option("--resolution", type=POSITIVE, metavar="MM", help="Isotropic spacing over the fit's union box.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Output folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="CPU threads (0: all).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--max-memory", type=POSITIVE, metavar="GB",
              help="Memory the run may use (default: the memory available when it starts).")
@_fail_cleanly
def sample(model_path, ref, resolution, output, device, threads, overwrite, max_memory):
    """Re-sample a fitted model on a new grid without refitting: CONTRAST.nii.gz per contrast, each
    with a JSON sidecar naming the model and the stacks it was fitted to."""
    from inrsr.jobs.sample import sample_model

    summary = sample_model(model_path, output, ref=ref, resolution_mm=resolution, overwrite=overwrite,
                           device=device, threads=threads, max_memory_gb=max_memory, command_line=_command_line())
    click.echo(f"rendered {'×'.join(map(str, summary['grid']['shape']))} in {summary['seconds']:.1f} s → {output}",
               err=True)


@main.command(context_settings=CONTEXT)
@click.option("--model", "model_path", required=True, type=click.Path(), help="model.pt written by `inrsr fit`.")
@click.option("--holdout", type=int, default=0, show_default=True, metavar="EVERY",
              help="Also predict each stack from a refit that has not seen it: a stack whose contrast another "
                   "stack has is left out whole, otherwise every EVERY-th slice (scored beside cubic "
                   "interpolation of the same slices). 0: self-consistency only.")
@click.option("-o", "--output", type=click.Path(), help="Write the report as JSON to this file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_fail_cleanly
def check(model_path, holdout, output, overwrite, quiet):
    """Quality without ground truth: re-simulate every input stack from the fitted field.

    Each stack is predicted through its own forward model (slice profile, registered position)
    and compared with its voxels inside its foreground: PSNR (dB, over the stack's 1–99.5 %
    range), normalised RMSE and correlation. The input files named in the model must still exist.
    """
    from inrsr.io.files import check_output_file, refuse_inputs, write_json
    from inrsr.jobs.check import check_model

    if output is not None:
        check_output_file(output, overwrite)
        refuse_inputs([output], [model_path])
    report = check_model(model_path, holdout, progress=not quiet)
    click.echo(f"{'stack':<40} {'test':<26} {'PSNR dB':>8} {'nRMSE':>7} {'corr':>6}")
    for row in report["stacks"]:
        name = Path(row["path"]).name
        lines = [("self-consistency", row["self"])]
        if "left_out" in row:
            lo = row["left_out"]
            lines.append((f"left out ({'stack' if lo['mode'] == 'stack' else 'slices'}): INR", lo["inr"]))
            if "cubic" in lo:
                lines.append(("left out (slices): cubic", lo["cubic"]))
        for label, sc in lines:
            click.echo(f"{name:<40} {label:<26} {sc['psnr']:>8.2f} {sc['nrmse']:>7.4f} {sc['corr']:>6.3f}")
    for row in report["stacks"]:
        est = row.get("estimated_thickness_mm")
        click.echo(f"{Path(row['path']).name}: slices {row['thickness_mm']:.3g} mm thick (from "
                   f"{row.get('thickness_source') or 'unknown'})"
                   + ("" if est is None else f"; estimated {est:.2f} mm ({row.get('thickness_estimator') or 'fit'})"))
    if output is not None:
        write_json(output, report)


@main.command(context_settings=CONTEXT)
@click.option("--model", "model_path", required=True, type=click.Path(), help="model.pt written by `inrsr fit`.")
@click.option("-o", "--output", type=click.Path(), help="Report file (default: report.html beside the model).")
@click.option("--point", type=(float, float, float), metavar="X Y Z",
              help="World point (mm, scanner RAS) the three planes pass through (default: the centre of the "
                   "stacks' foregrounds).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
@_fail_cleanly
def report(model_path, output, point, overwrite):
    """Rebuild the HTML report of a fit from its output folder (the volumes, model.pt and log.json
    that `inrsr fit` wrote) and its input stacks, which must still exist.

    One self-contained page: the inputs as acquired beside cubic interpolation and the outputs in
    three planes, zoomed detail, foreground masks, the support of the field (distance to the
    nearest measured voxel), registration, slice profiles, self-consistency, training curves and
    the run's resources, with the fit's warnings at the top.
    """
    from inrsr.jobs.report import report_model

    if point is not None and not all(math.isfinite(v) for v in point):
        raise InputError(f"--point {' '.join(map(str, point))}: coordinates must be finite numbers (mm)")
    path = report_model(model_path, output, point, overwrite)
    click.echo(f"report written to {path}", err=True)


@main.command(context_settings=CONTEXT)
@click.argument("hr", type=click.Path())
@click.option("--view", type=click.Choice(["axial", "coronal", "sagittal"]),
              help="Slices thick along S–I (axial), A–P (coronal) or L–R (sagittal).")
@click.option("--axis", type=click.IntRange(0, 2), help="Thick array axis (instead of --view).")
@click.option("--factor", type=click.IntRange(1, 64), default=4, show_default=True, help="Slice spacing factor.")
@click.option("--profile", type=click.Choice(["point", "box", "gaussian", "slab"]), default="point", show_default=True,
              help="point: cubic-spline values at the thick voxels' centres (the paper's protocol); box: mean of "
                   "the slices across the slice thickness (a slab; 'slab' is its former name); gaussian: blurred "
                   "by a Gaussian of FWHM the slice thickness, then sampled as point.")
@click.option("--thickness", type=POSITIVE, metavar="MM",
              help="Slice thickness of box and gaussian profiles (default: FACTOR voxels); a box spans a whole "
                   "number of voxels of FACTOR's parity, thinner (gaps) or thicker (overlap) than the spacing.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Output .nii/.nii.gz.")
@click.option("--overwrite", is_flag=True)
@_fail_cleanly
def simulate(hr, view, axis, factor, profile, thickness, output, overwrite):
    """Make a thick-slice stack from an isotropic volume HR, with a BIDS sidecar (.json beside it)
    giving its SliceThickness (one HR voxel for point samples, else the slice thickness) and where
    it came from."""
    from inrsr.jobs.tools import simulate_file

    info = simulate_file(hr, output, view, axis, factor, profile, overwrite, command_line=_command_line(),
                         thickness_mm=thickness)
    click.echo(f"{output}: {'×'.join(map(str, info['shape']))} voxels, thick axis {info['axis']}, slices "
               f"{info['thickness_mm']:g} mm thick", err=True)


class _BidsArguments(argparse.ArgumentParser):
    """The BIDS-Apps command line (``--participant-label 01 02 …`` takes several values, which
    click options cannot), with its errors as one ``inrsr: error:`` line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message)


def _bids_parser() -> argparse.ArgumentParser:
    ap = _BidsArguments(prog="inrsr bids", description=(
        "A BIDS App: fit every subject (and session) of a BIDS dataset, one job per subject on a Dask cluster, "
        "into a BIDS derivatives dataset (participant level), then summarise them (group level)."))
    ap.add_argument("bids_dir", help="the BIDS dataset (raw data, read only)")
    ap.add_argument("output_dir", help="the derivatives dataset to write (created when missing)")
    ap.add_argument("analysis_level", choices=["participant", "group"])
    ap.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                    help="subjects to fit, with or without 'sub-' (default: all)")
    ap.add_argument("--session-label", "--session_label", nargs="+", metavar="LABEL",
                    help="sessions to fit, with or without 'ses-' (default: all)")
    ap.add_argument("--bids-filter-file", metavar="FILE",
                    help="JSON object: head (contrast) name → pybids query choosing its runs (default: the thick 2D "
                         "anatomical runs, one head per suffix)")
    ap.add_argument("--preset", choices=list(PRESETS), default="default", help="fit preset (default: %(default)s)")
    ap.add_argument("--config", metavar="FILE", help="config.json of an earlier fit: its options replace the preset's")
    ap.add_argument("--fit-option", nargs="+", default=[], metavar="NAME=VALUE",
                    help="any fit option of the configuration (those of inrsr fit --help below --max-memory, "
                         "with _ for -), e.g. max_steps=300 register=true; they override --config. threads is "
                         "set by --threads-per-worker")
    ap.add_argument("--resolution", type=float, metavar="MM", help="isotropic output spacing (default: the finest "
                    "input spacing of each subject)")
    ap.add_argument("--n-workers", type=int, metavar="N", help="local Dask worker processes, one subject each at a "
                    "time (default: cores / --threads-per-worker; 0: no Dask, one subject after the other here)")
    ap.add_argument("--threads-per-worker", type=int, metavar="T",
                    help="CPU threads of each subject's fit (default: 1 on a cluster; all cores with --n-workers 0)")
    ap.add_argument("--scheduler", metavar="ADDRESS",
                    help="submit to this running Dask scheduler (tcp://host:8786) instead of a local cluster")
    ap.add_argument("--max-memory", type=float, metavar="GB", help="memory each fit may use (default: available)")
    ap.add_argument("--overwrite", action="store_true", help="fit again subjects an earlier run finished")
    ap.add_argument("--quiet", action="store_true", help="no line per subject")
    return ap


@main.command(context_settings={**CONTEXT, "ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_fail_cleanly
def bids(args):
    """A BIDS App: inrsr bids BIDS_DIR OUTPUT_DIR participant|group [options] (inrsr bids --help).

    participant: every selected subject (and session) of the BIDS dataset is fitted, one job per
    subject on a Dask cluster (local processes, or --scheduler), into a BIDS derivatives dataset;
    a finished subject is skipped on a rerun, a failed one does not stop the others. group: a
    summary table of every subject (inrsr_summary.tsv and .md in OUTPUT_DIR).
    """
    from inrsr.config import fit_config, option_assignments
    from inrsr.jobs.bids_app import group_level, participant_level

    a = _bids_parser().parse_args(list(args))
    try:
        import bids  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise InputError(f"inrsr bids needs pybids and dask distributed ({exc.name} is missing): "
                         "pip install 'inrsr[bids]'") from None
    if a.analysis_level == "group":
        group_level(a.output_dir)
        click.echo((Path(a.output_dir) / "inrsr_summary.md").read_text(), nl=False)
        return
    if a.threads_per_worker is None:
        a.threads_per_worker = (os.cpu_count() or 1) if a.n_workers == 0 and a.scheduler is None else 1
    for name, value, low in (("--n-workers", a.n_workers, 0), ("--threads-per-worker", a.threads_per_worker, 1)):
        if value is not None and value < low:
            raise InputError(f"{name} must be at least {low}, got {value}")
    for name, value in (("--resolution", a.resolution), ("--max-memory", a.max_memory)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive finite number, got {value}")
    config = fit_config(a.preset, a.config, **option_assignments(a.fit_option, "--fit-option"))
    records = participant_level(
        a.bids_dir, a.output_dir, config, a.preset, participant_labels=a.participant_label,
        session_labels=a.session_label, filter_file=a.bids_filter_file, resolution_mm=a.resolution,
        overwrite=a.overwrite, n_workers=a.n_workers, threads_per_worker=a.threads_per_worker,
        scheduler=a.scheduler, max_memory_gb=a.max_memory, command_line=_command_line(),
        echo=(lambda line: None) if a.quiet else (lambda line: click.echo(f"inrsr: {line}", err=True)))
    if not a.quiet:
        done = sum(r["status"] == "done" for r in records)
        click.echo(f"inrsr: {done} fitted, {len(records) - done} already finished → {a.output_dir}", err=True)


@main.command(context_settings=CONTEXT)
@click.option("--pred", required=True, type=click.Path(), help="Predicted volume.")
@click.option("--truth", required=True, type=click.Path(), help="Ground truth on the same grid.")
@click.option("--mask", type=click.Path(), help="Brain mask on the same grid (default: truth's foreground).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_fail_cleanly
def evaluate(pred, truth, mask, as_json):
    """PSNR/SSIM inside the brain, the paper's whole-volume convention, and MI, of PRED against TRUTH."""
    from inrsr.jobs.tools import evaluate_files

    result = evaluate_files(pred, truth, mask)
    if as_json:
        click.echo(json.dumps({"pred": pred, "truth": truth, **result}, indent=2))
        return
    click.echo(f"{'metric':<12} {'value':>9}  meaning")
    notes = {
        "psnr": "dB, inside mask, truth's robust range",
        "ssim": "inside mask, truth's robust range",
        "psnr_paper": "dB, paper convention: own min-max, background 0, whole volume",
        "ssim_paper": "paper convention: own min-max, background 0, whole volume",
        "mi": "nats, pred vs truth inside mask",
    }
    for k, note in notes.items():
        click.echo(f"{k:<12} {result[k]:>9.4f}  {note}")


def _baseline_io_options(func: Callable) -> Callable:
    """The input stack and output grid options shared by every baseline."""
    func = click.option("-o", "--output", required=True, type=click.Path(), help="Output .nii/.nii.gz.")(func)
    func = click.option("--resolution", type=POSITIVE, metavar="MM",
                        help="Isotropic spacing over the stack's field of view (default: its finest spacing).")(func)
    func = click.option("--ref", type=click.Path(), help="Output on exactly this image's grid.")(func)
    return click.option("--input", "input_path", required=True, type=click.Path(), help="Thick-slice stack.")(func)


@main.group(context_settings=CONTEXT)
def baseline() -> None:
    """Classical baselines on the same grids as `inrsr fit`."""


@baseline.command(context_settings=CONTEXT)
@_baseline_io_options
@click.option("--overwrite", is_flag=True)
@_fail_cleanly
def cubic(input_path, ref, resolution, output, overwrite):
    """Cubic B-spline interpolation of one stack, with a JSON sidecar (.json beside the output)."""
    from inrsr.jobs.tools import cubic_file

    info = cubic_file(input_path, output, ref, resolution, overwrite, command_line=_command_line())
    click.echo(f"{output}: {'×'.join(map(str, info['shape']))} voxels", err=True)


@baseline.command(context_settings=CONTEXT)
@_baseline_io_options
@click.option("--thickness", type=POSITIVE, metavar="MM",
              help="Slice thickness (default: a BIDS sidecar's SliceThickness, else estimated from the stack; "
                   "see --thickness-estimate).")
@_dataclass_options(SmoreConfig, keep_defaults=True, skip=("thickness_mm",))
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--quiet", is_flag=True, help="No progress bars or summary.")
@_fail_cleanly
def smore(input_path, ref, resolution, output, thickness, overwrite, quiet, **options):
    """SMORE (Zhao et al. 2021): a network trained on the stack's own in-plane slices sharpens its
    thick axis.

    In-plane slices degraded along one axis by the slice profile teach a 2D residual network to undo
    that degradation; it is applied to the through-plane slices of both orientations, averaged, and
    the result is resampled (cubic) to the output grid, with a JSON sidecar (.json beside it).
    Everything is checked before training.
    """
    from inrsr.jobs.tools import smore_file

    info = smore_file(input_path, output, ref, resolution, thickness, overwrite, progress=not quiet,
                      command_line=_command_line(), **options)
    if not quiet:
        click.echo(
            f"{output}: {'×'.join(map(str, info['shape']))} voxels; thick axis {info['thick_axis']}, ratio "
            f"{info['ratio']:.3g}, {info['profile']} slices {info['thickness_mm']:.3g} mm thick (from "
            f"{info['thickness_source']}); trained {info['iterations']} steps in {info['train_seconds']:.1f} s "
            f"(final L1 {info['final_loss']:.4f}), inference {info['infer_seconds']:.1f} s",
            err=True,
        )


@main.command(context_settings=CONTEXT)
@click.option("-o", "--output", default="demo_out", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--preset", "preset_name", type=click.Choice(list(PRESETS)), default="default", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@_fail_cleanly
def demo(output, preset_name, overwrite):
    """Complete run on a built-in phantom: simulate, fit, compare with cubic, write a table and figure."""
    from inrsr.jobs.demo import run_demo

    report = run_demo(output, preset(preset_name), overwrite=overwrite)
    click.echo(report)


if __name__ == "__main__":  # pragma: no cover
    main()
