"""The BIDS App on a small study built from the shared data (tests/jobs/bids_cohort.py: BraTS and
open_ms subjects, one broken): a 2-worker local Dask cluster fits the good subjects into a BIDS
derivatives dataset whose names and descriptions follow the BIDS rules, the broken subject fails
alone with its error recorded, a rerun skips what is finished, ``group`` writes the summary, and
an external ``dask scheduler`` with its own worker process runs a subject through ``--scheduler``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import dask
import nibabel as nib
import pytest

from inrsr.bids.derivatives import derivative_entities
from tests.jobs.bids_cohort import BROKEN, build_cohort
from tests.jobs.conftest import run

FAST = ["--preset", "fast", "--fit-option", "max_steps=40", "--threads-per-worker", "1"]


@pytest.fixture(scope="module")
def study(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    bids = build_cohort(shared_data, root)
    out = root / "derivatives"
    code, err, _ = run(["bids", bids, out, "participant", "--n-workers", "2", *FAST])
    return bids, out, code, err


def files_under(folder) -> dict:
    return {os.path.relpath(os.path.join(d, f), folder): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, fs in os.walk(folder) for f in fs}


def test_broken_subject_fails_alone(study):
    _, out, code, err = study
    lines = err.splitlines()
    assert code == 2
    errors = [line for line in lines if line.startswith("inrsr: error:")]
    assert errors == [f"inrsr: error: 1 of 3 subjects failed (sub-{BROKEN}); each error is in "
                      f"{out}/sub-*/[ses-*]/log/status.json"]
    assert "inrsr: sub-01: done in" in err and "inrsr: sub-02: done in" in err
    status = json.loads((out / f"sub-{BROKEN}" / "log" / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["error"].startswith(f"{status['selection']['runs'][0]['path']}: ")
    assert not list((out / f"sub-{BROKEN}").glob("anat/*"))  # nothing published for it


def test_derivatives_are_named_and_described_by_the_bids_rules(study):
    bids, out, _, _ = study
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "inrsr"
    assert description["BIDSVersion"] and description["SourceDatasets"][0]["URL"] == bids.resolve().as_uri()
    expected = {
        "sub-01": ["sub-01_rec-inrsr_T1w", "sub-01_rec-inrsr_T2w"],
        "sub-02": ["sub-02_rec-inrsr_T1w", "sub-02_rec-inrsr_T2w", "sub-02_rec-inrsr_FLAIR"],
    }
    for sub, names in expected.items():
        anat = out / sub / "anat"
        for name in names:
            img = nib.load(str(anat / f"{name}.nii.gz"))
            assert img.header.get_zooms()[:3] == pytest.approx((1.0, 1.0, 1.0), abs=1e-4)
            sidecar = json.loads((anat / f"{name}.json").read_text())
            assert sidecar["GeneratedBy"][0]["Name"] == "inrsr" and sidecar["Preset"] == "fast"
            assert all(p.startswith(str(bids.resolve())) for p in sidecar["Sources"])
            assert set(sidecar["SourcesSHA256"]) == set(sidecar["Sources"])
            # the derivative is the fit folder's volume, linked, not a second copy
            head = {"T1w": "t1w", "T2w": "t2w", "FLAIR": "flair"}[name.rsplit("_", 1)[1]]
            assert os.path.samefile(anat / f"{name}.nii.gz", out / sub / "log" / f"{head}.nii.gz")
        for f in anat.iterdir():
            if f.suffix != ".pt":
                assert derivative_entities(os.path.relpath(f, out)) is not None, f.name
        assert (out / f"{sub}.html").is_file() and (anat / f"{sub}_rec-inrsr_model.pt").is_file()
    selection = json.loads((out / "sub-01" / "log" / "status.json").read_text())["selection"]
    assert [os.path.basename(r["path"]) for r in selection["runs"]] == ["sub-01_acq-ax_T1w.nii.gz",
                                                                       "sub-01_acq-cor_T2w.nii.gz"]
    assert [os.path.basename(e["path"]) for e in selection["excluded"]] == ["sub-01_acq-iso_T1w.nii.gz"]
    log = json.loads((out / "sub-01" / "log" / "log.json").read_text())
    assert [(s["thickness_mm"], s["thickness_source"]) for s in log["stacks"]] == [(4.0, "sidecar"), (4.0, "sidecar")]
    stacks = json.loads((out / "sub-02" / "log" / "log.json").read_text())["stacks"]
    inherited = {os.path.basename(s["path"]): (s["thickness_mm"], s["thickness_source"]) for s in stacks}
    assert inherited["sub-02_acq-cor_T2w.nii.gz"] == (4.0, "sidecar")  # from /T2w.json, no sidecar of its own


def test_rerun_skips_finished_subjects_and_group_summarises(study):
    bids, out, _, _ = study
    before = {k: v for k, v in files_under(out).items() if not k.startswith(f"sub-{BROKEN}")}
    t0 = time.perf_counter()
    code, err, _ = run(["bids", bids, out, "participant", "--n-workers", "0", *FAST])
    assert code == 2 and "sub-01: finished by an earlier run, skipped" in err
    assert time.perf_counter() - t0 < 60
    after = {k: v for k, v in files_under(out).items() if not k.startswith(f"sub-{BROKEN}")}
    assert after == before  # nothing of a finished subject was touched
    code, err, stdout = run(["bids", bids, out, "group"])
    assert code == 0, err
    rows = list(csv.DictReader((out / "inrsr_summary.tsv").open(), delimiter="\t"))
    assert [(r["participant_id"], r["status"]) for r in rows] == [("sub-01", "done"), ("sub-02", "done"),
                                                                  (f"sub-{BROKEN}", "failed")]
    assert float(rows[0]["self_consistency_psnr_db"]) > 25
    assert f"sub-{BROKEN}_acq-ax_T1w.nii.gz" in rows[2]["error"]
    assert "2 of 3 subjects complete." in stdout


def test_bids_app_errors(study, tmp_path):
    bids, _, _, _ = study
    code, err, _ = run(["bids", bids, tmp_path / "o", "participant", "--participant-label", "09"])
    assert code == 2 and err == f"inrsr: error: --participant-label: no participant 09 in {bids} (participants: 01, 02, 03)"
    code, err, _ = run(["bids", tmp_path, tmp_path / "o", "participant"])
    assert code == 2 and err == f"inrsr: error: {tmp_path}: not a BIDS dataset (no dataset_description.json)"
    code, err, _ = run(["bids", bids, tmp_path / "o", "participant", "--fit-option", "max_stepz=3"])
    assert code == 2 and err == "inrsr: error: --fit-option 'max_stepz=3': unknown option 'max_stepz'"
    code, err, _ = run(["bids", bids, tmp_path / "o", "everything"])
    assert code == 2 and err.startswith("inrsr: error: argument analysis_level: invalid choice: 'everything'")
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, err, _ = run(["bids", bids, tmp_path / "o", "participant", "--scheduler", "tcp://127.0.0.1:1"])
    assert code == 2 and err.startswith("inrsr: error: --scheduler tcp://127.0.0.1:1: no Dask scheduler answered")
    assert not (tmp_path / "o" / "sub-01").exists()


def test_external_scheduler(study, tmp_path):
    bids, _, _, _ = study
    dask = [os.path.join(os.path.dirname(sys.executable), "dask")]
    address_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([*dask, "scheduler", "--scheduler-file", str(address_file), "--port", "0",
                                  "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        for _ in range(100):
            if address_file.is_file() and address_file.stat().st_size:
                break
            time.sleep(0.2)
        address = json.loads(address_file.read_text())["address"]
        worker = subprocess.Popen([*dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = tmp_path / "derivatives"
        code, err, _ = run(["bids", bids, out, "participant", "--participant-label", "sub-01", "--scheduler",
                            address, *FAST])
        assert code == 0, err
        status = json.loads((out / "sub-01" / "log" / "status.json").read_text())
        assert status["status"] == "done" and status["pid"] != os.getpid()  # run by the external worker
        assert (out / "sub-01" / "anat" / "sub-01_rec-inrsr_T2w.nii.gz").is_file()
        assert not (out / "sub-02").exists()
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
