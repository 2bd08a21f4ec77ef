"""Bad input: one clear line on stderr naming the file and the problem, exit 2, no output left behind."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from inrsr.cli import main
from tests.conftest import write_nifti

AFF = np.diag([1.0, 1.0, 4.0, 1.0])


@pytest.fixture
def stacks(tmp_path):
    rng = np.random.default_rng(0)
    good1 = write_nifti(tmp_path / "t1.nii.gz", rng.uniform(size=(12, 12, 4)).astype(np.float32), AFF)
    good2 = write_nifti(tmp_path / "t2.nii.gz", rng.uniform(size=(12, 12, 4)).astype(np.float32), AFF)
    return tmp_path, good1, good2


def run(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stderr.strip()


def check_error(code, err, *needles):
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("inrsr: error: ")
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_file(stacks):
    tmp, good1, _ = stacks
    code, err = run(["fit", "--t1", good1, "--t2", tmp / "nope.nii.gz", "-o", tmp / "out"])
    check_error(code, err, "nope.nii.gz", "not found")
    assert not (tmp / "out").exists()


def test_not_nifti(stacks):
    tmp, good1, _ = stacks
    fake = tmp / "fake.nii.gz"
    fake.write_text("hello")
    check_error(*run(["fit", "--t1", good1, "--t2", fake, "-o", tmp / "out"]), "fake.nii.gz", "cannot read")
    txt = tmp / "notes.txt"
    txt.write_text("hello")
    check_error(*run(["fit", "--t1", good1, "--t2", txt, "-o", tmp / "out"]), "notes.txt", "not a NIfTI")
    assert not (tmp / "out").exists()


def test_4d_nan_constant(stacks):
    tmp, good1, _ = stacks
    four = write_nifti(tmp / "four.nii.gz", np.ones((6, 6, 4, 3), np.float32), AFF)
    check_error(*run(["fit", "--t1", good1, "--t2", four, "-o", tmp / "out"]), "four.nii.gz", "3D")
    bad = np.random.default_rng(1).uniform(size=(12, 12, 4)).astype(np.float32)
    bad[3, 3, 1] = np.nan
    nan = write_nifti(tmp / "nan.nii.gz", bad, AFF)
    check_error(*run(["fit", "--t1", good1, "--t2", nan, "-o", tmp / "out"]), "nan.nii.gz", "NaN")
    const = write_nifti(tmp / "const.nii.gz", np.full((12, 12, 4), 7, np.float32), AFF)
    check_error(*run(["fit", "--t1", good1, "--t2", const, "-o", tmp / "out"]), "const.nii.gz", "constant")
    # a trailing singleton 4th axis is fine: the failure is later (here: the existing-output check)
    single = write_nifti(tmp / "single.nii.gz", np.random.default_rng(2).uniform(size=(12, 12, 4, 1)).astype(np.float32), AFF)
    (tmp / "out").mkdir()
    (tmp / "out" / "t2.nii.gz").write_text("")
    check_error(*run(["fit", "--t1", good1, "--t2", single, "-o", tmp / "out"]), "output exists")
    assert sorted(os.listdir(tmp / "out")) == ["t2.nii.gz"]


def test_disjoint_fields_of_view(stacks):
    tmp, good1, _ = stacks
    far = AFF.copy()
    far[:3, 3] = [500, 0, 0]
    away = write_nifti(tmp / "away.nii.gz", np.random.default_rng(3).uniform(size=(12, 12, 4)).astype(np.float32), far)
    check_error(*run(["fit", "--t1", good1, "--t2", away, "-o", tmp / "out"]), "away.nii.gz", "overlap")
    assert not (tmp / "out").exists()


def test_same_file_twice_and_bad_contrast_names(stacks):
    tmp, good1, good2 = stacks
    check_error(*run(["fit", "--t1", good1, "--stack", f"t1={good1}", "-o", tmp / "out"]), "t1.nii.gz", "given twice")
    check_error(*run(["fit", "--stack", f"t 1={good1}", "-o", tmp / "out"]), "contrast name")
    check_error(*run(["fit", "--stack", str(good1), "-o", tmp / "out"]), "CONTRAST=PATH")
    check_error(*run(["fit", "-o", tmp / "out"]), "no input stacks")
    assert not (tmp / "out").exists()


def test_unwritable_output_folder(stacks):
    tmp, good1, good2 = stacks
    blocker = tmp / "afile"
    blocker.write_text("x")
    check_error(*run(["fit", "--t1", good1, "--t2", good2, "-o", blocker / "sub", "--max-epochs", "1"]),
                "afile", "not writable")
    check_error(*run(["fit", "--t1", good1, "--t2", good2, "-o", blocker]), "afile", "not a folder")


def test_bad_options(stacks):
    tmp, good1, good2 = stacks
    check_error(*run(["fit", "--t1", good1, "--t2", good2, "-o", tmp / "out", "--width", "0"]), "--width")
    check_error(*run(["fit", "--t1", good1, "--t2", good2, "-o", tmp / "out", "--ref", good1,
                      "--resolution", "1"]), "exclusive")
    check_error(*run(["fit", "--t1", good1, "--t2", good2, "-o", tmp / "out", "--mask", good1]), "--mask")
    check_error(*run(["fit", "--t1", good1, "--t2", good2, "-o", tmp / "out", "--adam-beta2", "1"]),
                "--adam-beta2 must be between 0 and 1")
    assert not (tmp / "out").exists()


def test_mask_on_wrong_grid(stacks):
    tmp, good1, good2 = stacks
    m = write_nifti(tmp / "m.nii.gz", np.ones((5, 5, 5), np.uint8), AFF)
    check_error(*run(["fit", "--t1", good1, "--t2", good2, "--mask", m, "--mask", m, "-o", tmp / "out"]),
                "m.nii.gz", "mask shape (5, 5, 5) differs from its image's")


def test_other_commands(stacks):
    tmp, good1, good2 = stacks
    other = write_nifti(tmp / "other.nii.gz", np.ones((5, 5, 5), np.float32), AFF)
    check_error(*run(["evaluate", "--pred", other, "--truth", good1]), "other.nii.gz", "grid")
    check_error(*run(["simulate", good1, "--view", "axial", "--axis", "2", "-o", tmp / "lr.nii.gz"]), "exactly one")
    check_error(*run(["simulate", good1, "--axis", "2", "--factor", "8", "-o", tmp / "lr.nii.gz"]), "fewer than")
    check_error(*run(["simulate", good1, "--axis", "2", "-o", good2]), "t2.nii.gz", "output exists")
    check_error(*run(["baseline", "cubic", "--input", good1, "-o", good2]), "output exists")
    check_error(*run(["sample", "--model", good1, "-o", tmp / "s"]), "t1.nii.gz", "not an inrsr model")
    check_error(*run(["sample", "--model", tmp / "none.pt", "-o", tmp / "s"]), "not found")
    assert not (tmp / "s").exists() and not (tmp / "lr.nii.gz").exists()


def test_simulate_former_profile_name_warns_and_matches_box(stacks):
    """``--profile slab`` (the former name of box) still works, with one warning line, and writes
    exactly what ``--profile box`` writes."""
    import nibabel as nib

    tmp, good1, _ = stacks
    code, err = run(["simulate", good1, "--axis", "0", "--factor", "2", "--profile", "slab", "-o", tmp / "slab.nii.gz"])
    assert code == 0, err
    warnings_ = [line for line in err.splitlines() if line.startswith("inrsr: warning:")]
    assert len(warnings_) == 1 and "--profile slab" in warnings_[0] and "box" in warnings_[0], err
    code, err = run(["simulate", good1, "--axis", "0", "--factor", "2", "--profile", "box", "-o", tmp / "box.nii.gz"])
    assert code == 0 and "warning" not in err, err
    a, b = (np.asarray(nib.load(str(tmp / f)).dataobj) for f in ("slab.nii.gz", "box.nii.gz"))
    np.testing.assert_array_equal(a, b)
    sidecars = [json.loads((tmp / f).read_text()) for f in ("slab.json", "box.json")]
    for sidecar in sidecars:  # the time of writing is the one field allowed to differ
        for generator in sidecar.get("GeneratedBy", []):
            generator.pop("Date", None)
    assert sidecars[0] == sidecars[1]


def test_config_file_errors_are_one_line_naming_the_file(stacks):
    tmp, good1, _ = stacks
    bad = tmp / "config.json"
    for content, message in (('{"lr": "fast"}', 'lr must be a number, got "fast"'),
                             ('{"lr": 0.01, "colour": 1}', "unknown option 'colour'"),
                             ('{"width": 0}', "--width must be positive, got 0"),
                             ("{", "not valid JSON (Expecting property name enclosed in double quotes at line 1, "
                                   "column 2)")):
        bad.write_text(content)
        code, err = run(["fit", "--t1", good1, "-o", tmp / "out", "--config", bad])
        assert (code, err) == (2, f"inrsr: error: {bad}: {message}")
    code, err = run(["fit", "--t1", good1, "-o", tmp / "out", "--config", tmp / "none.json"])
    assert (code, err) == (2, f"inrsr: error: {tmp / 'none.json'}: file not found")
    bad.write_text('{"width": 8}')  # a valid file; the invalid option given beside it is named alone
    code, err = run(["fit", "--t1", good1, "-o", tmp / "out", "--config", bad, "--lr", "-1"])
    assert (code, err) == (2, "inrsr: error: --lr must be positive, got -1.0")
    assert not (tmp / "out").exists()


def test_quiet_and_verbose_exclude_each_other(stacks):
    tmp, good1, _ = stacks
    code, err = run(["fit", "--t1", good1, "-o", tmp / "out", "--quiet", "--verbose"])
    assert (code, err) == (2, "inrsr: error: --quiet and --verbose exclude each other; give one of them")
    assert not (tmp / "out").exists()


def test_sidecars_are_claimed_outputs(stacks):
    """A contrast whose sidecar would be another output, an existing sidecar, and an input's own
    sidecar (read for its thickness) are refused before anything is written."""
    tmp, good1, good2 = stacks
    check_error(*run(["fit", "--stack", f"log={good1}", "-o", tmp / "out"]),
                "contrast name 'log': its output log.json would replace the fit's own log.json")
    check_error(*run(["fit", "--t2", good2, "--stack", f"mask-1_t2={good1}", "-o", tmp / "out"]),
                "contrast name 'mask-1_t2': its output mask-1_t2.nii.gz would replace")
    assert not (tmp / "out").exists()
    out = tmp / "out"
    out.mkdir()
    (out / "mask-1_t1.json").write_text("{}")
    code, err = run(["fit", "--t1", good1, "-o", out])
    assert (code, err) == (2, f"inrsr: error: {out / 'mask-1_t1.json'}: output exists (use --overwrite to replace it)")
    (out / "mask-1_t1.json").unlink()
    inside = write_nifti(out / "t1.nii", np.random.default_rng(2).uniform(size=(12, 12, 4)).astype(np.float32), AFF)
    (out / "t1.json").write_text('{"SliceThickness": 3.0}')
    code, err = run(["fit", "--t1", inside, "-o", out, "--overwrite"])
    assert (code, err) == (2, f"inrsr: error: {out / 't1.json'}: would overwrite the input {out / 't1.json'}; "
                              "choose another output")
    code, err = run(["baseline", "cubic", "--input", inside, "-o", out / "t1.nii.gz", "--overwrite"])
    assert code == 2 and "t1.json: would overwrite the input" in err
    (tmp / "c.json").write_text("{}")
    code, err = run(["baseline", "cubic", "--input", good1, "-o", tmp / "c.nii.gz"])
    assert (code, err) == (2, f"inrsr: error: {tmp / 'c.json'}: output exists (use --overwrite to replace it)")
    assert sorted(p.name for p in out.iterdir()) == ["t1.json", "t1.nii"] and not (tmp / "c.nii.gz").exists()
