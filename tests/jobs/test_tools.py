"""The single-file commands' sidecars: simulate keeps SliceThickness (read back by `inrsr fit`) and
says where the stack came from; cubic and SMORE name their input, its hash and the command."""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stderr

import nibabel as nib
import numpy as np

from inrsr import __version__
from inrsr.io.stack import load_stack
from inrsr.jobs.tools import cubic_file, simulate_file, smore_file
from tests.jobs.conftest import run


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_simulate_sidecar_keeps_slice_thickness_and_adds_provenance(phantom_stacks, tmp_path):
    tmp, paths = phantom_stacks
    hr = tmp_path / "hr.nii.gz"
    nib.save(nib.load(str(paths["t2cor"])), str(hr))  # any volume: thick along axis 1 at 4 mm
    out = tmp_path / "lr.nii.gz"
    info = simulate_file(str(hr), str(out), None, 0, 2, "box", False, command_line=["inrsr", "simulate", "hr.nii.gz"])
    sidecar = json.loads((tmp_path / "lr.json").read_text())
    assert sidecar["SliceThickness"] == info["thickness_mm"] == 2.0
    assert sidecar["Description"] == (f"thick-slice stack simulated from {hr}: thick along its array axis 0, box slice "
                                      "profile 2 mm thick, slices 2 voxels apart, in its intensity units")
    assert sidecar["Sources"] == [str(hr)] and sidecar["SourcesSHA256"] == {str(hr): sha256(hr)}
    assert sidecar["GeneratedBy"][0]["CommandLine"] == "inrsr simulate hr.nii.gz"
    assert sidecar["Grid"]["Shape"] == info["shape"] == [20, 12, 40]
    stack = load_stack(out, "t2")
    assert stack.slice_thickness_mm == 2.0 and stack.thickness_source == "sidecar"


def test_cubic_sidecar_and_its_refusals(phantom_stacks, tmp_path):
    tmp, paths = phantom_stacks
    out = tmp_path / "cubic.nii.gz"
    cubic_file(str(paths["t1ax"]), str(out), None, 2.0, False, command_line=["inrsr", "baseline", "cubic"])
    sidecar = json.loads((tmp_path / "cubic.json").read_text())
    src = str(paths["t1ax"])
    assert sidecar == {
        "Description": f"cubic B-spline interpolation of {src}, in its intensity units; beyond its outermost voxels "
                       "the edge value is repeated",
        "Sources": [src], "SourcesSHA256": {src: sha256(paths["t1ax"])},
        "GeneratedBy": [{"Name": "inrsr", "Version": __version__, "CommandLine": "inrsr baseline cubic",
                         "Date": sidecar["GeneratedBy"][0]["Date"]}],
        "Grid": {"Shape": [20, 24, 20], "VoxelSizeMm": [2.0, 2.0, 2.0],
                 "Affine": nib.load(str(out)).affine.tolist(), "Reference": None},
    }
    code, err, _ = run(["baseline", "cubic", "--input", paths["t1ax"], "-o", out, "--ref", paths["t1ax"],
                        "--overwrite"])
    assert code == 0, err
    assert json.loads((tmp_path / "cubic.json").read_text())["Grid"]["Reference"] == src


def test_smore_sidecar_lists_its_options(phantom_stacks, tmp_path):
    tmp, paths = phantom_stacks
    out = tmp_path / "smore.nii.gz"
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        smore_file(str(paths["t1ax"]), str(out), None, None, None, False, progress=True, profile="box",
                   patch_size=16, batch_size=2, iterations=3, features=4, blocks=1, device="cpu", threads=1,
                   thickness_estimate="off")
    sidecar = json.loads((tmp_path / "smore.json").read_text())
    assert sidecar["Description"] == (f"SMORE super-resolution of {paths['t1ax']} (slices 4 mm thick, from spacing), "
                                      "resampled by cubic interpolation, in its intensity units")
    assert sidecar["Options"]["iterations"] == 3 and sidecar["Options"]["thickness_mm"] == 0.0  # 0: the spacing
    assert sidecar["Options"]["thickness_estimate"] == "off"
    assert "CommandLine" not in sidecar["GeneratedBy"][0]  # called from Python
    lines = stderr.getvalue().splitlines()  # not a terminal: progress lines
    assert lines[0] == "inrsr: smore train step 0/3 (0 %), 0 s elapsed"
    assert lines[-1].startswith("inrsr: smore train step 3/3 (100 %)")


def test_smore_warns_when_the_estimate_it_uses_disagrees_with_a_given_thickness(phantom_stacks, tmp_path,
                                                                                monkeypatch):
    import warnings

    import inrsr.fit.thickness

    from inrsr.errors import InputWarning

    tmp, paths = phantom_stacks
    monkeypatch.setattr(inrsr.fit.thickness, "single_stack_estimate_mm", lambda *a, **k: 9.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        info = smore_file(str(paths["t1ax"]), str(tmp_path / "s.nii.gz"), None, None, 2.0, False, progress=False,
                          profile="box", patch_size=16, batch_size=2, iterations=1, features=4, blocks=1, device="cpu",
                          threads=1, thickness_estimate="always")
    assert info["thickness_source"] == "estimate"
    assert [str(w.message) for w in seen if issubclass(w.category, InputWarning)] == [
        f"{paths['t1ax']}: its slice thickness is given as 2 mm (option) but its voxels look 9.0 mm thick (box "
        "profile, slice spacing 4 mm); the estimate is used"]


def test_simulate_writes_finite_stacks_for_a_gaussian_narrower_than_float_precision(phantom_stacks, tmp_path):
    tmp, paths = phantom_stacks
    hr = tmp_path / "hr.nii.gz"
    img = nib.load(str(paths["t1ax"]))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.diag([1.0, 1.0, 1.0, 1.0])), str(hr))
    out = tmp_path / "g.nii.gz"
    simulate_file(str(hr), str(out), None, 2, 2, "gaussian", False, thickness_mm=1e-300)
    simulate_file(str(hr), str(tmp_path / "p.nii.gz"), None, 2, 2, "point", False)
    narrow, point = (np.asarray(nib.load(str(p)).dataobj) for p in (out, tmp_path / "p.nii.gz"))
    assert np.isfinite(narrow).all() and np.array_equal(narrow, point)
