"""Files on disk: atomic writes (with the cleanup of what an interrupted one left), input and
output path checks, the one "output exists" refusal, the refusal to write over an input, the
output-folder lock, and the BIDS JSON sidecar beside an image."""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from inrsr.errors import InputError, one_line

__all__ = [
    "atomic_path", "temporary_name", "remove_stale_temporaries", "write_text", "write_json", "write_csv",
    "check_input_file", "check_writable", "refuse_existing", "refuse_inputs", "check_output_folder",
    "check_output_file", "OutputLock", "sidecar_path", "with_sidecars", "write_sidecar", "write_thickness_sidecar",
    "read_json", "sidecar_thickness",
]

# A temporary file of :func:`atomic_path`: ``.<final name>.<pid>.<random>.tmp<suffix>``.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp(\.nii\.gz|\.[A-Za-z0-9]+)?$")
LOCK_FILE = ".inrsr.lock"


def _umask() -> int:
    """This process's file-creation mask (read without changing it where Linux allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def temporary_name(path: str | os.PathLike) -> tuple[str, str]:
    """The prefix and suffix of :func:`atomic_path`'s temporary files for ``path`` (the suffix
    keeps ``path``'s, so that writers that choose a format from the name behave the same)."""
    p = Path(path)
    suffix = ".nii.gz" if p.name.lower().endswith(".nii.gz") else p.suffix
    return f".{p.name}.{os.getpid()}.", ".tmp" + suffix


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` left in ``folder`` (only those of
    ``name`` when given) in processes that no longer run (killed during a write). Returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = TEMPORARY.match(entry.name)
        if not m or (name is not None and m["name"] != name) or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name (see :func:`temporary_name`) carries this process's id, so that the files
    of a killed write are recognised and removed by the next write of ``path``. On failure or
    interruption the temporary file is removed and ``path`` is left untouched, so no
    half-written output ever carries the final name. The final file gets the permissions of
    the user's umask (as ``open`` would give it), not the private mode of temporary files.
    """
    p = Path(path)
    remove_stale_temporaries(p.parent, p.name)
    prefix, suffix = temporary_name(p)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: dict) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy scalars as floats)."""
    return write_text(path, json.dumps(obj, indent=2, default=float))


def write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the first row's keys) as CSV atomically; no rows: an empty file."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        if rows:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return Path(path)


def check_input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """``path`` as an existing, readable regular file; :class:`InputError` saying what is wrong
    (missing, a dangling or looping symbolic link, a folder, unreadable) otherwise."""
    p = Path(path)
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{p}: {what} is a symbolic link that loops") from None
        if exc.errno == errno.ENOENT and p.is_symlink():
            raise InputError(f"{p}: {what} is a dangling symbolic link (to {os.readlink(p)})") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise InputError(f"{p}: file not found") from None
        raise InputError(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: cannot read the {what} (permission denied)")
    return p


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check that files can be written in it."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".inrsr-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"{d}: output folder is not writable ({exc.strerror or exc})") from None
    return d


def refuse_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None]) -> None:
    """Raise :class:`InputError` when one of ``outputs`` is one of ``inputs`` (the same file,
    however named): a run never writes over what it reads, ``--overwrite`` or not."""
    read = {}
    for q in inputs:
        if q is not None:
            with contextlib.suppress(OSError, RuntimeError):
                read[Path(q).resolve()] = q
    for p in outputs:
        with contextlib.suppress(OSError, RuntimeError):
            if Path(p).resolve() in read:
                raise InputError(f"{p}: would overwrite the input {read[Path(p).resolve()]}; choose another output")


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """Raise :class:`InputError` naming the first of ``paths`` that exists, unless ``overwrite``."""
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise InputError(f"{p}: output exists (use --overwrite to replace it)")


def _check_link(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise InputError(f"{path}: output is a dangling symbolic link (to {os.readlink(path)})")


def check_output_folder(path: str | os.PathLike) -> Path:
    """``path`` as an output folder: :class:`InputError` when it exists and is not a folder, or
    is a dangling symbolic link."""
    out = Path(path)
    _check_link(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    return out


def check_output_file(path: str | os.PathLike, overwrite: bool, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as one output file: refused when it is a folder or a dangling symbolic link,
    when it exists (unless ``overwrite``), when its name does not end in one of ``suffixes`` (any
    when empty), or when its folder does not exist or is not writable."""
    p = Path(path)
    _check_link(p)
    if p.is_dir():
        raise InputError(f"{p}: output is a folder, expected a file name")
    refuse_existing([p], overwrite)
    if suffixes and not p.name.lower().endswith(suffixes):
        raise InputError(f"{p}: output name must end in {' or '.join(suffixes)}")
    if not p.parent.is_dir():
        raise InputError(f"{p.parent}: output folder does not exist")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise InputError(f"{p.parent}: output folder is not writable")
    return p


class OutputLock:
    """An exclusive lock on an output folder for the length of a run (``with OutputLock(out):``),
    so that two runs never write into one folder: the second is refused at once, naming the
    first's process. The lock is an advisory ``flock`` on ``.inrsr.lock`` in the folder (created
    with it), released by the kernel if the process dies; the file is removed on release."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        check_writable(self.folder)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise InputError(f"{self.folder}: another inrsr run (process {other}) is writing into this "
                                 "folder; wait for it or choose another output") from None
            try:  # the file may have been removed by the previous holder after we opened it
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        remove_stale_temporaries(self.folder)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = None


def sidecar_path(path: str | os.PathLike) -> Path:
    """The BIDS JSON sidecar beside a ``.nii``/``.nii.gz`` image: the same name ending in ``.json``."""
    p = Path(path)
    name = p.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]
    return p.with_name(stem + ".json")


def with_sidecars(paths: Iterable[str | os.PathLike | None]) -> list[Path]:
    """Each of ``paths`` (``None`` skipped) followed by its JSON sidecar when it is a NIfTI name:
    the files a run reads (an input's sidecar is read for its ``SliceThickness``) or writes."""
    listed: list[Path] = []
    for p in paths:
        if p is None:
            continue
        listed.append(Path(p))
        if str(p).lower().endswith((".nii", ".nii.gz")):
            listed.append(sidecar_path(p))
    return listed


def write_sidecar(path: str | os.PathLike, content: dict) -> Path:
    """Write ``content`` as the JSON sidecar of the image at ``path`` (atomically); returns the
    sidecar's path."""
    return write_json(sidecar_path(path), content)


def write_thickness_sidecar(path: str | os.PathLike, thickness_mm: float) -> Path:
    """Write the BIDS sidecar of the image at ``path`` with its ``SliceThickness`` (mm), as a
    scanner would; :func:`inrsr.io.stack.load_stack` reads it back. Returns the sidecar's path."""
    return write_text(sidecar_path(path), json.dumps({"SliceThickness": float(thickness_mm)}) + "\n")


def read_json(path: Path, what: str = "it") -> Any:
    """The JSON value in the UTF-8 file ``path``; :class:`InputError` naming it when it cannot be
    read (``what`` names it in that message) or is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({one_line(exc)})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({one_line(exc)})") from None


def sidecar_thickness(path: Path) -> float | None:
    """Slice thickness (mm) from a BIDS JSON sidecar (``SliceThickness``) beside the image;
    ``None`` when there is no sidecar or it gives none (absent or ``null``).
    :class:`InputError` naming the sidecar when it cannot be read, is not a JSON object, or gives
    a ``SliceThickness`` that is not a positive finite number (a crafted or damaged file is not
    ignored: the fit would silently take another thickness)."""
    sidecar = sidecar_path(path)
    if not os.path.lexists(sidecar):  # a broken link is a sidecar that cannot be read
        return None
    meta = read_json(sidecar, "this sidecar")
    if not isinstance(meta, dict):
        raise InputError(f"{sidecar}: not a JSON object, so not a BIDS sidecar")
    value = meta.get("SliceThickness")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{sidecar}: SliceThickness {json.dumps(value)} is not a positive number of mm")
    return float(value)
