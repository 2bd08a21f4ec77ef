"""What `inrsr fit` writes besides its volumes: sidecars, foreground masks, the run in log.json, a
config.json that `--config` loads back, and progress lines on a stderr that is not a terminal.

The fits run as child processes (``python -m inrsr``), so that stderr is a pipe as in a batch job
and the command line is the one a user types."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from inrsr import __version__
from inrsr.config import PRESETS
from inrsr.samples.foreground import estimate_foreground
from tests.conftest import REPO
from tests.jobs.conftest import run

FIT = ["--t1", "t1ax.nii.gz", "--stack", "t2=t2cor.nii.gz", "--preset", "fast", "--max-steps", "30", "--mi-every", "10",
       "--lr", "0.005", "--threads", "1"]
QFORM_WARNING = "t1ax.nii.gz: the header's qform and sform disagree (voxels up to 3 mm apart); the sform is used"


def fit_warnings(log: dict) -> list[str]:
    """The warnings of a fit of the study whose ``log.json`` is ``log``: the qform's, and t2cor's
    learned width as uncertain (30 steps of the estimating fit leave its 4 mm boxes at about 2 mm,
    under 0.6 of the spacing)."""
    width = log["stacks"][1]["estimated_thickness_mm"]
    assert width < 2.4, width
    return [QFORM_WARNING, f"t2cor.nii.gz: its slice thickness is uncertain (estimated at {width:.2g} mm for a slice "
                           f"spacing of 4 mm: under 2.4 mm, thin slices with gaps and point samples look alike); "
                           f"{width:.2g} mm is used: give --thickness if the protocol is known"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inrsr(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "inrsr", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def study(phantom_stacks, tmp_path_factory) -> Path:
    """t1ax (a SliceThickness sidecar, a qform 3 mm off its sform: one warning) and t2cor (sform
    code 2) with a box mask each, and a verbose fit of them into ``out``."""
    src, paths = phantom_stacks
    d = tmp_path_factory.mktemp("study")
    t1 = nib.load(str(paths["t1ax"]))
    img = nib.Nifti1Image(np.asarray(t1.dataobj), t1.affine)
    shifted = t1.affine.copy()
    shifted[0, 3] += 3.0
    img.set_qform(shifted, code=1)
    img.set_sform(t1.affine, code=1)
    nib.save(img, str(d / "t1ax.nii.gz"))
    (d / "t1ax.json").write_text('{"SliceThickness": 4.0}')
    t2 = nib.load(str(paths["t2cor"]))
    img = nib.Nifti1Image(np.asarray(t2.dataobj), t2.affine)
    img.set_qform(t2.affine, code=1)
    img.set_sform(t2.affine, code=2)
    nib.save(img, str(d / "t2cor.nii.gz"))
    for name, source in (("m1", t1), ("m2", t2)):
        mask = np.zeros(source.shape, np.uint8)
        mask[4:-4, 2:-2, 4:-4] = 1
        nib.save(nib.Nifti1Image(mask, source.affine), str(d / f"{name}.nii.gz"))
    started = datetime.now(timezone.utc).replace(microsecond=0)
    res = inrsr(["fit", *FIT, "-o", "out", "--verbose"], d)
    (d / "verbose.stderr").write_text(res.stderr)
    (d / "started").write_text(started.isoformat())
    assert res.returncode == 0, res.stderr
    return d


def test_verbose_fit_prints_phases_and_progress_lines_without_a_terminal(study):
    lines = (study / "verbose.stderr").read_text().splitlines()
    assert all(line.startswith("inrsr: ") for line in lines[:-2]) and lines[-2].startswith("fitted ")
    log = json.loads((study / "out" / "log.json").read_text())
    said = [ln for ln in lines if "warning:" in ln or "error:" in ln]
    assert said == [f"inrsr: warning: {w}" for w in fit_warnings(log)]
    est = [s["estimated_thickness_mm"] for s in log["stacks"]]
    # t2cor has no sidecar: both widths are learned first (for at most the fit's 30 steps), t2cor's is used
    assert lines[-1] == f"slice thickness estimated in {log['seconds']['thickness_estimate']:.1f} s: " \
                        f"t1ax.nii.gz {est[0]:.2f} mm (fit), t2cor.nii.gz {est[1]:.2f} mm (fit)"
    phases = [ln for ln in lines if not ln.startswith(("inrsr: fit step", "inrsr: slice thickness estimate step",
                                                         "inrsr: warning:"))][:-2]
    assert re.fullmatch(rf"inrsr: slice thickness estimated: stack 1 {est[0]:.2f} mm \(fit\), stack 2 {est[1]:.2f} mm \(fit\) "
                        r"\([0-9.]+ s\)", phases[0])
    assert phases[1:4] == [
        "inrsr: stack 1: t1: t1ax.nii.gz (40×48×10 voxels, 1×1×4 mm, slice axis 2, thickness 4 mm); "
        "thickness from sidecar, foreground mask estimated",
        f"inrsr: stack 2: t2: t2cor.nii.gz (40×12×40 voxels, 1×4×1 mm, slice axis 1, thickness {est[1]:.3g} mm); "
        "thickness from estimate, foreground mask estimated",
        f"inrsr: training set: {log['n_train_points']} voxels ({phases[3].rsplit('(', 1)[1]}",
    ]
    assert re.fullmatch(r"inrsr: fit: 30 steps in [0-9.]+ s \(stopped by limit\); data consistency: [0-9.]+ s",
                        phases[4])
    assert re.fullmatch(r"inrsr: render: 40×48×40 voxels in [0-9.]+ s", phases[5])
    assert re.fullmatch(r"inrsr: wrote 15 files to out \([0-9.]+ s\)", phases[6]) and len(phases) == 7
    estimating = [ln for ln in lines if ln.startswith("inrsr: slice thickness estimate step")]
    assert estimating[0] == "inrsr: slice thickness estimate step 0/30 (0 %), 0 s elapsed"
    assert estimating[-1].startswith("inrsr: slice thickness estimate step 30/30 (100 %)")
    progress = [ln for ln in lines if ln.startswith("inrsr: fit step")]
    assert progress[0] == "inrsr: fit step 0/30 (0 %), 0 s elapsed"
    assert re.fullmatch(r"inrsr: fit step 30/30 \(100 %\), loss \d\.\d\de-\d\d, MI \d\.\d{4}, \d+ s elapsed",
                        progress[-1])
    assert f"MI {log['final_mi']:.4f}," in progress[-1]


def test_log_json_records_the_run_and_where_thickness_and_masks_came_from(study):
    log = json.loads((study / "out" / "log.json").read_text())
    assert log["version"] == __version__
    assert log["command_line"] == shlex.join(["inrsr", "fit", *FIT, "-o", "out", "--verbose"])
    started = datetime.fromisoformat((study / "started").read_text())
    date = datetime.strptime(log["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert started <= date <= started + timedelta(seconds=60)
    assert (log["device"], log["threads"], log["preset"]) == ("cpu", 1, "fast")
    assert 0.1 < log["peak_rss_gb"] < 4.0
    assert log["warnings"] == fit_warnings(log)
    assert [s["thickness_source"] for s in log["stacks"]] == ["sidecar", "estimate"]
    assert log["stacks"][1]["thickness_mm"] == log["stacks"][1]["estimated_thickness_mm"]
    # t1 and t2 are different contrasts: no crossing judge, both widths learned
    assert [s["thickness_estimator"] for s in log["stacks"]] == ["fit", "fit"]
    assert [s["mask_source"] for s in log["stacks"]] == ["estimated", "estimated"]
    assert [s["sha256"] for s in log["stacks"]] == [sha256(study / "t1ax.nii.gz"), sha256(study / "t2cor.nii.gz")]
    assert set(log["outputs"]) == {"t1", "t2", "t1.json", "t2.json", "mask-1_t1.nii.gz", "mask-1_t1.json",
                                   "mask-2_t2.nii.gz", "mask-2_t2.json", "model.pt", "config.json", "log.json",
                                   "log.csv", "mi.csv", "mi.png", "report.html"}


def test_every_volume_has_a_sidecar_saying_what_it_is_and_where_it_came_from(study):
    out = study / "out"
    sidecar = json.loads((out / "t2.json").read_text())
    volume = nib.load(str(out / "t2.nii.gz"))
    t1, t2 = str(study / "t1ax.nii.gz"), str(study / "t2cor.nii.gz")
    assert sidecar["Description"] == (
        "t2 intensity predicted by the field fitted to all input stacks, in the units of the input t2 stacks (their "
        "intensity scale restored), with each stack's residual added back where its voxels measured it (data "
        "consistency); voxels outside every stack's foreground hold the background level (the t2 stacks' low "
        "intensity)")
    assert sidecar["Contrast"] == "t2" and sidecar["Sources"] == [t1, t2]
    assert sidecar["SourcesSHA256"] == {t1: sha256(Path(t1)), t2: sha256(Path(t2))}
    log = json.loads((out / "log.json").read_text())
    assert sidecar["GeneratedBy"] == [{"Name": "inrsr", "Version": __version__, "CommandLine": log["command_line"],
                                       "Date": log["date"]}]
    assert sidecar["Preset"] == "fast"
    assert sidecar["OptionsChanged"] == {"lr": 0.005, "max_steps": 30, "mi_every": 10, "threads": 1}
    assert sidecar["Grid"] == {"Shape": list(volume.shape), "VoxelSizeMm": [1.0, 1.0, 1.0],
                               "Affine": volume.affine.tolist(), "Reference": None}
    assert json.loads((out / "t1.json").read_text())["Sources"] == [t1, t2]


def test_masks_are_what_the_fit_used_on_each_stacks_own_grid_and_header(study):
    out = study / "out"
    for k, (name, contrast, sform_code) in enumerate((("t1ax", "t1", 1), ("t2cor", "t2", 2)), start=1):
        stack = nib.load(str(study / f"{name}.nii.gz"))
        mask = nib.load(str(out / f"mask-{k}_{contrast}.nii.gz"))
        assert mask.get_data_dtype() == np.uint8 and mask.shape == stack.shape
        np.testing.assert_allclose(mask.affine, stack.affine)  # the sform: overlays the input file
        assert (int(mask.header["qform_code"]), int(mask.header["sform_code"])) == (1, sform_code)
        data = np.asanyarray(mask.dataobj)
        expected = estimate_foreground(np.asarray(stack.dataobj, dtype=np.float32))
        np.testing.assert_array_equal(data, expected.astype(np.uint8))
        assert 0 < data.sum() < data.size
        sidecar = json.loads((out / f"mask-{k}_{contrast}.json").read_text())
        path = str(study / f"{name}.nii.gz")
        assert sidecar["Description"] == (f"foreground mask the fit used for stack {k} ({path}), on that stack's "
                                          "grid (1: foreground, 0: background): estimated from its intensities")
        assert sidecar["Sources"] == [path] and sidecar["Grid"]["Shape"] == list(stack.shape)
        assert "Preset" not in sidecar


def test_config_json_loads_back_quietly_with_given_masks(study):
    """`fit --config out/config.json` (under another preset) gives the same config.json; --quiet
    prints nothing but the warnings; given masks are written as they were given."""
    res = inrsr(["fit", "--t1", "t1ax.nii.gz", "--stack", "t2=t2cor.nii.gz", "--mask", "m1.nii.gz", "--mask",
                 "m2.nii.gz", "--config", "out/config.json", "--preset", "paper", "-o", "again", "--quiet"], study)
    assert res.returncode == 0, res.stderr
    log = json.loads((study / "again" / "log.json").read_text())
    assert res.stderr.splitlines() == [f"inrsr: warning: {w}" for w in fit_warnings(log)] and res.stdout == ""
    assert (study / "again" / "config.json").read_bytes() == (study / "out" / "config.json").read_bytes()
    assert [s["mask_source"] for s in log["stacks"]] == ["given", "given"] and log["preset"] == "paper"
    assert json.loads((study / "again" / "t1.json").read_text())["Sources"] == [
        str(study / f) for f in ("t1ax.nii.gz", "m1.nii.gz", "t2cor.nii.gz", "m2.nii.gz")]
    changed = json.loads((study / "again" / "t1.json").read_text())["OptionsChanged"]
    assert changed["encoding"] == "hash" and changed["max_steps"] == 30 and "es_buffer" not in changed
    assert changed == {k: v for k, v in PRESETS["fast"].replace(lr=0.005, max_steps=30, mi_every=10,
                                                                threads=1).to_dict().items()
                       if v != getattr(PRESETS["paper"], k)}
    for k, name, contrast in ((1, "m1", "t1"), (2, "m2", "t2")):
        given = np.asanyarray(nib.load(str(study / f"{name}.nii.gz")).dataobj)
        written = np.asanyarray(nib.load(str(study / "again" / f"mask-{k}_{contrast}.nii.gz")).dataobj)
        np.testing.assert_array_equal(written, given)
        sidecar = json.loads((study / "again" / f"mask-{k}_{contrast}.json").read_text())
        assert sidecar["Description"].endswith(f"given with --mask ({study / f'{name}.nii.gz'})")


def test_sample_sidecars_name_the_model_and_the_stacks_it_was_fitted_to(study, tmp_path):
    code, err, _ = run(["sample", "--model", study / "out" / "model.pt", "-o", tmp_path / "s", "--resolution", "2",
                        "--threads", "1"])
    assert code == 0, err
    sidecar = json.loads((tmp_path / "s" / "t1.json").read_text())
    model, t1, t2 = (str(study / f) for f in ("out/model.pt", "t1ax.nii.gz", "t2cor.nii.gz"))
    assert sidecar["Sources"] == [model, t1, t2]
    assert sidecar["SourcesSHA256"] == {model: sha256(Path(model)), t1: sha256(Path(t1)), t2: sha256(Path(t2))}
    assert sidecar["Description"].startswith(f"t1 intensity predicted by the field fitted to all input stacks "
                                             f"(saved in {model}), in the units of the input t1 stacks")
    assert sidecar["Grid"]["VoxelSizeMm"] == [2.0, 2.0, 2.0] and sidecar["Grid"]["Shape"] == [20, 24, 20]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["t1.json", "t1.nii.gz", "t2.json", "t2.nii.gz"]
    code, err, _ = run(["sample", "--model", study / "out" / "model.pt", "-o", tmp_path / "s", "--resolution", "2"])
    assert (code, err) == (2, f"inrsr: error: {tmp_path / 's' / 't1.nii.gz'}: output exists (use --overwrite to "
                              "replace it)")
