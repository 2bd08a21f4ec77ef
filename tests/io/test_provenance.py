"""The sidecar of a written volume: hashes, the BIDS GeneratedBy entry, options changed from a preset, the grid."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest

from inrsr import __version__
from inrsr.config import PRESETS
from inrsr.geometry import Grid
from inrsr.io.provenance import (
    file_sha256, generated_by, grid_record, options_changed, source_hashes, utc_now, volume_sidecar,
)


def test_file_sha256_of_a_real_stack_and_of_a_file_larger_than_one_block(shared_data, tmp_path):
    path = shared_data / "brats_gli_00001" / "t1c.nii.gz"
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # 2.2 MiB: three blocks
    assert file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()
    assert file_sha256(tmp_path / "big.bin") != file_sha256(path)


def test_source_hashes_are_absolute_once_each_and_skip_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.nii").write_bytes(b"a")
    (tmp_path / "b.nii").write_bytes(b"b")
    hashes = source_hashes(["b.nii", None, "a.nii", str(tmp_path / "b.nii")])
    assert list(hashes) == [str(tmp_path / "b.nii"), str(tmp_path / "a.nii")]
    assert hashes[str(tmp_path / "a.nii")] == hashlib.sha256(b"a").hexdigest()


def test_generated_by_names_inrsr_its_version_the_quoted_command_and_the_date():
    before = datetime.now(timezone.utc).replace(microsecond=0)
    entry, = generated_by(["inrsr", "fit", "--t1", "my scan.nii.gz", "-o", "out"])
    assert entry["Name"] == "inrsr" and entry["Version"] == __version__
    assert entry["CommandLine"] == "inrsr fit --t1 'my scan.nii.gz' -o out"
    date = datetime.strptime(entry["Date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= date <= datetime.now(timezone.utc)
    assert generated_by(None, "2026-01-02T03:04:05Z") == [{"Name": "inrsr", "Version": __version__,
                                                          "Date": "2026-01-02T03:04:05Z"}]
    assert utc_now().endswith("Z") and len(utc_now()) == 20


def test_options_changed_lists_only_the_fields_that_differ_in_field_order():
    config = PRESETS["fast"].replace(threads=1, lr=0.005, max_steps=PRESETS["fast"].max_steps)
    assert options_changed(config, PRESETS["fast"]) == {"lr": 0.005, "threads": 1}
    assert list(options_changed(config, PRESETS["fast"])) == ["lr", "threads"]
    assert options_changed(PRESETS["fast"], PRESETS["fast"]) == {}
    assert options_changed(PRESETS["fast"], PRESETS["default"])["max_steps"] == 250


def test_grid_record_and_the_whole_sidecar(tmp_path):
    affine = np.array([[0.0, 0.0, 2.0, -10.0], [-0.5, 0.0, 0.0, 4.0], [0.0, 1.5, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]])
    grid = Grid((4, 5, 6), affine)
    record = grid_record(grid, "ref.nii.gz")
    assert record == {"Shape": [4, 5, 6], "VoxelSizeMm": [0.5, 1.5, 2.0], "Affine": affine.tolist(),
                      "Reference": os.path.abspath("ref.nii.gz")}
    sources = {"/data/t1.nii.gz": "ab" * 32, "/data/old.nii.gz": None}
    sidecar = volume_sidecar("what the voxels mean", "t1", grid, sources, ["inrsr", "fit"], preset="fast",
                             options={"lr": 0.005}, date="2026-01-02T03:04:05Z", extra={"SliceThickness": 3.0})
    assert sidecar == {
        "Description": "what the voxels mean",
        "Contrast": "t1",
        "Sources": ["/data/t1.nii.gz", "/data/old.nii.gz"],
        "SourcesSHA256": {"/data/t1.nii.gz": "ab" * 32},
        "GeneratedBy": [{"Name": "inrsr", "Version": __version__, "CommandLine": "inrsr fit",
                         "Date": "2026-01-02T03:04:05Z"}],
        "Preset": "fast",
        "OptionsChanged": {"lr": 0.005},
        "Grid": {"Shape": [4, 5, 6], "VoxelSizeMm": [0.5, 1.5, 2.0], "Affine": affine.tolist(), "Reference": None},
        "SliceThickness": 3.0,
    }
    assert json.loads(json.dumps(sidecar)) == sidecar  # plain JSON
    bare = volume_sidecar("mask", None, grid, {}, None)
    assert "Contrast" not in bare and "Preset" not in bare and "CommandLine" not in bare["GeneratedBy"][0]
    assert bare["Sources"] == [] and bare["SourcesSHA256"] == {}


@pytest.mark.parametrize("module", ["inrsr.io.provenance", "inrsr.jobs.outputs", "inrsr.jobs.fit_stacks"])
def test_provenance_and_output_names_need_no_torch(module):
    """The outputs are named and claimed before PyTorch is imported (a mistake is reported at once)."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
