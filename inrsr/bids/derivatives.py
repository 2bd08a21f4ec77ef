"""The outputs of the BIDS App as a BIDS derivatives dataset: their names, the dataset's
``dataset_description.json`` and ``.bidsignore``, and a check of every name against the BIDS
schema.

Layout
------
For a :class:`~inrsr.bids.selection.Selection` (here subject ``01``, session ``02``; without a
session the ``ses-`` folder and entity are absent) :func:`derivative_paths` gives::

    OUTPUT_DIR/
      dataset_description.json                   DatasetType "derivative", GeneratedBy inrsr
      .bidsignore                                the names below that BIDS does not define
      sub-01_ses-02.html                         the fit's report (as fMRIPrep places its reports)
      sub-01/ses-02/
        anat/
          sub-01_ses-02_rec-inrsr_T1w.nii.gz     one isotropic volume per head (contrast) …
          sub-01_ses-02_rec-inrsr_T1w.json       … with its sidecar
          sub-01_ses-02_rec-inrsr_T2w.nii.gz
          sub-01_ses-02_rec-inrsr_T2w.json
          sub-01_ses-02_acq-ax_desc-T1wforeground_mask.nii.gz   the foreground mask of each input
          sub-01_ses-02_acq-ax_desc-T1wforeground_mask.json     stack, on that stack's grid
          sub-01_ses-02_acq-cor_desc-T2wforeground_mask.nii.gz
          sub-01_ses-02_acq-cor_desc-T2wforeground_mask.json
          sub-01_ses-02_rec-inrsr_model.pt       the fitted model (inrsr sample / check / report)
        log/                                     the fit's own records: config.json, log.json, …

Naming rules
------------
* A volume is ``<label>[_acq-<head>][_ce-<agent>]_rec-inrsr[_echo-<index>]_<Suffix>.nii.gz``.
  ``rec-inrsr`` says how it was reconstructed (BIDS' ``rec`` entity: the reconstruction
  algorithm). Of the input runs' entities, only those that say what the voxels show are kept,
  the contrast agent and the echo, each when all the head's runs share it
  (``sub-01_ce-gad_rec-inrsr_T1w``); the others (``acq``, ``run``, …) are dropped, since one
  volume combines the runs.
* ``<Suffix>`` is the BIDS suffix of the head's runs (``T1w``, ``FLAIR``). A filter-file head whose
  runs mix suffixes takes the most frequent one (the first in stack order on a tie).
* ``acq-<head>`` is added when the name alone would not tell the heads apart: when the head's runs
  mix suffixes, or when another head has the same suffix, agent and echo (filter-file heads
  ``t2ax`` and ``t2cor`` both of T2w runs give ``acq-t2ax_rec-inrsr_T2w`` and
  ``acq-t2cor_rec-inrsr_T2w``).
  The label is the head name without the characters BIDS labels cannot hold (``_`` and ``-``).
* A foreground mask keeps the entities of its input run that the BIDS derivative mask rule allows
  (``task``, ``acq``, ``ce``, ``rec``, ``run``, ``echo``, ``part``, ``chunk``), and says whose mask
  it is in ``desc-<Suffix>foreground`` (so that the masks of ``sub-01_T1w`` and ``sub-01_T2w``
  differ).
* Two outputs that would get one name are refused (:class:`~inrsr.errors.InputError`), e.g. heads
  ``t2_ax`` and ``t2-ax``.
* The model (``…_rec-inrsr_model.pt``), the report (``sub-<label>[_ses-<label>].html``) and the
  ``log/`` folders are not BIDS files; ``.bidsignore`` lists them, as fMRIPrep does for its reports.

Validation
----------
:func:`derivative_entities` matches a name against the file rules of the BIDS schema shipped with
``bidsschematools`` (installed with pybids): the rules for raw data, for derivatives
(``rules.files.deriv``: preprocessed anatomical images, masks, …) and for the top-level files,
turned into regular expressions by ``bidsschematools.rules``. ``bids_validator.BIDSValidator``
is not used: it compiles only the raw-data and top-level rules, so it refuses every derivative-only
name (a ``desc-`` entity on a T1w image, a ``_mask`` file). :data:`BIDS_VERSION` is the version of
the specification these names follow.
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inrsr import __version__
from inrsr.bids.selection import CONTRAST_ENTITIES, Run, Selection
from inrsr.errors import InputError, InputWarning
from inrsr.io.files import check_writable, read_json, sidecar_path, write_json, write_text
from inrsr.io.provenance import SOFTWARE

__all__ = ["BIDS_VERSION", "RECONSTRUCTION", "BIDSIGNORE", "Outputs", "head_suffixes", "derivative_paths",
           "write_dataset_description", "write_bidsignore", "derivative_entities"]

# The BIDS specification the names and dataset_description.json follow (bidsschematools 2.0.1's).
BIDS_VERSION = "1.11.2"
# The rec-<label> of every volume inrsr reconstructs.
RECONSTRUCTION = SOFTWARE
# What .bidsignore lists: the files of a subject that BIDS does not define.
BIDSIGNORE = ("*.html", "*_model.pt", "log/")
DESCRIPTION = ("Isotropic volumes reconstructed from thick-slice anatomical stacks by an implicit neural "
               "representation fitted to each subject's own runs")
# Entities of an input run kept in its mask's name, in BIDS order: pybids' name → the name's key.
_MASK_ENTITIES = (("task", "task"), ("acquisition", "acq"), ("ceagent", "ce"), ("reconstruction", "rec"),
                  ("run", "run"), ("echo", "echo"), ("part", "part"), ("chunk", "chunk"))
_NOT_LABEL = re.compile(r"[^A-Za-z0-9]")


@dataclass(frozen=True)
class Outputs:
    """Where the outputs of one selection go (see the module's description).

    Attributes
    ----------
    anat : the subject's (and session's) ``anat`` folder of the derivatives dataset.
    volumes : head → isotropic volume (``.nii.gz``), in stack order of the heads.
    masks : one foreground mask (``.nii.gz``) per run of the selection, in stack order.
    model : the fitted model file.
    report : the HTML report.
    log_dir : the folder of the fit's other records (configuration, logs, MI curve, transforms).
    """

    anat: Path
    volumes: dict[str, Path] = field(hash=False)
    masks: list[Path] = field(hash=False)
    model: Path
    report: Path
    log_dir: Path

    @property
    def sidecars(self) -> dict[str, Path]:
        """Head → the JSON sidecar of its volume."""
        return {head: sidecar_path(path) for head, path in self.volumes.items()}

    def files(self) -> list[Path]:
        """Every file named here: volumes and masks each with its sidecar, the model, the report."""
        images = [*self.volumes.values(), *self.masks]
        return [p for image in images for p in (image, sidecar_path(image))] + [self.model, self.report]


def head_suffixes(selection: Selection) -> dict[str, str]:
    """Head → the BIDS suffix its volume is named with, in stack order (see *Naming rules*)."""
    suffixes: dict[str, str] = {}
    for head in selection.contrasts:
        counts = Counter(run.suffix for run in selection.runs if run.contrast == head)
        suffixes[head] = max(counts, key=lambda s: counts[s])  # the first counted wins a tie
    return suffixes


def derivative_paths(output_dir: str | os.PathLike, selection: Selection) -> Outputs:
    """The derivative file names of ``selection``'s outputs under ``output_dir``.

    Raises :class:`InputError` when two outputs would get the same name (heads whose names differ
    only by ``_`` or ``-``, runs whose names differ only by entities a mask name cannot hold).
    """
    out = Path(output_dir)
    subject = out / f"sub-{selection.subject}"
    folder = subject / f"ses-{selection.session}" if selection.session is not None else subject
    anat = folder / "anat"
    suffixes = head_suffixes(selection)
    kinds = {head: (*_contrast_entities(selection, head), suffix) for head, suffix in suffixes.items()}
    shared = Counter(kinds.values())
    volumes = {}
    for head, (ce, echo, suffix) in kinds.items():
        mixed = len({run.suffix for run in selection.runs if run.contrast == head}) > 1
        acq = f"_acq-{_NOT_LABEL.sub('', head)}" if mixed or shared[kinds[head]] > 1 else ""
        volumes[head] = anat / f"{selection.label}{acq}{ce}_rec-{RECONSTRUCTION}{echo}_{suffix}.nii.gz"
    masks = [anat / _mask_name(selection.label, run) for run in selection.runs]
    model = anat / f"{selection.label}_rec-{RECONSTRUCTION}_model.pt"
    outputs = Outputs(anat=anat, volumes=volumes, masks=masks, model=model, report=out / f"{selection.label}.html",
                      log_dir=folder / "log")
    _refuse_shared_names(selection, outputs)
    return outputs


def _contrast_entities(selection: Selection, head: str) -> tuple[str, str]:
    """The ``_ce-<label>`` and ``_echo-<index>`` parts of a head's volume name: each when all the
    head's runs have that entity with one value, else empty."""
    parts = []
    for name, key in CONTRAST_ENTITIES:
        values = {run.entities.get(name) for run in selection.runs if run.contrast == head}
        value = values.pop() if len(values) == 1 else None
        parts.append(f"_{key}-{_NOT_LABEL.sub('', value)}" if value else "")
    return parts[0], parts[1]


def _mask_name(label: str, run: Run) -> str:
    kept = "".join(f"_{key}-{_NOT_LABEL.sub('', run.entities[name])}" for name, key in _MASK_ENTITIES
                   if name in run.entities)
    return f"{label}{kept}_desc-{run.suffix}foreground_mask.nii.gz"


def _refuse_shared_names(selection: Selection, outputs: Outputs) -> None:
    owners = [*outputs.volumes.keys(), *(run.path for run in selection.runs)]
    seen: dict[Path, str] = {}
    for owner, path in zip(owners, [*outputs.volumes.values(), *outputs.masks]):
        if path in seen:
            raise InputError(f"{selection.label}: {seen[path]!r} and {owner!r} would both be written to {path.name}; "
                             "rename one (in the filter file) or give the runs distinct entities")
        seen[path] = owner


# --- the dataset's own files -----------------------------------------------------------------


def write_dataset_description(output_dir: str | os.PathLike, bids_dir: str | os.PathLike) -> Path:
    """Write ``OUTPUT_DIR/dataset_description.json`` (atomically) and ``.bidsignore`` (see
    :func:`write_bidsignore`), creating ``output_dir`` if needed; returns the description's path.

    The description: ``Name``, ``BIDSVersion`` (:data:`BIDS_VERSION`), ``DatasetType``
    (``derivative``), ``GeneratedBy`` (inrsr, its version and what it does) and ``SourceDatasets``
    (the input's DOI when its ``dataset_description.json`` gives ``DatasetDOI``, else its
    ``file://`` URL).

    An existing description written by inrsr is kept (with an :class:`InputWarning` when another
    version of inrsr or another source dataset wrote it); one written by another pipeline, or
    one that is not a derivative's, is refused with :class:`InputError`, as is ``output_dir``
    being ``bids_dir``.
    """
    out, source = Path(os.path.abspath(output_dir)), Path(os.path.abspath(bids_dir))
    if out == source:
        raise InputError(f"{output_dir}: the output folder is the BIDS dataset itself; choose another one "
                         "(e.g. BIDS_DIR/derivatives/inrsr)")
    path = out / "dataset_description.json"
    description = _description(source)
    if path.exists():
        _check_existing(path, description)
    else:
        check_writable(out)
        write_json(path, description)
    write_bidsignore(out)
    return path


def _description(source: Path) -> dict[str, Any]:
    raw = read_json(source / "dataset_description.json") if (source / "dataset_description.json").is_file() else {}
    name = raw.get("Name") if isinstance(raw, dict) else None
    doi = raw.get("DatasetDOI") if isinstance(raw, dict) else None
    return {
        "Name": f"inrsr: isotropic anatomical volumes of {name}" if isinstance(name, str) and name
        else "inrsr: isotropic anatomical volumes",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": SOFTWARE, "Version": __version__, "Description": DESCRIPTION}],
        "SourceDatasets": [{"DOI": doi} if isinstance(doi, str) and doi else {"URL": source.as_uri()}],
    }


def _check_existing(path: Path, description: dict[str, Any]) -> None:
    """Refuse an existing description that is not inrsr's; warn when it differs from ours."""
    existing = read_json(path)
    generators = existing.get("GeneratedBy") if isinstance(existing, dict) else None
    first = generators[0] if isinstance(generators, list) and generators and isinstance(generators[0], dict) else {}
    if not isinstance(existing, dict) or existing.get("DatasetType") != "derivative" or not first.get("Name"):
        raise InputError(f"{path}: the output folder holds a dataset that is not a derivatives dataset; choose "
                         "another output folder")
    if first["Name"] != SOFTWARE:
        raise InputError(f"{path}: the output folder belongs to another pipeline ({first['Name']}); choose "
                         "another output folder")
    if first.get("Version") != __version__:
        warnings.warn(f"{path}: written by inrsr {first.get('Version')}, this is inrsr {__version__}; the outputs "
                      "of both versions will sit side by side", InputWarning, stacklevel=3)
    if existing.get("SourceDatasets") != description["SourceDatasets"]:
        warnings.warn(f"{path}: made from another source dataset ({json.dumps(existing.get('SourceDatasets'))}); "
                      "its outputs are kept beside the new ones", InputWarning, stacklevel=3)


def write_bidsignore(output_dir: str | os.PathLike) -> Path:
    """Add to ``OUTPUT_DIR/.bidsignore`` (atomically) the lines of :data:`BIDSIGNORE` it lacks,
    keeping its other lines; returns its path."""
    path = Path(output_dir) / ".bidsignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    missing = [line for line in BIDSIGNORE if line not in lines]
    if missing or not path.is_file():
        write_text(path, "\n".join(lines + missing) + "\n")
    return path


# --- names -----------------------------------------------------------------------------------


def derivative_entities(relative_path: str | os.PathLike) -> dict[str, str] | None:
    """The BIDS entities of a file name in a derivatives dataset (``sub-01/anat/sub-01_rec-inrsr_T1w.nii.gz``,
    relative to the dataset's root, ``/``-separated), or None when no rule of the BIDS schema
    allows it (see *Validation*). The keys are the schema's entity names (``subject``,
    ``reconstruction``, ``description``) plus ``datatype``, ``suffix`` and ``extension``."""
    name = Path(relative_path).as_posix()
    for rule in _name_rules():
        m = rule.match(name)
        if m:
            return {k: v for k, v in m.groupdict().items() if v is not None}
    return None


@functools.lru_cache(maxsize=1)
def _name_rules() -> tuple[re.Pattern, ...]:
    """The schema's file rules for raw data, derivatives and top-level files, compiled."""
    import logging

    import bidsschematools.rules
    import bidsschematools.schema

    logger = logging.getLogger("bidsschematools")
    level = logger.level
    logger.setLevel(logging.WARNING)  # it logs the schema it loads
    try:
        schema = bidsschematools.schema.load_schema()
    finally:
        logger.setLevel(level)
    files = schema.rules.files
    rules = [r["regex"] for group in (files.common, files.raw, files.deriv)
             for r in bidsschematools.rules.regexify_filename_rules(group, schema, level=2)]
    return tuple(re.compile(r) for r in rules)
