"""The BIDS App: ``inrsr bids BIDS_DIR OUTPUT_DIR participant|group``.

*participant*: the stacks of every subject (and session) are chosen from the dataset
(:mod:`inrsr.bids.selection`), each subject is fitted as ``inrsr fit`` fits
(:func:`inrsr.jobs.fit_stacks.fit_and_write`, with the thicknesses of the runs' sidecars, inherited
as BIDS says) in one job on a Dask cluster (:mod:`inrsr.jobs.cohort`), and its outputs are
published under their BIDS derivative names (:mod:`inrsr.bids.derivatives`). A subject's complete
``inrsr fit`` folder is its ``log/`` folder; the derivative files are hard links to the files in it
(copies where the file system has no links), so they cost no space and ``inrsr
report``/``check``/``sample`` still work on ``log/model.pt``. Each subject's job writes
``log/status.json`` (what was chosen and why, how the fit went) and ``log/inrsr.log`` (its progress
lines and warnings), and never raises: a failed subject is recorded with its one-line error and the
others go on. A finished subject is skipped on a rerun (unless ``overwrite``); an interrupted one is
resumed from its fit state.

*group*: ``OUTPUT_DIR/inrsr_summary.tsv`` and ``.md`` list every subject's status, time,
self-consistency, support and warnings, from the status files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from inrsr.config import FitConfig
from inrsr.errors import InputError, InputWarning, InrsrError, Interrupted, one_line
from inrsr.io.files import read_json, sidecar_path, write_json, write_text
from inrsr.jobs.outputs import mask_name

if TYPE_CHECKING:
    from inrsr.bids.derivatives import Outputs
    from inrsr.bids.selection import Selection

__all__ = ["SubjectJob", "run_subject", "participant_level", "group_level", "STATUS_FILE", "SUMMARY_FILE",
           "CohortFailure"]

STATUS_FILE = "status.json"
LOG_FILE = "inrsr.log"
SUMMARY_FILE = "inrsr_summary"  # .tsv and .md in OUTPUT_DIR


class CohortFailure(InrsrError):
    """Some subjects failed (each recorded in its status file); the others are complete."""


@dataclass(frozen=True)
class SubjectJob:
    """Everything one subject's job needs (sent to a worker process, so picklable)."""

    selection: "Selection"
    outputs: "Outputs"
    config: FitConfig
    preset: str
    resolution_mm: float | None = None
    overwrite: bool = False
    max_memory_gb: float | None = None
    command_line: list[str] | None = field(default=None, hash=False)


def _published(outputs: "Outputs", head_volumes: dict[str, Path], stack_contrasts: list[str],
               fit_dir: Path) -> list[tuple[Path, Path]]:
    """(file in the fit folder, its derivative name) for every published file."""
    pairs = []
    for head, target in outputs.volumes.items():
        pairs += [(head_volumes[head], target), (sidecar_path(head_volumes[head]), sidecar_path(target))]
    for k, (target, contrast) in enumerate(zip(outputs.masks, stack_contrasts), start=1):
        source = fit_dir / mask_name(k, contrast)
        pairs += [(source, target), (sidecar_path(source), sidecar_path(target))]
    return pairs + [(fit_dir / "model.pt", outputs.model), (fit_dir / "report.html", outputs.report)]


def _link(source: Path, target: Path) -> None:
    """Publish ``source`` as ``target``: a hard link (a copy where links are not possible),
    replacing ``target`` atomically."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _finished(job: SubjectJob) -> bool:
    fit_dir = job.outputs.log_dir
    return (all(p.is_file() for p in job.outputs.files()) and (fit_dir / "log.json").is_file()
            and not (fit_dir / "fit_state.pt").exists())


@contextlib.contextmanager
def _logged(path: Path) -> Iterator[list[str]]:
    """Inside the block, stderr (progress lines) and warnings (``inrsr: warning:`` lines) go to
    the file ``path``; the warnings are also collected in the yielded list."""
    seen: list[str] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log, contextlib.redirect_stderr(log), warnings.catch_warnings():
        warnings.simplefilter("default", InputWarning)

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, InputWarning):
                seen.append(one_line(message))
                print(f"inrsr: warning: {one_line(message)}", file=log, flush=True)

        warnings.showwarning = show
        yield seen


def run_subject(job: SubjectJob) -> dict:
    """Fit one subject and publish its outputs; returns (and writes to ``log/status.json``) its
    record: ``label``, ``status`` (``done``, ``skipped``: finished by an earlier run, or
    ``failed``), ``seconds``, ``error`` (one line), ``warnings``, ``selection``, the ``host`` and
    ``pid`` of the process that ran it, and for a done subject its ``self_consistency`` and
    ``support``. Never raises (but for an interruption, which stops the whole run)."""
    from inrsr.config import PRESETS
    from inrsr.jobs.fit_stacks import fit_and_write
    from inrsr.resources import keep_freed_memory

    keep_freed_memory()  # a Dask worker returns freed memory at once, which slows a fit down
    sel, fit_dir = job.selection, job.outputs.log_dir
    record: dict[str, Any] = {"label": sel.label, "subject": sel.subject, "session": sel.session,
                              "selection": sel.to_dict(), "error": None, "warnings": [],
                              "host": socket.gethostname(), "pid": os.getpid()}
    if not job.overwrite and _finished(job):
        previous = _read_status(fit_dir / STATUS_FILE) or {}
        return {**previous, **record, "status": "skipped", "seconds": 0.0,
                "warnings": previous.get("warnings", [])}
    t0 = time.perf_counter()
    try:
        with _logged(fit_dir / LOG_FILE) as seen:
            record["warnings"] = seen
            if sel.why_empty():
                raise InputError(sel.why_empty())
            # not finished: an interrupted fit is resumed; anything else an earlier run left in the
            # fit folder (a fit whose files were not all published) is replaced
            resume = (fit_dir / "fit_state.pt").is_file() and not job.overwrite
            specs = sel.stack_specs()
            # the specs say which thicknesses are SliceThickness inherited from the dataset's sidecars
            _, fitted = fit_and_write(specs, job.config, fit_dir, None, job.resolution_mm, overwrite=not resume,
                                      progress=True, resume=resume, max_memory_gb=job.max_memory_gb,
                                      command_line=job.command_line,
                                      preset_name=job.preset if job.preset in PRESETS else None)
            log = read_json(fit_dir / "log.json")
            volumes = {head: fit_dir / f"{head}.nii.gz" for head in fitted.volumes}
            for source, target in _published(job.outputs, volumes, [s.contrast for s in specs], fit_dir):
                _link(source, target)
        record.update(status="done", self_consistency=log.get("self_consistency"),
                      support=log.get("support"), steps=log.get("steps"))
    except (Interrupted, KeyboardInterrupt):  # stops the whole run, not this subject only
        raise Interrupted(f"interrupted while fitting {sel.label}; the subjects already finished are complete: run "
                          "the same command again, it skips them and resumes this one") from None
    except InrsrError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug: recorded with its traceback, the other subjects go on
        record.update(status="failed", error=f"internal error: {type(exc).__name__}: {one_line(exc)}")
        with contextlib.suppress(OSError):
            write_text(fit_dir / "traceback.txt", traceback.format_exc())
    record["seconds"] = time.perf_counter() - t0
    with contextlib.suppress(OSError):
        write_json(fit_dir / STATUS_FILE, record)
    return record


def _read_status(path: Path) -> dict | None:
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def participant_level(
    bids_dir: str | os.PathLike, output_dir: str | os.PathLike, config: FitConfig, preset: str, *,
    participant_labels: list[str] | None = None, session_labels: list[str] | None = None,
    filter_file: str | os.PathLike | None = None, resolution_mm: float | None = None, overwrite: bool = False,
    n_workers: int | None = None, threads_per_worker: int = 1, scheduler: str | None = None,
    max_memory_gb: float | None = None, command_line: list[str] | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> list[dict]:
    """Fit every selected subject (and session) of the BIDS dataset ``bids_dir`` into the
    derivatives dataset ``output_dir``, one Dask job per subject (see :mod:`inrsr.jobs.cohort`:
    ``n_workers`` local worker processes, default as many as the cores allow at
    ``threads_per_worker`` CPU threads per fit, ``0`` for none; or the existing ``scheduler``). ``echo`` receives one line
    per subject as it is chosen and as it ends. Returns the subjects' records (see
    :func:`run_subject`); raises :class:`CohortFailure` after all ran when some failed.
    """
    from inrsr.bids.derivatives import derivative_paths, write_dataset_description
    from inrsr.bids.selection import select_stacks
    from inrsr.jobs.cohort import connect, default_workers, run_jobs

    if scheduler is not None:
        connect(scheduler).close()  # an unreachable cluster is reported before anything else
    selections = select_stacks(bids_dir, participant_labels, session_labels, filter_file)
    if not selections:
        raise InputError(f"{bids_dir}: no subject with anatomical runs")
    outputs = [derivative_paths(output_dir, s) for s in selections]  # name clashes refused before any fit
    write_dataset_description(output_dir, bids_dir)
    config = config.replace(threads=threads_per_worker).validate()
    jobs = [SubjectJob(s, o, config, preset, resolution_mm, overwrite, max_memory_gb, command_line)
            for s, o in zip(selections, outputs)]

    for s in selections:
        runs = ", ".join(f"{r.contrast} ({Path(r.path).name})" for r in s.runs) or s.why_empty()
        echo(f"{s.label}: {runs}")
    workers = default_workers(threads_per_worker) if n_workers is None else n_workers
    records = []
    run_id = uuid.uuid4().hex[:8]  # job names unique to this run: a cluster reuses the result of a known name
    by_key = {f"inrsr-{s.label}-{run_id}": s for s in selections}
    for key, record, error in run_jobs(run_subject, jobs, list(by_key), n_workers=workers, scheduler=scheduler):
        if record is None:  # the worker died (killed for memory, lost): the job never returned
            s = by_key[key]
            record = {"label": s.label, "subject": s.subject, "session": s.session, "selection": s.to_dict(),
                      "status": "failed", "seconds": 0.0, "warnings": [],
                      "error": f"the Dask worker running it failed ({type(error).__name__}: {one_line(error)})"}
            with contextlib.suppress(OSError):
                log_dir = outputs[selections.index(s)].log_dir
                log_dir.mkdir(parents=True, exist_ok=True)
                write_json(log_dir / STATUS_FILE, record)
        records.append(record)
        echo(_outcome_line(record))
    failed = [r["label"] for r in records if r["status"] == "failed"]
    if failed:
        raise CohortFailure(f"{len(failed)} of {len(records)} subjects failed ({', '.join(sorted(failed))}); each "
                            f"error is in {Path(output_dir) / 'sub-*' / '[ses-*]' / 'log' / STATUS_FILE}")
    return sorted(records, key=lambda r: r["label"])


def _outcome_line(record: dict) -> str:
    if record["status"] == "failed":
        return f"{record['label']}: failed after {record['seconds']:.0f} s: {record['error']}"
    if record["status"] == "skipped":
        return f"{record['label']}: finished by an earlier run, skipped (--overwrite fits it again)"
    return f"{record['label']}: done in {record['seconds']:.0f} s"


SUMMARY_COLUMNS = ("participant_id", "session_id", "status", "seconds", "stacks", "self_consistency_psnr_db",
                   "beyond_1mm_percent", "warnings", "error")


def group_level(output_dir: str | os.PathLike) -> list[dict]:
    """Write ``inrsr_summary.tsv`` and ``inrsr_summary.md`` in the derivatives dataset
    ``output_dir`` from its subjects' status files: per subject and session, the status, the
    time, the stacks, the lowest self-consistency PSNR of its stacks (dB), the largest share of
    the foreground more than 1 mm from any measured voxel of a contrast, the warnings and the
    error. Returns the rows."""
    out = Path(output_dir)
    if not (out / "dataset_description.json").is_file():
        raise InputError(f"{out}: not an inrsr derivatives folder (no dataset_description.json); run the "
                         "participant level first")
    statuses = sorted(out.glob(f"sub-*/log/{STATUS_FILE}")) + sorted(out.glob(f"sub-*/ses-*/log/{STATUS_FILE}"))
    rows = [_summary_row(s) for s in (_read_status(p) for p in statuses) if s is not None]
    if not rows:
        raise InputError(f"{out}: no subject has been run yet (no sub-*/log/{STATUS_FILE})")
    rows.sort(key=lambda r: (r["participant_id"], r["session_id"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("n/a" if v is None or v == "" else v) for k, v in r.items()} for r in rows)
    write_text(out / f"{SUMMARY_FILE}.tsv", buf.getvalue())
    write_text(out / f"{SUMMARY_FILE}.md", _markdown(rows))
    return rows


def _summary_row(status: dict) -> dict:
    psnrs = [s["psnr"] for s in status.get("self_consistency") or []]
    support = status.get("support") or {}
    beyond = [100 * v["beyond_1mm"] for v in support.values() if "beyond_1mm" in v]
    runs = status.get("selection", {}).get("runs", [])
    return {
        "participant_id": f"sub-{status.get('subject')}",
        "session_id": f"ses-{status['session']}" if status.get("session") else "",
        "status": status.get("status"), "seconds": round(float(status.get("seconds") or 0.0), 1),
        "stacks": ", ".join(f"{r['contrast']}:{Path(r['path']).name}" for r in runs),
        "self_consistency_psnr_db": round(min(psnrs), 2) if psnrs else "",
        "beyond_1mm_percent": round(max(beyond), 1) if beyond else "",
        "warnings": len(status.get("warnings") or []), "error": status.get("error") or "",
    }


def _markdown(rows: list[dict]) -> str:
    head = ["subject", "session", "status", "s", "stacks", "lowest self-consistency dB", "beyond 1 mm %",
            "warnings", "error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r[c] for c in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    done = sum(r["status"] in ("done", "skipped") for r in rows)
    return f"{done} of {len(rows)} subjects complete.\n\n" + "\n".join(lines) + "\n"
