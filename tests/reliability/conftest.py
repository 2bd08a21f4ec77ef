"""Harness of the reliability suite: the ``inrsr`` CLI run as a hostile, careless user would.

Every case runs ``python -m inrsr ...`` as a child process (never in-process: a crash, a signal,
a leaked temporary file or a memory blow-up must be seen as the user sees it) inside a sandbox
folder, and the harness records

* the exit status (negative: killed by that signal), stdout and stderr;
* the child's own peak RSS (``os.wait4`` → ``ru_maxrss``, KiB on Linux); a watchdog kills the
  child as soon as its RSS passes the case's bound or its wall time passes the case's timeout,
  so a memory bomb ends the test instead of the machine;
* a snapshot of every file of the sandbox before and after (sha256, mtime, mode; symbolic links
  by target; never followed), hence what was created, modified or removed, and which of the
  tool's temporary files (``.<final name>.<something>.tmp<suffix>``, ``.inrsr*``) were left.

Environment:

``INRSR_RELIABILITY_SRC``
    folder put first on the child's ``PYTHONPATH`` (default: this repository), e.g. a clean
    clone of an older commit to record its behaviour.
``INRSR_RELIABILITY_RECORD``
    a JSON-lines file to which every run's observation and every case's expected behaviour is
    appended (``cases_table.py`` turns it into the table of ``docs/reliability-cases.md``).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import nibabel as nib
import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SRC = Path(os.environ.get("INRSR_RELIABILITY_SRC", str(REPO))).resolve()
RECORD = os.environ.get("INRSR_RELIABILITY_RECORD")

# Every fit of the suite: a few seconds each (most of it is importing torch).
FAST = ["--preset", "fast", "--max-steps", "20", "--threads", "1", "--quiet"]

MB = 1024  # ru_maxrss and VmRSS are in KiB
# Peak RSS bounds (MiB). A case that fails before fitting must not need more than what importing
# torch costs; a fit of the tiny phantom stays well below FIT_RSS_MB.
ERROR_RSS_MB = 1024
FIT_RSS_MB = 2048
ERROR_TIMEOUT_S = 90
FIT_TIMEOUT_S = 180

# Linux capabilities that let root ignore permission bits, dropped from the child's bounding set
# (so that they are gone after exec too) when a case must see permissions as a user does.
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24

TEMP_RE = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)*$")
ERROR_RE = re.compile(r"^inrsr: error: ")
CLICK_ERROR_RE = re.compile(r"^Error: ")
WARNING_RE = re.compile(r"^inrsr: warning: ")
# a Python warning printed raw (``file.py:12: UserWarning: ...``), or passed through the CLI's
# warning printer although it is not about the input (``inrsr: RuntimeWarning: ...``)
RAW_WARNING_RE = re.compile(r"\b[A-Z]\w*Warning: ")
CLICK_USAGE_RE = re.compile(r"^(Usage: |Try '|Error: )")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "reliability: the CLI run as a hostile, careless user would (tests/reliability)"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.reliability)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With INRSR_RELIABILITY_RECORD, each case's outcome goes beside its observations."""
    outcome = yield
    rep = outcome.get_result()
    if RECORD and HERE in Path(str(item.path)).resolve().parents:
        if rep.when == "call" or (rep.when == "setup" and not rep.passed):
            _record({"node": item.nodeid.split("::", 1)[-1], "kind": "outcome", "when": rep.when,
                     "outcome": "skipped" if rep.skipped else rep.outcome, "seconds": round(rep.duration, 1)})


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

def is_temp_name(name: str) -> bool:
    """A temporary file of the tool: ``.<final name>.<something>.tmp<suffix>`` or ``.inrsr*``."""
    return name.startswith(".inrsr") or bool(TEMP_RE.match(name))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (relative path → kind, content hash or link target, mtime,
    mode), walked without following symbolic links."""
    snap: dict[str, tuple] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                snap[rel] = ("link", os.readlink(full), 0, 0)
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = ("dir", "", 0, stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                try:
                    digest = _sha256(full)
                except OSError as exc:  # unreadable for us too
                    digest = f"unreadable:{exc.errno}"
                snap[rel] = ("file", digest, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
            else:
                snap[rel] = ("other", "", st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return snap


@dataclasses.dataclass
class Changes:
    created: list[str]
    modified: list[str]
    removed: list[str]

    @classmethod
    def between(cls, before: dict, after: dict) -> "Changes":
        created = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        # a folder's mode and mtime change whenever a file is added; folders count only as created/removed
        modified = sorted(k for k in set(before) & set(after)
                          if before[k] != after[k] and not (before[k][0] == after[k][0] == "dir"))
        return cls(created, modified, removed)

    def all(self) -> list[str]:
        return self.created + self.modified + self.removed

    def describe(self) -> str:
        parts = [f"{label}: {', '.join(v)}" for label, v in
                 (("created", self.created), ("modified", self.modified), ("removed", self.removed)) if v]
        return "; ".join(parts) or "nothing"


def _within(rel: str, places: Iterable[str]) -> bool:
    for place in places:
        place = place.rstrip("/")
        if rel == place or rel.startswith(place + "/"):
            return True
    return False


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, header: nib.Nifti1Header | None = None) -> Path:
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64), header)
    nib.save(img, str(path))
    return Path(path)


# --------------------------------------------------------------------------------------------
# running the CLI
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    """What one run of the CLI did."""

    args: list[str]
    cwd: str
    rc: int | None
    stdout: str
    stderr: str
    maxrss_kb: int
    wall_s: float
    killed: str | None  # "timeout" or "rss" when the watchdog ended the child
    rss_bound_mb: int
    changes: Changes | None = None
    new_temps: list[str] = dataclasses.field(default_factory=list)
    root: Path | None = None

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.lines if ERROR_RE.match(ln)]

    @property
    def click_error_lines(self) -> list[str]:
        return [ln for ln in self.lines if CLICK_ERROR_RE.match(ln)]

    @property
    def warning_lines(self) -> list[str]:
        return [ln for ln in self.lines if WARNING_RE.match(ln)]

    @property
    def raw_warning_lines(self) -> list[str]:
        return [ln for ln in self.lines if RAW_WARNING_RE.search(ln) and not WARNING_RE.match(ln)]

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr or "Traceback" in self.stdout

    @property
    def maxrss_mb(self) -> float:
        return self.maxrss_kb / MB

    def show(self) -> str:
        """Everything about the run, for assertion messages."""
        tail = self.stderr if len(self.stderr) < 4000 else "…" + self.stderr[-4000:]
        return (f"\n$ inrsr {' '.join(self.args)}   (cwd {self.cwd})\nexit {self.rc}"
                f"{' KILLED by watchdog: ' + self.killed if self.killed else ''}; "
                f"peak RSS {self.maxrss_mb:.0f} MiB (bound {self.rss_bound_mb}); {self.wall_s:.1f} s\n"
                f"files: {self.changes.describe() if self.changes else '?'}; new temp files: {self.new_temps}\n"
                f"--- stderr ---\n{tail}\n--- stdout (head) ---\n{self.stdout[:800]}")

    # -- the assertions every case makes -----------------------------------------------------

    def _common(self) -> None:
        assert self.killed is None, f"the watchdog killed the run ({self.killed}){self.show()}"
        assert not self.traceback, f"a traceback was printed{self.show()}"
        assert self.maxrss_kb <= self.rss_bound_mb * MB, \
            f"peak RSS {self.maxrss_mb:.0f} MiB above the bound {self.rss_bound_mb} MiB{self.show()}"
        assert not self.new_temps, f"temporary files left behind: {self.new_temps}{self.show()}"
        assert not self.raw_warning_lines, f"raw Python warnings on stderr: {self.raw_warning_lines}{self.show()}"

    def expect_error(self, *keywords, rc: int = 2, allow_dirs: Sequence[str] = (), click_ok: bool = False,
                     max_s: float | None = None) -> str:
        """``rc``, exactly one ``inrsr: error:`` line (or, with ``click_ok``, click's usage-error
        form: exactly one ``Error:`` line) containing every keyword (case-insensitive; a tuple
        means any of its words), no traceback, nothing written (only the empty folders in
        ``allow_dirs`` may appear), no temporary file, RSS within bound. Returns the line."""
        self._common()
        assert self.rc == rc, f"exit status {self.rc}, expected {rc}{self.show()}"
        lines = self.error_lines
        if click_ok and not lines:
            lines = self.click_error_lines
            assert len(lines) == 1, f"expected one 'Error:' line from click, got {lines}{self.show()}"
        else:
            assert len(lines) == 1, f"expected exactly one 'inrsr: error:' line, got {len(lines)}{self.show()}"
            assert not self.click_error_lines, f"an error printed twice{self.show()}"
        line = lines[0]
        check_keywords(line, keywords, self)
        other = [ln for ln in self.lines if ln != line and not WARNING_RE.match(ln)
                 and not (click_ok and CLICK_USAGE_RE.match(ln))]
        assert not other, f"stderr holds more than the error line: {other}{self.show()}"
        self.expect_nothing_written(allow_dirs)
        if max_s is not None:
            assert self.wall_s <= max_s, f"took {self.wall_s:.1f} s, expected at most {max_s} s{self.show()}"
        return line

    def expect_nothing_written(self, allow_dirs: Sequence[str] = ()) -> None:
        ch = self.changes
        assert ch is not None
        assert not ch.modified and not ch.removed, f"files modified or removed: {ch.describe()}{self.show()}"
        # only the (output) folders in allow_dirs may appear; any file in them is listed on its own
        stray = [p for p in ch.created if not (p in allow_dirs and self.root is not None and (self.root / p).is_dir())]
        assert not stray, f"files written although the run failed: {stray}{self.show()}"

    def expect_success(self, out: str | Sequence[str] = "out", warnings: int = 0,
                       may_remove: Sequence[str] = ()) -> None:
        """Exit 0, no error line, ``warnings`` warning lines; files created or modified only under
        ``out`` (one or several places), nothing removed (but ``may_remove``), no temporary file,
        RSS within bound."""
        self._common()
        assert self.rc == 0, f"exit status {self.rc}, expected 0{self.show()}"
        assert not self.error_lines and not self.click_error_lines, f"error line on success{self.show()}"
        assert len(self.warning_lines) == warnings, \
            f"expected {warnings} 'inrsr: warning:' line(s), got {self.warning_lines}{self.show()}"
        places = [out] if isinstance(out, str) else list(out)
        ch = self.changes
        assert ch is not None
        outside = [p for p in ch.created + ch.modified if not _within(p, places)]
        assert not outside, f"files written outside {places}: {outside}{self.show()}"
        removed = [p for p in ch.removed if p not in may_remove]
        assert not removed, f"files removed: {removed}{self.show()}"

    def expect_warning(self, name: str, out: str | Sequence[str] = "out") -> str:
        """Exit 0 with exactly one ``inrsr: warning:`` line, which names ``name``."""
        self.expect_success(out, warnings=1)
        line = self.warning_lines[0]
        assert name in line, f"the warning does not name {name!r}: {line!r}{self.show()}"
        return line


def check_keywords(line: str, keywords: Sequence, res: Result | None = None) -> None:
    low = line.lower()
    for kw in keywords:
        alternatives = kw if isinstance(kw, tuple) else (kw,)
        assert any(a.lower() in low for a in alternatives), \
            f"the message {line!r} lacks {' or '.join(map(repr, alternatives))}{res.show() if res else ''}"


def _vmrss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for ln in fh:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


class Running:
    """A CLI child process under the watchdog (timeout, RSS bound)."""

    def __init__(self, args: Sequence[str], cwd: Path, logs: Path, timeout: float, rss_mb: int,
                 env: dict | None = None, umask: int | None = 0o022, honour_permissions: bool = False):
        self.args = [str(a) for a in args]
        self.cwd = Path(cwd)
        self.timeout, self.rss_mb = timeout, rss_mb
        logs.mkdir(parents=True, exist_ok=True)
        fd, self.out_path = tempfile.mkstemp(dir=logs, prefix="stdout-")
        os.close(fd)
        fd, self.err_path = tempfile.mkstemp(dir=logs, prefix="stderr-")
        os.close(fd)
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(SRC) + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
        full_env["PYTHONDONTWRITEBYTECODE"] = "1"
        full_env.pop("INRSR_RELIABILITY_RECORD", None)
        full_env.update(env or {})

        def preexec() -> None:
            if umask is not None:
                os.umask(umask)
            if honour_permissions:
                drop_dac_capabilities()

        self.t0 = time.monotonic()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "inrsr", *self.args], cwd=str(cwd), env=full_env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=preexec)
        self.pid = self.proc.pid
        self.status: int | None = None
        self.rusage = None
        self.killed: str | None = None
        self.peak_seen = 0

    def _reap(self, block: bool) -> bool:
        if self.status is not None:
            return True
        pid, status, rusage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        self.status, self.rusage = status, rusage
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        return True

    def _watch(self) -> None:
        rss = _vmrss_kb(self.pid)
        self.peak_seen = max(self.peak_seen, rss)
        if rss > self.rss_mb * MB:
            self.killed = f"rss {rss // MB} MiB > {self.rss_mb} MiB"
        elif time.monotonic() - self.t0 > self.timeout:
            self.killed = f"timeout {self.timeout:.0f} s"
        if self.killed:
            os.kill(self.pid, signal.SIGKILL)
            self._reap(block=True)

    def alive(self) -> bool:
        if self._reap(block=False):
            return False
        self._watch()
        return self.status is None

    def wait_until(self, cond: Callable[[], bool], limit_s: float, every: float = 0.02) -> bool:
        """Poll ``cond`` while the child runs; True when it held (child still alive)."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if not self.alive():
                return False
            if cond():
                return True
            time.sleep(every)
        return False

    def send(self, sig: int) -> None:
        if self.status is None:
            os.kill(self.pid, sig)

    def wait(self) -> Result:
        while self.alive():
            time.sleep(0.02)
        wall = time.monotonic() - self.t0
        rc = os.waitstatus_to_exitcode(self.status)
        maxrss = max(int(self.rusage.ru_maxrss), self.peak_seen) if self.rusage is not None else self.peak_seen
        out = Path(self.out_path).read_text(errors="replace")
        err = Path(self.err_path).read_text(errors="replace")
        return Result(self.args, str(self.cwd), rc, out, err, maxrss, wall, self.killed, self.rss_mb)


def _record(obj: dict) -> None:
    if RECORD:
        with open(RECORD, "a") as fh:
            fh.write(json.dumps(obj, default=str) + "\n")


class Case:
    """One test's sandbox and runs. ``root``: the sandbox (``tmp_path/sb``); ``run`` snapshots it
    before and after every run and records the observation."""

    def __init__(self, node: str | None, tmp_path: Path, inputs: "Inputs"):
        self.node = node
        self.tmp = tmp_path
        self.root = tmp_path / "sb"
        self.root.mkdir()
        self.logs = tmp_path / "logs"
        self.inputs = inputs

    # -- sandbox -------------------------------------------------------------------------------

    def put(self, name: str, dest: str | None = None) -> Path:
        """Copy one of the suite's input stacks (``t1ax``, ``t2cor``, ``t2sag``; mtime kept)
        into the sandbox as ``dest`` (default ``<name>.nii.gz``)."""
        target = self.root / (dest or f"{name}.nii.gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.inputs.paths[name], target)
        return target

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def cleanup(self) -> None:
        """Give back the permissions a case took away, so that pytest can remove the sandbox."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                if not os.path.islink(full):
                    try:
                        os.chmod(full, 0o755 if os.path.isdir(full) else 0o644)
                    except OSError:
                        pass

    # -- runs ----------------------------------------------------------------------------------

    def expect(self, text: str) -> None:
        """The behaviour this case expects (recorded for the table of docs/reliability-cases.md)."""
        _record({"node": self.node, "kind": "expect", "text": text})

    def start(self, args: Sequence, cwd: Path | None = None, timeout: float = ERROR_TIMEOUT_S,
              rss_mb: int = ERROR_RSS_MB, **kw) -> Running:
        return Running(args, cwd or self.root, self.logs, timeout, rss_mb, **kw)

    def finish(self, running: Running, before: dict, label: str = "") -> Result:
        res = running.wait()
        self.observe(res, before, label)
        return res

    def observe(self, res: Result, before: dict, label: str = "") -> Result:
        after = snapshot(self.root)
        res.root = self.root
        res.changes = Changes.between(before, after)
        res.new_temps = sorted(p for p in res.changes.created if is_temp_name(os.path.basename(p)))
        self.record(res, label)
        return res

    def record(self, res: Result, label: str = "") -> None:
        if self.node is None:  # a fixture's run: the tests that use it record it
            return
        first = next((ln for ln in res.lines if not ln.startswith(("Usage:", "Try "))), "")
        _record({
            "node": self.node, "kind": "run", "label": label, "args": res.args, "rc": res.rc,
            "killed": res.killed, "first_stderr": first[:300], "error_lines": len(res.error_lines),
            "warning_lines": len(res.warning_lines), "traceback": res.traceback,
            "created": res.changes.created if res.changes else None,
            "modified": res.changes.modified if res.changes else None,
            "removed": res.changes.removed if res.changes else None,
            "temps": res.new_temps, "maxrss_mb": round(res.maxrss_mb), "wall_s": round(res.wall_s, 1),
        })

    def run(self, args: Sequence, cwd: Path | None = None, label: str = "", timeout: float = ERROR_TIMEOUT_S,
            rss_mb: int = ERROR_RSS_MB, **kw) -> Result:
        before = snapshot(self.root)
        return self.finish(self.start(args, cwd, timeout, rss_mb, **kw), before, label)

    def fit(self, args: Sequence, label: str = "", **kw) -> Result:
        """``inrsr fit ARGS`` with the fast options (ARGS may override them: click keeps the last)."""
        kw.setdefault("timeout", FIT_TIMEOUT_S)
        kw.setdefault("rss_mb", FIT_RSS_MB)
        return self.run(["fit", *FAST, *args], label=label, **kw)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Inputs:
    dir: Path
    paths: dict[str, Path]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]  # name → (data, affine)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Inputs:
    """Three thick phantom stacks (as tests/jobs/conftest.py makes them) and the isotropic T1
    phantom they come from (``hr``), written once."""
    from inrsr.acquisition.phantom import head_phantom
    from inrsr.acquisition.simulate import simulate_stack

    d = tmp_path_factory.mktemp("inputs")
    vols, aff, _ = head_phantom((40, 48, 40), seed=4)
    paths, arrays = {}, {}
    for name, contrast, axis in (("t1ax", "t1", 2), ("t2cor", "t2", 1), ("t2sag", "t2", 0)):
        data, affine = simulate_stack(vols[contrast], aff, axis, 4, "box")
        arrays[name] = (np.asarray(data, dtype=np.float32), np.asarray(affine, dtype=np.float64))
        paths[name] = save_nifti(d / f"{name}.nii.gz", *arrays[name])
    arrays["hr"] = (np.asarray(vols["t1"], dtype=np.float32), np.asarray(aff, dtype=np.float64))
    paths["hr"] = save_nifti(d / "hr.nii.gz", *arrays["hr"])  # the isotropic 1 mm phantom (simulate's input)
    for p in paths.values():
        os.chmod(p, 0o644)
    return Inputs(d, paths, arrays)


@pytest.fixture
def case(request, tmp_path, inputs) -> Case:
    c = Case(request.node.nodeid.split("::", 1)[-1], tmp_path, inputs)
    yield c
    c.cleanup()


@dataclasses.dataclass
class BaseFit:
    dir: Path          # holds t1ax.nii.gz, t2cor.nii.gz and out/
    model: Path        # out/model.pt
    result: Result


@pytest.fixture(scope="session")
def base_fit(tmp_path_factory, inputs) -> BaseFit:
    """One ordinary fit (t1 axial + t2 coronal, relative paths, umask 022) that sample, check and
    the crafted model files start from. Never written to by the tests (they copy what they need)."""
    top = tmp_path_factory.mktemp("base")
    d = top / "study"
    d.mkdir()
    for name in ("t1ax", "t2cor"):
        shutil.copy2(inputs.paths[name], d / f"{name}.nii.gz")
    c = Case(None, top, inputs)
    c.root = d
    res = c.fit(["--t1", "t1ax.nii.gz", "--t2", "t2cor.nii.gz", "-o", "out"], label="base fit")
    if res.rc != 0 or not (d / "out" / "model.pt").is_file():
        pytest.fail(f"the base fit failed{res.show()}", pytrace=False)
    os.chmod(top, 0o755)
    return BaseFit(d, d / "out" / "model.pt", res)


def gzip_file(src: Path, dest: Path) -> Path:
    with open(src, "rb") as fi, gzip.open(dest, "wb") as fo:
        fo.write(fi.read())
    return dest


def drop_dac_capabilities() -> None:
    """In a child about to exec: as root, lose the capabilities that bypass permission bits (a
    no-op for other users, who never had them)."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


_PERMISSIONS: list[bool] = []


def permissions_testable() -> bool:
    """Whether a child can be made to honour permission bits (always, unless we are root in a
    place that does not let us drop capabilities)."""
    if not _PERMISSIONS:
        probe = tempfile.NamedTemporaryFile(prefix="inrsr-perm-probe-")
        os.chmod(probe.name, 0)
        try:
            rc = subprocess.run([sys.executable, "-c", f"open({probe.name!r}).close()"], preexec_fn=drop_dac_capabilities,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        except (OSError, subprocess.SubprocessError):
            rc = 0
        finally:
            probe.close()
        _PERMISSIONS.append(rc != 0)
    return _PERMISSIONS[0]


def craft_model(source: Path, dest: Path, mutate: Callable[[dict], None]) -> Path:
    """A model file made from a real one: loaded with ``weights_only``, changed by ``mutate``,
    saved again with ``torch.save``."""
    import torch

    payload = torch.load(source, map_location="cpu", weights_only=True)
    mutate(payload)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dest)
    return dest


def rename_contrast(payload: dict, old: str, new: str) -> None:
    """Rename a contrast everywhere a model file names it."""
    payload["contrasts"] = [new if c == old else c for c in payload["contrasts"]]
    payload["scales"] = {(new if c == old else c): v for c, v in payload["scales"].items()}
    for s in payload.get("stacks", []):
        if s.get("contrast") == old:
            s["contrast"] = new


def write_patched(path: Path, img: nib.Nifti1Image, patches: dict[int, bytes]) -> Path:
    """Write ``img`` as a single-file NIfTI with raw bytes of its header overwritten
    (``{offset: bytes}``, e.g. ``{88: np.float32(0).tobytes()}`` for ``pixdim[3]``): headers that
    nibabel itself would never write. Gzipped when ``path`` ends in ``.gz``."""
    block = bytearray(img.to_bytes())
    for offset, raw in patches.items():
        block[offset:offset + len(raw)] = raw
    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(bytes(block))
    else:
        path.write_bytes(bytes(block))
    return path
