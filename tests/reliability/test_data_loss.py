"""Data loss: interruptions, concurrent runs, outputs that would replace inputs, stale temporary
files. Whatever happens, inputs stay byte-identical and an interrupted fit can be resumed."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.reliability.conftest import (
    FAST, FIT_RSS_MB, FIT_TIMEOUT_S, Case, Result, check_keywords, is_temp_name, snapshot,
)

FIT_OUTPUTS = ("t1.nii.gz", "t2.nii.gz", "model.pt", "config.json", "log.json", "log.csv", "mi.csv", "mi.png")
STACKS = ["--t1", "t1ax.nii.gz", "--t2", "t2cor.nii.gz"]


@dataclasses.dataclass
class Interrupted:
    folder: Path            # the sandbox the interrupted fit ran in (inputs + out/)
    pristine: Path          # a copy of it taken right after the interruption
    result: Result
    out_after: list[str]    # out/ right after the interruption
    note: str               # how the signal was timed
    args: list[str]


def _interrupt(tmp_path_factory, inputs, extra: list[str], sig: int, during: str) -> Interrupted:
    """Run a fit that saves its state every step and send ``sig`` while it fits (``during="fit"``:
    as soon as the state file appears) or renders (``during="render"``: once the state file stops
    changing, or disappears, i.e. the training loop is over)."""
    top = tmp_path_factory.mktemp(f"interrupt-{during}")
    c = Case(None, top, inputs)
    c.put("t1ax")
    c.put("t2cor")
    args = ["fit", *FAST, *STACKS, "-o", "out", "--checkpoint-every-s", "0", *extra]
    before = snapshot(c.root)
    r = c.start(args, timeout=FIT_TIMEOUT_S, rss_mb=FIT_RSS_MB)
    state = c.root / "out" / "fit_state.pt"
    seen = r.wait_until(state.exists, 120, every=0.005)
    note = "state file never appeared" if not seen else ""
    if seen and during == "render":
        last = {"mtime": None, "since": time.monotonic()}

        def loop_over() -> bool:
            try:
                m = state.stat().st_mtime_ns
            except FileNotFoundError:
                return True
            if m != last["mtime"]:
                last.update(mtime=m, since=time.monotonic())
                return False
            return time.monotonic() - last["since"] > 0.6

        seen = r.wait_until(loop_over, 120, every=0.01)
        note = note or ("" if seen else "the fit ended before the signal could be sent")
    if seen:
        r.send(sig)
        note = f"{signal.Signals(sig).name} sent while {'fitting' if during == 'fit' else 'rendering'}"
    res = c.finish(r, before)
    out = c.root / "out"
    listing = sorted(os.listdir(out)) if out.is_dir() else []
    pristine = top / "pristine"
    shutil.copytree(c.root, pristine, symlinks=True)
    return Interrupted(c.root, pristine, res, listing, note, [str(a) for a in args[1:]])


@pytest.fixture(scope="module")
def interrupted_render(tmp_path_factory, inputs) -> Interrupted:
    return _interrupt(tmp_path_factory, inputs, ["--resolution", "0.35"], signal.SIGTERM, "render")


@pytest.fixture(scope="module")
def interrupted_fit(tmp_path_factory, inputs) -> Interrupted:
    # the phantom's stacks are 4 mm slabs, told here so that the signal falls in the fit, not in the estimate
    return _interrupt(tmp_path_factory, inputs, ["--max-steps", "60", "--thickness", "4"], signal.SIGINT, "fit")


def _check_interrupted(it: Interrupted) -> None:
    res = it.result
    assert it.note.endswith(("fitting", "rendering")), f"{it.note}{res.show()}"
    res._common()
    assert res.rc == 130, f"exit status {res.rc}, expected 130{res.show()}"
    assert len(res.error_lines) == 1, f"expected one 'inrsr: error:' line{res.show()}"
    line = res.error_lines[0]
    assert line.startswith("inrsr: error: interrupted"), line
    assert "--resume" in line, line
    assert "fit_state.pt" in it.out_after, f"the training state was not kept: out/ = {it.out_after}{res.show()}"
    volumes = [f for f in it.out_after if f.endswith(".nii.gz") or f == "model.pt"]
    assert not volumes, f"outputs of an unfinished fit: {volumes}{res.show()}"
    assert not [f for f in it.out_after if is_temp_name(f)], f"temporary files left: {it.out_after}"
    assert not res.changes.modified and not res.changes.removed, res.changes.describe()


def _check_resumed(case: Case, it: Interrupted) -> None:
    case.root = it.folder  # resume where the fit ran, with the same arguments
    res = case.fit([*it.args[len(FAST):], "--resume"], label="resume")
    res.expect_success("out", may_remove=("out/fit_state.pt",))
    out = it.folder / "out"
    missing = [f for f in FIT_OUTPUTS if not (out / f).is_file()]
    assert not missing, f"outputs missing after --resume: {missing}{res.show()}"
    assert not (out / "fit_state.pt").exists(), f"fit_state.pt left after the resumed fit completed{res.show()}"
    for c in ("t1", "t2"):
        assert np.isfinite(np.asanyarray(nib.load(str(out / f"{c}.nii.gz")).dataobj)).all()


def test_sigterm_while_rendering(case, interrupted_render):
    case.expect("exit 130, one line 'inrsr: error: interrupted… --resume'; out/fit_state.pt kept; no volume, "
                "model or temp file written")
    case.record(interrupted_render.result, interrupted_render.note)
    _check_interrupted(interrupted_render)


def test_resume_after_sigterm_while_rendering(case, interrupted_render):
    case.expect("`fit --resume` with the same arguments: exit 0, every output written, fit_state.pt removed")
    _check_resumed(case, interrupted_render)


def test_sigint_while_fitting(case, interrupted_fit):
    case.expect("exit 130, one line 'inrsr: error: interrupted… --resume'; out/fit_state.pt kept; no volume, "
                "model or temp file written")
    case.record(interrupted_fit.result, interrupted_fit.note)
    _check_interrupted(interrupted_fit)


def test_other_fit_into_interrupted_folder(case, interrupted_fit):
    case.expect("a different fit into a folder holding an interrupted fit's fit_state.pt, without --resume or "
                "--overwrite: exit 2, one error naming fit_state.pt (or the folder) and --resume; state untouched")
    shutil.copytree(interrupted_fit.pristine, case.root, dirs_exist_ok=True, symlinks=True)
    assert (case.root / "out" / "fit_state.pt").is_file(), "the interrupted fit left no state to protect"
    res = case.fit(["--t1", "t1ax.nii.gz", "-o", "out", "--lr", "0.02"])
    res.expect_error(("fit_state.pt", "interrupted"), ("--resume", "--overwrite"), max_s=60)


def test_resume_after_sigint_while_fitting(case, interrupted_fit):
    case.expect("`fit --resume` with the same arguments: exit 0, every output written, fit_state.pt removed")
    _check_resumed(case, interrupted_fit)


# -- 5. two runs, one folder -------------------------------------------------------------------------

def test_two_fits_one_folder(case):
    case.expect("two identical fits into one folder started 1 s apart: the second exits 2 with one error "
                "saying the folder is in use by another inrsr run; the first exits 0 with every output")
    case.put("t1ax")
    case.put("t2cor")
    args = ["fit", *FAST, *STACKS, "-o", "out"]
    before = snapshot(case.root)
    first = case.start(args, timeout=FIT_TIMEOUT_S, rss_mb=FIT_RSS_MB)
    time.sleep(1.0)
    second = case.start(args, timeout=FIT_TIMEOUT_S, rss_mb=FIT_RSS_MB)
    while first.alive() | second.alive():
        time.sleep(0.05)
    r1 = case.finish(first, before, "first")
    r2 = case.finish(second, before, "second")
    r2._common()
    assert r2.rc == 2, f"the second run: exit {r2.rc}, expected 2{r2.show()}"
    assert len(r2.error_lines) == 1, r2.show()
    check_keywords(r2.error_lines[0], [("in use", "another inrsr", "locked", "already running")], r2)
    r1.expect_success("out")
    missing = [f for f in FIT_OUTPUTS if not (case.root / "out" / f).is_file()]
    assert not missing, f"outputs missing: {missing}{r1.show()}"


# -- 5. outputs that would replace an input ----------------------------------------------------------

def test_fit_input_inside_output(case):
    case.expect("`fit --t2 out/t2.nii.gz -o out --overwrite`: exit 2, one error naming out/t2.nii.gz "
                "('would overwrite its input'); input unchanged")
    case.put("t2cor", "out/t2.nii.gz")
    res = case.fit(["--t2", "out/t2.nii.gz", "-o", "out", "--overwrite"])
    res.expect_error("t2.nii.gz", "input", "overwrit", max_s=60)


def test_sample_ref_is_an_output(case, base_fit):
    case.expect("`sample --ref out/t1.nii.gz -o out --overwrite` (t1 is a contrast of the model): exit 2, one "
                "error naming out/t1.nii.gz ('would overwrite its input'); the reference unchanged")
    shutil.copy2(base_fit.model, case.path("m/model.pt"))
    case.put("t1ax", "out/t1.nii.gz")
    res = case.run(["sample", "--model", "m/model.pt", "--ref", "out/t1.nii.gz", "-o", "out", "--overwrite",
                    "--threads", "1"])
    res.expect_error("t1.nii.gz", "input", "overwrit")


def test_cubic_output_is_its_input(case):
    case.expect("`baseline cubic --input x.nii.gz -o x.nii.gz --overwrite`: exit 2, one error "
                "('would overwrite its input'); x.nii.gz unchanged")
    case.put("t1ax", "x.nii.gz")
    res = case.run(["baseline", "cubic", "--input", "x.nii.gz", "-o", "x.nii.gz", "--overwrite"])
    res.expect_error("x.nii.gz", "input", "overwrit")


def test_cubic_output_is_its_input_other_spelling(case):
    case.expect("`baseline cubic --input x.nii.gz -o ./sub/../x.nii.gz --overwrite`: exit 2, one error "
                "('would overwrite its input'); x.nii.gz unchanged")
    case.put("t1ax", "x.nii.gz")
    (case.root / "sub").mkdir()
    res = case.run(["baseline", "cubic", "--input", "x.nii.gz", "-o", "./sub/../x.nii.gz", "--overwrite"])
    res.expect_error("x.nii.gz", "input", "overwrit")


def test_simulate_output_is_its_input(case):
    case.expect("`simulate hr.nii.gz -o hr.nii.gz --overwrite`: exit 2, one error ('would overwrite its input'); "
                "hr.nii.gz unchanged, no sidecar written")
    case.put("hr", "hr.nii.gz")
    res = case.run(["simulate", "hr.nii.gz", "--axis", "2", "-o", "hr.nii.gz", "--overwrite"])
    res.expect_error("hr.nii.gz", "input", "overwrit")


# -- 6. stale temporary files ---------------------------------------------------------------------------

def test_stale_temp_files_cleaned(case):
    case.expect("after a successful fit into out/, temp files of dead processes "
                "(.t1.nii.gz.99999999.abc.tmp.nii.gz, .model.pt.99999999.k3j.tmp.pt) are gone; the temp file "
                "of a live process (the test's pid) is kept untouched")
    case.put("t1ax")
    case.put("t2cor")
    out = case.path("out/x").parent
    dead = [out / ".t1.nii.gz.99999999.abc.tmp.nii.gz", out / ".model.pt.99999999.k3j.tmp.pt"]
    live = out / f".t2.nii.gz.{os.getpid()}.abc.tmp.nii.gz"
    for p in dead + [live]:
        p.write_bytes(b"half-written" * 100)
    res = case.fit([*STACKS, "-o", "out"])
    rel_dead = [str(p.relative_to(case.root)) for p in dead]
    res.expect_success("out", may_remove=rel_dead)
    left = [p.name for p in dead if p.exists()]
    assert not left, f"stale temp files of dead processes left: {left}{res.show()}"
    assert live.is_file() and live.read_bytes() == b"half-written" * 100, \
        f"the temp file of a live process was removed or changed{res.show()}"
