"""Which runs of a BIDS dataset become the stacks of one subject's fit, and why the others do not.

:func:`select_stacks` returns one :class:`Selection` per subject, or per subject and session when
the subject has sessions, in sorted order. A selection lists its :class:`Run` objects (the stacks,
in stack order) and every anatomical file it left out with the reason, so that the BIDS App can log
what it fitted and a user can see why a run was not used.

The default rule
----------------
inrsr turns *thick-slice* stacks into isotropic volumes; an isotropic 3D acquisition has nothing
between its slices to recover, and mixing it in would only make the fit slower. So, by default, a
run is a stack when

1. it is anatomical imaging data: datatype ``anat``, a NIfTI file (``.nii`` or ``.nii.gz``), with
   one of the suffixes of :data:`ANAT_SUFFIXES`: the weighted images ``T1w``, ``T2w``, ``FLAIR``,
   ``PDw``, ``T2starw`` and the older names ``PD`` and ``T2star`` that BIDS still accepts.
   Quantitative maps (``T1map``, ``T2map``, ``T1rho``, ``R2starmap``, …) are computed from
   several images rather than acquired as slices; ``inplaneT1``/``inplaneT2`` are companions of
   functional runs, ``angio`` shows vessels, ``PDT2`` holds two volumes in one file and ``FLASH`` is
   deprecated: all of them are left out, with that reason;
2. it is one 3D volume of intensities: a 4D file is left out, and so is the phase, real or
   imaginary part of a complex image (``part-phase``; ``part-mag`` is kept);
3. it is *thick*: its largest voxel spacing is at least :data:`THICK_RATIO` (1.5) times its
   smallest, or its sidecar says ``MRAcquisitionType: "2D"``. Clinical 2D stacks are typically
   0.5–1 mm in plane with 3–6 mm between slices (ratios of 3–12), while 3D acquisitions are
   isotropic or nearly so (ratios up to about 1.2); 1.5 lies safely between. Spacings are the
   norms of the affine's columns, as everywhere in inrsr (not the header's ``pixdim``).

Each suffix is one *contrast*, and one output head of the fit, named after it in lower case
(``T1w`` → ``t1w``, ``FLAIR`` → ``flair``). Several thick runs of one suffix (``acq-ax_T2w`` and
``acq-cor_T2w``) are several stacks of that one contrast. The two entities that change what the
voxels show, a contrast agent (``ce``) and an echo (``echo``), make runs of one suffix different
contrasts, whose heads carry them (:func:`default_contrast`): ``sub-01_ce-gad_T1w`` trains
``t1w_ce-gad`` beside ``sub-01_T1w``'s ``t1w``, as a T1 after gadolinium is not the T1 before it.
Stacks are ordered by suffix as in :data:`ANAT_SUFFIXES` (so a T1w stack comes first: it defines
the output grid's axes and is the fixed stack of ``--register``), then by head, then by file
name. A subject or session without any thick run gets
a selection with no runs (see :meth:`Selection.why_empty`); that is not an error here.

Sessions: a subject's selections are its sessions that hold an anatomical NIfTI file (one
selection with ``session=None`` when it has no sessions, or no anatomical file at all). With
``session_labels``, exactly the requested sessions of each subject that has them.

The filter file
---------------
``--bids-filter-file`` takes a JSON object, as fMRIPrep's does, whose keys are the head names of
the fit (contrast names: letters, digits, ``_`` and ``-``) and whose values are pybids queries::

    {"t2w":   {"suffix": "T2w", "acquisition": ["ax", "cor"]},
     "flair": {"suffix": "FLAIR", "run": 1}}

Given a filter file, exactly these heads are selected, each by its query, in the file's order.
A query is added to ``{"datatype": "anat"}``; a head named after an anatomical suffix (``t2w``,
``flair``) selects that suffix unless the query names one, any other head must give
``"suffix"``. Values may be a string, an integer, a list of them, ``null`` (the entity must be
absent) or ``"*"`` (it must be present). Only NIfTI files are selected whatever the query says.
Thick or not is then the user's choice, but an isotropic run is reported with an
:class:`~inrsr.errors.InputWarning`. A head whose query matches nothing for a subject is noted in
that subject's :attr:`Selection.notes`; anatomical files that no head selects are listed as
excluded by the filter file.

Indexing
--------
The dataset is indexed with pybids (:class:`bids.BIDSLayout`) in memory: no database file is
written, and nothing is written into the dataset. File names are validated while indexing
(``BIDSLayoutIndexer(validate=True)``), so only files with valid BIDS raw-data names are seen: the
``derivatives/`` folder is never indexed (pybids skips it), nor is an output folder placed anywhere
else inside the dataset, nor ``code/``, ``models/``, ``sourcedata/`` and ``stimuli/``. Sidecar
metadata is indexed (``index_metadata=True``) so that ``SliceThickness`` and
``MRAcquisitionType`` follow the BIDS inheritance principle (a top-level ``T2w.json`` applies to
every T2w run). Two shortcuts keep large datasets quick, as fMRIPrep does: the folders of
participants that were not asked for, and the datatype folders other than ``anat`` (``func``,
``dwi``, …), are not indexed.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from inrsr.errors import InputError, InputWarning, one_line
from inrsr.io.files import check_input_file, read_json
from inrsr.io.stack import CONTRAST_NAME, StackSpec

if TYPE_CHECKING:
    from bids import BIDSLayout
    from bids.layout import BIDSFile

__all__ = ["Run", "Selection", "select_stacks", "read_filter_file", "check_dataset", "default_contrast",
           "ANAT_SUFFIXES", "CONTRAST_ENTITIES", "THICK_RATIO"]

# Anatomical suffixes whose runs may be stacks, in stack order (see the module's description).
ANAT_SUFFIXES = ("T1w", "T2w", "FLAIR", "PDw", "T2starw", "PD", "T2star")
# Entities that change what a run's voxels show: pybids' name → the key in file names.
CONTRAST_ENTITIES = (("ceagent", "ce"), ("echo", "echo"))
# The parts of a complex image that are not intensities of anatomy.
_NOT_MAGNITUDE = ("phase", "real", "imag")
# A run is thick when its largest voxel spacing is at least this many times its smallest.
THICK_RATIO = 1.5
NIFTI = (".nii", ".nii.gz")
# Entities that say whose and what a file is, rather than which run of it: not kept in Run.entities.
_IDENTITY = ("subject", "session", "suffix", "datatype", "extension")
# pybids' default ignore list, which passing our own replaces.
_IGNORED_FOLDERS = re.compile(r"^/(code|models|sourcedata|stimuli)")
_LISTED = 20  # labels named in an "unknown label" message


@dataclass(frozen=True)
class Run:
    """One BIDS run chosen as a stack.

    Attributes
    ----------
    path : absolute path of the NIfTI file.
    contrast : the fit's head this stack trains: the BIDS suffix in lower case (``t1w``,
        ``flair``; with a contrast agent or echo ``t1w_ce-gad``, see :func:`default_contrast`), or
        the filter file's key that selected it.
    suffix : the BIDS suffix (``T1w``, ``FLAIR``).
    entities : the run's other BIDS entities (``acquisition``, ``reconstruction``, ``run``, …,
        pybids' names) as strings; subject, session, suffix, datatype and extension are not in it.
    spacing_mm : voxel spacing along the three array axes (norms of the affine's columns), mm.
    thickness_mm : the ``SliceThickness`` of the run's sidecar (inherited as BIDS says), else None.
    """

    path: str
    contrast: str
    suffix: str
    entities: dict[str, str] = field(hash=False)
    spacing_mm: tuple[float, float, float]
    thickness_mm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "contrast": self.contrast, "suffix": self.suffix,
                "entities": dict(self.entities), "spacing_mm": list(self.spacing_mm),
                "thickness_mm": self.thickness_mm}


@dataclass
class Selection:
    """The stacks of one subject (and session), and what was left out.

    Attributes
    ----------
    subject, session : BIDS labels, without ``sub-``/``ses-`` (``session`` is None without sessions).
    runs : the stacks, in stack order.
    excluded : (absolute path, reason) of every anatomical NIfTI file of this subject and session
        that is not a stack.
    notes : what is not about one file: a filter-file head that matched nothing here.
    """

    subject: str
    session: str | None
    runs: list[Run] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``sub-01``, or ``sub-01_ses-02`` with a session: the prefix of its output names."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session is not None else "")

    @property
    def contrasts(self) -> list[str]:
        """The head names of :attr:`runs`, each once, in stack order."""
        return list(dict.fromkeys(run.contrast for run in self.runs))

    def stack_specs(self) -> list[StackSpec]:
        """The runs as the fit's stack specifications (contrast, path, thickness from the sidecars)."""
        return [StackSpec(contrast=run.contrast, path=run.path, thickness_mm=run.thickness_mm,
                          thickness_from_sidecar=run.thickness_mm is not None) for run in self.runs]

    def why_empty(self) -> str | None:
        """One line saying why there is nothing to fit, or None when there are runs."""
        if self.runs:
            return None
        details = [f"{Path(path).name}: {reason}" for path, reason in self.excluded] + self.notes
        if not details:
            return f"{self.label}: no anatomical NIfTI run"
        return f"{self.label}: no run to fit ({'; '.join(details)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of what was chosen and why."""
        return {"label": self.label, "subject": self.subject, "session": self.session,
                "runs": [run.to_dict() for run in self.runs],
                "excluded": [{"path": path, "reason": reason} for path, reason in self.excluded],
                "notes": list(self.notes)}


def select_stacks(
    bids_dir: str | os.PathLike,
    participant_labels: Iterable[str] | None = None,
    session_labels: Iterable[str] | None = None,
    filter_file: str | os.PathLike | None = None,
) -> list[Selection]:
    """The stacks of each subject (and session) of a BIDS dataset (see the module's description).

    Parameters
    ----------
    bids_dir : the BIDS dataset's root folder.
    participant_labels : subjects to select (``01`` or ``sub-01``); default (None or empty): all.
    session_labels : sessions to select (``02`` or ``ses-02``); default (None or empty): all.
    filter_file : a ``--bids-filter-file`` JSON file (see :func:`read_filter_file`); default: the
        default rule.

    Returns
    -------
    One :class:`Selection` per subject, or per subject and session, sorted by labels.

    Raises
    ------
    InputError
        When ``bids_dir`` is not a BIDS dataset, a label is unknown, the filter file is invalid, a
        file is selected by two heads, or pybids cannot index the dataset (naming the file).
    """
    root = check_dataset(bids_dir)
    heads = read_filter_file(filter_file) if filter_file is not None else None
    wanted = _labels(participant_labels, "sub-")
    subjects = _participants(root, wanted)
    layout = _index(root, subjects if wanted else None, _datatypes(heads))
    anat = _group(_query(layout, {"datatype": "anat"}))
    matched = {head: _group(_query(layout, query)) for head, query in (heads or {}).items()}
    keys = _subject_sessions(layout, root, subjects, _labels(session_labels, "ses-"), [anat, *matched.values()])
    if filter_file is None:
        return [_default_selection(sub, ses, anat.get((sub, ses), [])) for sub, ses in keys]
    return [_filtered_selection(sub, ses, matched, anat.get((sub, ses), []), Path(filter_file)) for sub, ses in keys]


def check_dataset(bids_dir: str | os.PathLike) -> Path:
    """``bids_dir`` as an absolute path, when it is a folder with a readable
    ``dataset_description.json``; :class:`InputError` otherwise."""
    root = Path(os.path.abspath(bids_dir))
    if not root.exists():
        raise InputError(f"{bids_dir}: not a BIDS dataset (folder not found)")
    if not root.is_dir():
        raise InputError(f"{bids_dir}: not a BIDS dataset (not a folder)")
    description = root / "dataset_description.json"
    if not description.is_file():
        raise InputError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    content = read_json(description)
    if not isinstance(content, dict):
        raise InputError(f"{description}: expected a JSON object")
    return root


# --- the filter file -------------------------------------------------------------------------


def read_filter_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Head name → pybids query from a ``--bids-filter-file`` (see the module's description).

    The queries are complete: ``datatype`` (``anat`` unless given) and ``suffix`` (the head's name
    when it is an anatomical suffix, unless given) are filled in, ``null`` became
    ``Query.NONE`` and ``"*"`` ``Query.REQUIRED``.

    Raises :class:`InputError`, naming the file and the problem, when it cannot be read, is not
    valid JSON or not a non-empty object, a head name is not a valid contrast name, a query is not
    an object, names an unknown entity or holds a value of another type, or a head gives no suffix.
    """
    p = check_input_file(path, "filter file")
    try:
        content = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the filter file ({one_line(exc)})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(content, dict):
        raise InputError(f"{p}: expected a JSON object of head name → query, got {_json_type(content)}")
    if not content:
        raise InputError(f"{p}: no head to select (an empty JSON object)")
    return {head: _head_query(p, head, query) for head, query in content.items()}


def _head_query(path: Path, head: str, query: Any) -> dict[str, Any]:
    if not CONTRAST_NAME.match(head):
        raise InputError(f"{path}: head name {head!r} must be letters, digits, '_' or '-', starting with a letter "
                         "or digit")
    if not isinstance(query, dict):
        raise InputError(f"{path}: the query of {head!r} must be a JSON object of entity → value, got "
                         f"{_json_type(query)}")
    names, short = _entity_names()
    full: dict[str, Any] = {"datatype": "anat"}
    suffixes = {s.lower(): s for s in ANAT_SUFFIXES}
    if "suffix" not in query and head.lower() in suffixes:
        full["suffix"] = suffixes[head.lower()]
    for entity, value in query.items():
        if entity not in names:
            hint = f"; did you mean {short[entity]!r}?" if entity in short else ""
            raise InputError(f"{path}: unknown entity {entity!r} in the query of {head!r}{hint} (entities: "
                             f"{', '.join(sorted(names))})")
        full[entity] = _query_value(path, head, entity, value)
    if "suffix" not in full:
        raise InputError(f"{path}: the query of {head!r} gives no \"suffix\" and {head!r} is not an anatomical "
                         f"suffix ({', '.join(ANAT_SUFFIXES)}); add one, e.g. \"suffix\": \"T2w\"")
    return full


def _query_value(path: Path, head: str, entity: str, value: Any) -> Any:
    from bids.layout import Query

    if value is None:
        return Query.NONE
    if value == "*":
        return Query.REQUIRED
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in items):
        raise InputError(f"{path}: {head}.{entity}: expected a string, an integer, a non-empty list of them, null "
                         f"or \"*\", got {json.dumps(value)}")
    return value


def _entity_names() -> tuple[set[str], dict[str, str]]:
    """pybids' entity names, and its short names in file names (``acq``) → full names."""
    from bids.layout.models import Config

    entities = Config.load("bids").entities
    short = {}
    for name, entity in entities.items():
        m = re.search(r"([A-Za-z]+)-\(", entity.pattern or "")
        if m and m[1] != name:
            short[m[1]] = name
    return set(entities), short


def _json_type(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _datatypes(heads: dict[str, dict[str, Any]] | None) -> set[str] | None:
    """The datatype folders to index: ``anat``, and any a filter query names (None: all)."""
    wanted = {"anat"}
    for query in (heads or {}).values():
        value = query.get("datatype", "anat")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return None  # Query.REQUIRED and the like: every datatype
        wanted.update(values)
    return wanted


# --- labels and indexing ---------------------------------------------------------------------


def _labels(labels: Iterable[str] | None, prefix: str) -> list[str] | None:
    """Labels without their BIDS prefix, each once, in the given order (None: none given)."""
    if isinstance(labels, str):
        labels = [labels]
    unique = list(dict.fromkeys(lab[len(prefix):] if lab.startswith(prefix) else lab for lab in labels or ()))
    return unique or None


def _listing(labels: Iterable[str]) -> str:
    labels = list(labels)
    shown = ", ".join(labels[:_LISTED])
    return shown + (f", … ({len(labels)} in all)" if len(labels) > _LISTED else "") if labels else "none"


def _participants(root: Path, wanted: list[str] | None) -> list[str]:
    """The participants to select, sorted: ``wanted``, each checked against the dataset's
    ``sub-*`` folders, or all of them."""
    existing = sorted(entry.name[len("sub-"):] for entry in os.scandir(root)
                      if entry.name.startswith("sub-") and entry.is_dir())
    if wanted is None:
        return existing
    unknown = [lab for lab in wanted if lab not in existing]
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise InputError(f"--participant-label: no participant{s} {', '.join(unknown)} in {root} "
                         f"(participants: {_listing(existing)})")
    return sorted(wanted)


def _index(root: Path, subjects: list[str] | None, datatypes: set[str] | None) -> "BIDSLayout":
    """The pybids index of ``root`` (see the module's description); ``subjects``: only their folders."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    ignore = [_IGNORED_FOLDERS]
    if subjects is not None:
        ignore.append(re.compile(r"^/sub-(?!(?:%s)(?:/|$))" % "|".join(map(re.escape, subjects))))
    if datatypes is not None:  # a datatype folder is lower-case letters; files have '_' and '.'
        kept = "|".join(map(re.escape, sorted(datatypes)))
        ignore.append(re.compile(r"^/sub-[^/]+/(?:ses-[^/]+/)?(?!(?:%s)$|ses-)[a-z]+$" % kept))
    try:
        indexer = BIDSLayoutIndexer(validate=True, ignore=ignore, index_metadata=True)
        return BIDSLayout(root, validate=False, derivatives=False, indexer=indexer)
    except Exception as exc:  # pybids raises many kinds (OSError, ValueError, its own, SQLAlchemy's)
        raise InputError(_pybids_message(root, exc)) from None


def _pybids_message(root: Path, exc: Exception) -> str:
    """One line for a pybids failure, naming the file when pybids names one."""
    text = one_line(exc)
    m = re.search(r"filename='([^']+)'", text)
    if m and isinstance(exc.__cause__, ValueError):
        return f"{m[1]}: not valid JSON ({one_line(exc.__cause__)})"
    if m:
        return f"{m[1]}: pybids cannot read it ({text})"
    return f"{root}: pybids cannot index the dataset ({text})"


class _Found(NamedTuple):
    """A file a query found, with the entities of its name."""

    path: str
    entities: dict[str, Any]
    file: "BIDSFile"

    @property
    def suffix(self) -> str:
        return str(self.entities.get("suffix"))


def _query(layout: "BIDSLayout", query: dict[str, Any]) -> list[_Found]:
    """The NIfTI files ``query`` matches."""
    try:
        files = layout.get(return_type="object", **query)
        # parsed from the name: much quicker than asking the index for each file's entities
        return [_Found(f.path, layout.parse_file_entities(f.path), f) for f in files
                if f.path.lower().endswith(NIFTI)]
    except Exception as exc:  # pybids' own, or ValueError for a bad filter
        raise InputError(_pybids_message(Path(layout.root), exc)) from None


def _group(files: list[_Found]) -> dict[tuple[str, str | None], list[_Found]]:
    """Files by (subject, session), each list sorted by path."""
    groups: dict[tuple[str, str | None], list[_Found]] = {}
    for f in sorted(files, key=lambda f: f.path):
        session = f.entities.get("session")
        groups.setdefault((str(f.entities["subject"]), str(session) if session is not None else None), []).append(f)
    return groups


def _subject_sessions(layout: "BIDSLayout", root: Path, subjects: list[str], sessions: list[str] | None,
                      groups: list[dict[tuple[str, str | None], list]]) -> list[tuple[str, str | None]]:
    """(subject, session) of every selection, sorted (see the module's description)."""
    found = {key for g in groups for key in g}
    if sessions is None:
        keys = []
        for sub in subjects:
            own = sorted(ses for s, ses in found if s == sub and ses is not None)
            keys += [(sub, ses) for ses in own] or [(sub, None)]
        return keys
    existing = {sub: set(map(str, layout.get_sessions(subject=sub))) for sub in subjects}
    known = sorted(set().union(*existing.values()))
    unknown = [ses for ses in sessions if ses not in known]
    if not known:
        raise InputError(f"--session-label: {root} has no sessions")
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise InputError(f"--session-label: no session{s} {', '.join(unknown)} in {root} (sessions: {_listing(known)})")
    return [(sub, ses) for sub in subjects for ses in sorted(sessions) if ses in existing[sub]]


# --- selections ------------------------------------------------------------------------------


def _default_selection(subject: str, session: str | None, files: list[_Found]) -> Selection:
    """The default rule's selection from the anatomical NIfTI files of one subject and session."""
    selection = Selection(subject, session)
    order = {suffix: i for i, suffix in enumerate(ANAT_SUFFIXES)}
    for f in sorted(files, key=lambda f: (order.get(f.suffix, len(order)), default_contrast(f.suffix, f.entities),
                                          f.path)):
        suffix, part = f.suffix, f.entities.get("part")
        if suffix not in order:
            selection.excluded.append((f.path, f"suffix {suffix} is not an anatomical contrast inrsr fits "
                                               f"({', '.join(ANAT_SUFFIXES)})"))
            continue
        if part in _NOT_MAGNITUDE:
            selection.excluded.append((f.path, f"the {part} part of a complex image: inrsr fits magnitude images"))
            continue
        run, metadata, reason = _inspect(f, default_contrast(suffix, f.entities))
        reason = reason or _not_thick(run, metadata)  # type: ignore[arg-type]
        if run is None or reason:
            selection.excluded.append((f.path, str(reason)))
        else:
            selection.runs.append(run)
    return selection


def default_contrast(suffix: str, entities: dict[str, Any]) -> str:
    """The head name of a run under the default rule: its suffix in lower case, with its
    :data:`CONTRAST_ENTITIES` (``t1w``, ``t1w_ce-gad``, ``t2w_echo-2``)."""
    extra = "".join(f"_{key}-{re.sub(r'[^A-Za-z0-9]', '', str(entities[name]))}" for name, key in CONTRAST_ENTITIES
                    if entities.get(name) is not None)
    return suffix.lower() + extra


def _filtered_selection(subject: str, session: str | None, matched: dict[str, dict], anat: list[_Found],
                        filter_file: Path) -> Selection:
    """The filter file's selection for one subject and session (see the module's description)."""
    selection = Selection(subject, session)
    chosen: dict[str, str] = {}
    for head, groups in matched.items():
        files = groups.get((subject, session), [])
        if not files:
            selection.notes.append(f"{filter_file}: the query of {head!r} matches no run of {selection.label}")
        for f in files:
            if f.path in chosen:
                raise InputError(f"{filter_file}: {f.path} is selected by both {chosen[f.path]!r} and {head!r}")
            chosen[f.path] = head
            run, metadata, reason = _inspect(f, head)
            if run is None:
                selection.excluded.append((f.path, str(reason)))
                continue
            thin = _not_thick(run, metadata)
            if thin:
                warnings.warn(f"{f.path}: {thin} (selected for {head!r} by {filter_file}: it is fitted all the same)",
                              InputWarning, stacklevel=4)
            selection.runs.append(run)
        suffixes = sorted({run.suffix for run in selection.runs if run.contrast == head})
        if len(suffixes) > 1:
            warnings.warn(f"{filter_file}: {head!r} selects runs of several suffixes ({', '.join(suffixes)}) for "
                          f"{selection.label}; they train one output", InputWarning, stacklevel=3)
    selection.excluded += [(f.path, "excluded by the filter file") for f in anat if f.path not in chosen]
    return selection


def _inspect(f: _Found, contrast: str) -> tuple[Run | None, dict[str, Any], str | None]:
    """The run of one file, its sidecar metadata, and why it cannot be a stack (None if it can)."""
    import nibabel as nib

    from inrsr.geometry import voxel_sizes_mm

    try:
        img = nib.load(f.path)  # reads the header only
        shape, affine = tuple(int(n) for n in img.shape), img.affine
    except Exception as exc:  # nibabel raises many kinds for damaged or missing files
        reason = f"cannot read its NIfTI header ({one_line(exc)})"
        warnings.warn(f"{f.path}: {reason}; it is left out", InputWarning, stacklevel=4)
        return None, {}, reason
    if len(shape) < 3 or (len(shape) > 3 and math.prod(shape[3:]) > 1):
        return None, {}, f"{len(shape)}D image ({'×'.join(map(str, shape))} voxels): a stack is one 3D volume"
    try:
        metadata = f.file.get_metadata()
    except Exception as exc:  # pybids' own
        raise InputError(_pybids_message(Path(f.path), exc)) from None
    entities = {k: str(v) for k, v in f.entities.items() if k not in _IDENTITY}
    spacing = tuple(round(float(s), 6) for s in voxel_sizes_mm(affine))
    run = Run(path=f.path, contrast=contrast, suffix=f.suffix, entities=entities,
              spacing_mm=spacing, thickness_mm=_thickness(f.path, metadata))  # type: ignore[arg-type]
    return run, metadata, None


def _thickness(path: str, metadata: dict[str, Any]) -> float | None:
    value = metadata.get("SliceThickness")
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise InputError(f"{path}: SliceThickness {json.dumps(value)} in its sidecar is not a positive number of mm")


def _not_thick(run: Run, metadata: dict[str, Any]) -> str | None:
    """Why ``run`` is not a thick 2D stack (None when it is)."""
    acquisition = metadata.get("MRAcquisitionType")
    if max(run.spacing_mm) >= THICK_RATIO * min(run.spacing_mm) or acquisition == "2D":
        return None
    kind = "isotropic" if max(run.spacing_mm) < 1.05 * min(run.spacing_mm) else "near-isotropic"
    what = f"{kind} 3D run" if acquisition == "3D" else f"{kind} run"
    return f"{what} ({'×'.join(f'{s:.3g}' for s in run.spacing_mm)} mm): nothing to super-resolve"
