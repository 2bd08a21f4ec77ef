"""Output and input file names: the JSON sidecar beside an image, and the files a run reads or writes with it."""

from __future__ import annotations

import json
from pathlib import Path

from inrsr.io.files import sidecar_path, sidecar_thickness, with_sidecars, write_sidecar


def test_with_sidecars_adds_the_sidecar_of_each_nifti_name():
    assert with_sidecars(["a/t1.nii.gz", None, "m/model.pt", "B.NII"]) == [
        Path("a/t1.nii.gz"), Path("a/t1.json"), Path("m/model.pt"), Path("B.NII"), Path("B.json")]
    assert sidecar_path("x/y.nii") == Path("x/y.json")


def test_write_sidecar_is_read_back_for_its_thickness(tmp_path):
    image = tmp_path / "lr.nii.gz"
    written = write_sidecar(image, {"Description": "d", "SliceThickness": 2.5})
    assert written == tmp_path / "lr.json"
    assert json.loads(written.read_text()) == {"Description": "d", "SliceThickness": 2.5}
    assert sidecar_thickness(image) == 2.5
    assert [p.name for p in tmp_path.iterdir()] == ["lr.json"]  # no temporary file left
