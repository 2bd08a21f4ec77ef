"""`inrsr fit` with several stacks: shared contrasts, registration, resume, overlap warnings and `inrsr check`'s report."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from tests.jobs.conftest import FAST, run


def test_two_stacks_of_one_contrast_train_one_head_and_check_reports_every_stack(phantom_stacks, tmp_path):
    tmp, p = phantom_stacks
    out = tmp_path / "out"
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--stack", f"t2={p['t2cor']}", "--stack", f"t2={p['t2sag']}",
                        "-o", out, *FAST])
    assert code == 0, err
    assert sorted(f.name for f in out.glob("*.nii.gz")) == ["mask-1_t1.nii.gz", "mask-2_t2.nii.gz", "mask-3_t2.nii.gz",
                                                            "t1.nii.gz", "t2.nii.gz"]  # a mask per stack
    log = json.loads((out / "log.json").read_text())
    assert [s["contrast"] for s in log["stacks"]] == ["t1", "t2", "t2"]
    assert log["transforms"] is None and not (out / "fit_state.pt").exists()
    code, err, text = run(["check", "--model", out / "model.pt", "--holdout", "4", "-o", tmp_path / "check.json",
                           "--quiet"])
    assert code == 0, err
    report = json.loads((tmp_path / "check.json").read_text())
    modes = [r["left_out"]["mode"] for r in report["stacks"]]
    assert modes == ["every 4th slice", "stack", "stack"]
    for r in report["stacks"]:
        assert r["self"]["corr"] > 0.8 and r["left_out"]["inr"]["corr"] > 0.5
    assert "cubic" in report["stacks"][0]["left_out"] and text.count("self-consistency") == 3


def test_register_writes_transforms_and_bad_requests_fail_cleanly(phantom_stacks, tmp_path):
    tmp, p = phantom_stacks
    out = tmp_path / "reg"
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "-o", out, "--register", *FAST])
    assert code == 0, err
    transforms = json.loads((out / "transforms.json").read_text())
    assert [s["reference"] for s in transforms["stacks"]] == [True, False]
    # the phantom's stacks are aligned: what registration finds must be small
    moved = transforms["stacks"][1]
    assert moved["centre_shift_mm"] < 1.0 and moved["rotation_deg"] < 2.0
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "-o", out, "--register", "--register-stack",
                        "2", *FAST])
    assert code == 2 and "--register-stack 2" in err
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "-o", tmp_path / "new", "--resume", *FAST])
    assert code == 2 and "no interrupted fit to resume" in err and not (tmp_path / "new").exists()
    (tmp_path / "moved").mkdir()
    code, err, _ = run(["check", "--model", tmp_path / "moved" / "model.pt"])
    assert code == 2 and "model file not found" in err


def test_barely_overlapping_stacks_warn_in_one_line(phantom_stacks, tmp_path):
    tmp, p = phantom_stacks
    img = nib.load(str(p["t2cor"]))
    affine = img.affine.copy()
    affine[0, 3] += 30.0  # 30 of 40 mm to the side
    far = tmp_path / "far.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(far))
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", far, "-o", tmp_path / "o", *FAST, "--max-steps", "2"])
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("inrsr: warning: ")]
    assert len(warnings) == 1 and "far.nii.gz" in warnings[0] and "overlaps only" in warnings[0]


def test_an_unrelated_stack_is_reported(phantom_stacks, tmp_path):
    tmp, p = phantom_stacks
    img = nib.load(str(p["t2cor"]))
    noise = np.random.default_rng(0).uniform(size=img.shape).astype(np.float32)
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(noise, img.affine), str(other))
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", other, "-o", tmp_path / "o", *FAST, "--max-steps", "2"])
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("inrsr: warning: ")]
    assert len(warnings) == 1 and "other.nii.gz" in warnings[0] and "same subject" in warnings[0]
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "-o", tmp_path / "o2", *FAST,
                        "--max-steps", "2"])
    assert code == 0 and "warning" not in err


def test_a_resumed_fit_trains_with_the_interrupted_fits_thickness_estimates(phantom_stacks, tmp_path, monkeypatch):
    """The estimate is not repeated on resume (it need not be repeatable across devices): the
    state records every stack's thickness, and a thickness given differently is refused."""
    import inrsr.fit.thickness
    import inrsr.render
    from inrsr.fit.state import saved_thickness

    tmp, p = phantom_stacks
    out = tmp_path / "out"
    args = ["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "-o", out, *FAST]

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(inrsr.render, "render_subject", interrupt)  # the fit has ended: its state is kept
        code, err, _ = run(args)
    assert code == 130 and "--resume" in err
    record = saved_thickness(out / "fit_state.pt")
    assert [r["estimated_thickness_mm"] is not None for r in record] == [True, True]
    assert [r["thickness_mm"] for r in record] == [r["estimated_thickness_mm"] for r in record]

    code, err, _ = run([*args, "--resume", "--thickness", "20"])  # above any estimate (4 spacings)
    assert code == 2 and err.count("inrsr: error:") == 1
    assert "fit_state.pt: cannot resume" in err and "t1ax.nii.gz" in err and "20 mm" in err

    def no_estimate(*a, **k):
        raise AssertionError("estimated again on resume")

    monkeypatch.setattr(inrsr.fit.thickness, "estimate_thickness_mm", no_estimate)
    code, err, _ = run([*args, "--resume"])
    assert code == 0, err
    log = json.loads((out / "log.json").read_text())
    assert [s["thickness_mm"] for s in log["stacks"]] == [r["thickness_mm"] for r in record]
    assert [s["thickness_source"] for s in log["stacks"]] == ["estimate", "estimate"]
    assert not (out / "fit_state.pt").exists()


def test_a_run_interrupted_before_the_fit_leaves_no_folder_it_made(phantom_stacks, tmp_path, monkeypatch):
    import inrsr.jobs.reconstruct

    tmp, p = phantom_stacks

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(inrsr.jobs.reconstruct, "training_set", interrupt)
    out = tmp_path / "new"
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "-o", out, *FAST, "--thickness", "4"])
    assert code == 130 and err == f"inrsr: error: interrupted before the fit began; nothing was written to {out}"
    assert not out.exists()
    (tmp_path / "kept").mkdir()  # a folder the user made stays
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "-o", tmp_path / "kept", *FAST,
                        "--thickness", "4"])
    assert code == 130 and (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())
