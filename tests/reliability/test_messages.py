"""Messages and portability: every failure is one line that names the right thing and says the
right thing; model folders keep working from another folder or after a move; outputs follow the
umask."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat

import numpy as np
import pytest

from tests.reliability.conftest import Case, craft_model, permissions_testable, save_nifti

needs_permissions = pytest.mark.skipif(not permissions_testable(),
                                       reason="root that cannot drop CAP_DAC_OVERRIDE: permissions cannot be tested")


def _read_only_dir(case: Case, name: str = "ro"):
    d = case.root / name
    d.mkdir()
    os.chmod(d, 0o555)
    return d


# -- 12. ---------------------------------------------------------------------------------------------------

def test_symlink_loop_input(case):
    case.expect("`--t1 loop.nii.gz` (a symbolic link to itself): exit 2, one error naming loop.nii.gz "
                "(symbolic link loop)")
    os.symlink("loop.nii.gz", case.root / "loop.nii.gz")
    res = case.fit(["--t1", "loop.nii.gz", "-o", "out"])
    res.expect_error("loop.nii.gz", ("loop", "symbolic link", "symlink"), allow_dirs=("out",))


def test_affine_translation_1e20(case):
    case.expect("a stack whose affine translation is 1e20 mm: exit 2, one error naming it (affine/position)")
    data, affine = case.inputs.arrays["t1ax"]
    far = affine.copy()
    far[:3, 3] = 1e20
    save_nifti(case.path("far.nii.gz"), data, far)
    res = case.fit(["--t1", "far.nii.gz", "-o", "out", "--max-steps", "5000"], timeout=90)
    res.expect_error("far.nii.gz", ("affine", "position", "origin", "translation", "offset", "coordinates"),
                     allow_dirs=("out",), max_s=60)


# The check cases run in the base study (its model names its inputs relative to it), so that a
# check that does not stop at once goes on to compute scores.

@needs_permissions
def test_check_report_into_read_only_folder(case, base_fit):
    case.expect("`check -o ro/report.json` with ro/ read-only (run from the study folder): exit 2 before any score "
                "is computed, one error naming ro (not writable)")
    ro = _read_only_dir(case)
    res = case.run(["check", "--model", "out/model.pt", "-o", str(ro / "report.json"), "--quiet"],
                   cwd=base_fit.dir, honour_permissions=True)
    res.expect_error("ro", ("writable", "permission", "read-only"), max_s=30)
    assert "PSNR" not in res.stdout, f"scores were computed before the output was checked{res.show()}"


def test_check_report_onto_existing_folder(case, base_fit):
    case.expect("`check -o existing_dir --overwrite` (run from the study folder): exit 2 before any score is "
                "computed, one error naming existing_dir (a folder, not a file)")
    (case.root / "existing_dir").mkdir()
    res = case.run(["check", "--model", "out/model.pt", "-o", str(case.root / "existing_dir"), "--overwrite",
                    "--quiet"], cwd=base_fit.dir)
    res.expect_error("existing_dir", ("folder", "directory"), max_s=30)
    assert "PSNR" not in res.stdout, f"scores were computed before the output was checked{res.show()}"


@needs_permissions
def test_simulate_into_read_only_folder(case):
    case.expect("`simulate hr.nii.gz -o ro/lr.nii.gz` with ro/ read-only: exit 2, one error naming ro "
                "(not writable); no sidecar")
    case.put("hr", "hr.nii.gz")
    _read_only_dir(case)
    res = case.run(["simulate", "hr.nii.gz", "--axis", "2", "-o", "ro/lr.nii.gz"], honour_permissions=True)
    res.expect_error("ro", ("writable", "permission", "read-only"))


def _drop_state(p):
    del p["state_dict"]


def _mismatched_state(p):
    import torch

    key = next(k for k in p["state_dict"] if k.startswith("heads.") and k.endswith("weight"))
    p["state_dict"][key] = torch.zeros(3, 3)


@pytest.mark.parametrize("name, mutate, words", [
    ("missing-state-dict", _drop_state, ("state_dict",)),
    ("mismatched-state-dict", _mismatched_state, (("weight", "shape", "size", "match"),)),
], ids=["missing-state-dict", "mismatched-state-dict"])
def test_check_tagged_model_broken(case, base_fit, name, mutate, words):
    case.expect(f"`check` of a model.pt with the right format tag but a {name.replace('-', ' ')}: exit 2, one "
                "error naming model.pt")
    craft_model(base_fit.model, case.path("m/model.pt"), mutate)
    res = case.run(["check", "--model", "m/model.pt", "--quiet"])
    res.expect_error("model.pt", *words, max_s=30)


def test_check_holdout_negative(case, base_fit):
    case.expect("`check --holdout -1` (run from the study folder): exit 2, one error naming --holdout")
    res = case.run(["check", "--model", "out/model.pt", "--holdout", "-1", "--quiet"], cwd=base_fit.dir)
    res.expect_error("--holdout", max_s=30)


# -- 13. portability ------------------------------------------------------------------------------------------

def test_check_from_another_folder(case, base_fit):
    case.expect("`check --model /abs/study/out/model.pt` run from another cwd (the fit was given relative input "
                "paths): exit 0, a score row per stack, nothing written")
    res = case.run(["check", "--model", str(base_fit.model), "--quiet"], cwd=case.root)
    res.expect_success(())
    rows = [ln for ln in res.stdout.splitlines() if "self-consistency" in ln]
    assert len(rows) == 2, f"expected a row per stack{res.show()}"


@pytest.fixture(scope="module")
def spaced_study(tmp_path_factory, inputs):
    """A fit whose inputs and output folder have spaces (and a non-ASCII letter) in their names."""
    top = tmp_path_factory.mktemp("spaces")
    c = Case(None, top, inputs)
    c.root = top / "my study"
    c.root.mkdir()
    c.put("t1ax", "t1 ax é.nii.gz")
    c.put("t2cor", "t2 cor.nii.gz")
    res = c.fit(["--t1", "t1 ax é.nii.gz", "--t2", "t2 cor.nii.gz", "-o", "out dir"])
    return c.root, res


def test_names_with_spaces(case, spaced_study):
    case.expect("inputs 't1 ax é.nii.gz', 't2 cor.nii.gz' and output folder 'out dir': exit 0, every output "
                "written in 'out dir'")
    folder, res = spaced_study
    case.record(res)
    res.expect_success("out dir")
    for f in ("t1.nii.gz", "t2.nii.gz", "model.pt", "log.json"):
        assert (folder / "out dir" / f).is_file(), f"{f} missing{res.show()}"


def test_relocated_study(case, spaced_study):
    case.expect("the whole study folder (inputs + 'out dir') moved elsewhere: `check` on the moved model finds "
                "the inputs relative to the model file: exit 0, a row per stack")
    folder, fitted = spaced_study
    assert fitted.rc == 0, f"the fit to move failed{fitted.show()}"
    moved = case.root / "moved study"
    shutil.move(str(folder), str(moved))
    try:
        res = case.run(["check", "--model", "moved study/out dir/model.pt", "--quiet"], cwd=case.root)
        res.expect_success(())
        rows = [ln for ln in res.stdout.splitlines() if "self-consistency" in ln]
        assert len(rows) == 2, f"expected a row per stack{res.show()}"
    finally:
        shutil.move(str(moved), str(folder))


def _modes(folder):
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}


def test_fit_outputs_follow_umask(case, base_fit):
    case.expect("fit under umask 022: every output file is mode 0644 (not 0600)")
    case.record(base_fit.result, "base fit")
    modes = _modes(base_fit.dir / "out")
    wrong = {k: oct(v) for k, v in modes.items() if v != 0o644}
    assert not wrong, f"output modes under umask 022: {wrong}"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def test_sample_outputs_follow_umask(case, base_fit, umask, mode):
    case.expect(f"sample under umask {umask:03o}: volumes are mode {mode:04o}")
    shutil.copy2(base_fit.model, case.path("m/model.pt"))
    res = case.run(["sample", "--model", "m/model.pt", "-o", "out", "--threads", "1"], umask=umask)
    res.expect_success("out")
    modes = _modes(case.root / "out")
    assert modes and all(v == mode for v in modes.values()), \
        f"modes {({k: oct(v) for k, v in modes.items()})}, expected {oct(mode)}{res.show()}"


def test_simulate_and_cubic_outputs_follow_umask(case):
    case.expect("simulate and baseline cubic (each a volume + JSON sidecar) under umask 022: mode 0644")
    case.put("hr", "hr.nii.gz")
    case.put("t1ax")
    (case.root / "out").mkdir()
    r1 = case.run(["simulate", "hr.nii.gz", "--axis", "2", "-o", "out/lr.nii.gz"], label="simulate")
    r1.expect_success("out")
    r2 = case.run(["baseline", "cubic", "--input", "t1ax.nii.gz", "-o", "out/cubic.nii.gz"], label="cubic")
    r2.expect_success("out")
    modes = _modes(case.root / "out")
    assert set(modes) == {"lr.nii.gz", "lr.json", "cubic.nii.gz", "cubic.json"}, modes
    wrong = {k: oct(v) for k, v in modes.items() if v != 0o644}
    assert not wrong, f"output modes under umask 022: {wrong}"


# -- 14. messages ----------------------------------------------------------------------------------------------

def test_mask_shifted_5mm(case):
    case.expect("a mask of the stack's shape shifted by 5 mm: exit 2, one error naming the mask that speaks of "
                "its affine/position, not 'grid (40, 48, 10) does not match (40, 48, 10)'")
    case.put("t1ax")
    data, affine = case.inputs.arrays["t1ax"]
    shifted = affine.copy()
    shifted[0, 3] += 5.0
    save_nifti(case.path("mask.nii.gz"), (data > 0.1 * data.max()).astype(np.uint8), shifted)
    res = case.fit(["--t1", "t1ax.nii.gz", "--mask", "mask.nii.gz", "-o", "out"])
    line = res.expect_error("mask.nii.gz", ("affine", "position", "shift", "offset", "origin"),
                            allow_dirs=("out",))
    shapes = re.findall(r"\(\d+, \d+, \d+\)", line)
    assert len(shapes) != 2 or shapes[0] != shapes[1], f"the message blames equal shapes: {line}"


def test_cubic_output_dangling_symlink(case):
    case.expect("`baseline cubic -o dl.nii.gz` where dl.nii.gz is a dangling symbolic link: exit 2, one error "
                "naming dl.nii.gz that says it is a dangling symbolic link; the link kept")
    case.put("t1ax")
    os.symlink("nowhere/x.nii.gz", case.root / "dl.nii.gz")
    res = case.run(["baseline", "cubic", "--input", "t1ax.nii.gz", "-o", "dl.nii.gz"])
    res.expect_error("dl.nii.gz", "dangling", ("symbolic link", "symlink"))


def test_fit_output_dangling_symlink(case):
    case.expect("`fit -o dl` where dl is a dangling symbolic link: exit 2, one error naming dl that says it is a "
                "dangling symbolic link")
    case.put("t1ax")
    os.symlink("nowhere/out", case.root / "dl")
    res = case.fit(["--t1", "t1ax.nii.gz", "-o", "dl"])
    res.expect_error("dl", "dangling", ("symbolic link", "symlink"))


def test_nibabel_multiline_error_one_line(case):
    case.expect("a .nii.gz whose data is cut short (nibabel: 'Expected N bytes, got M bytes from …\\n - could the "
                "file be damaged?'): exit 2, one complete error line naming it (not cut mid-sentence)")
    data, affine = case.inputs.arrays["t1ax"]
    raw = save_nifti(case.path("raw.nii"), data, affine)
    block = raw.read_bytes()
    raw.unlink()
    with gzip.open(case.path("cut.nii.gz"), "wb") as fh:
        fh.write(block[: len(block) // 2])
    res = case.run(["baseline", "cubic", "--input", "cut.nii.gz", "-o", "out.nii.gz"])
    line = res.expect_error("cut.nii.gz", ("truncated", "damaged", "declares", "expected"))
    assert line.count("(") == line.count(")"), f"the message was cut: {line!r}"
    assert not re.search(r"\bfrom \S+$", line), f"the message stops mid-sentence: {line!r}"

