"""Loading stacks: slice geometry from the affine, thickness from a BIDS sidecar or an override."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inrsr.errors import InputError, InputWarning
from inrsr.io.stack import load_stack
from tests.conftest import write_nifti
from tests.test_geometry import AFFINES


def test_thickness_sidecar_override_and_default(tmp_path):
    data = np.random.default_rng(0).uniform(size=(8, 6, 9)).astype(np.float32)
    path = write_nifti(tmp_path / "t2_cor.nii.gz", data, AFFINES["permuted"])  # thick axis 1, 3 mm
    stack = load_stack(path, "t2")
    assert stack.slice_axis == 1 and stack.slice_spacing_mm == pytest.approx(3.0)
    assert stack.slice_thickness_mm == pytest.approx(3.0)  # no sidecar: thickness = spacing
    assert stack.thickness_source == "spacing"
    (tmp_path / "t2_cor.json").write_text(json.dumps({"SliceThickness": 2.5}))
    from_sidecar = load_stack(path, "t2")
    assert from_sidecar.slice_thickness_mm == pytest.approx(2.5) and from_sidecar.thickness_source == "sidecar"
    given = load_stack(path, "t2", thickness_mm=4.0)  # the option wins over the sidecar
    assert given.slice_thickness_mm == pytest.approx(4.0) and given.thickness_source == "option"
    inherited = load_stack(path, "t2", thickness_mm=4.4, thickness_from_sidecar=True)  # a BIDS App run's
    assert inherited.slice_thickness_mm == pytest.approx(4.4) and inherited.thickness_source == "sidecar"
    with pytest.raises(InputError, match="thickness must be a positive number"):
        load_stack(path, "t2", thickness_mm=-1.0)


@pytest.mark.parametrize("text, problem", [
    ('{"SliceThickness": "4mm"}', 'SliceThickness "4mm" is not a positive number of mm'),
    ('{"SliceThickness": true}', "SliceThickness true is not a positive number of mm"),
    ('{"SliceThickness": -8}', "SliceThickness -8 is not a positive number of mm"),
    ('{"SliceThickness": NaN}', "SliceThickness NaN is not a positive number of mm"),
    ('{"SliceThickness": [8]}', "SliceThickness [8] is not a positive number of mm"),
    ('{"SliceThickness": 8,', "not valid JSON (Expecting property name"),
    ("", "not valid JSON (Expecting value"),
    ("[8]", "not a JSON object, so not a BIDS sidecar"),
    (None, "cannot read this sidecar ([Errno 2] No such file or directory"),  # a link to nothing
])
def test_a_sidecar_that_gives_no_valid_thickness_is_refused_by_name(tmp_path, text, problem):
    """Not ignored: the stack would be fitted with another thickness than its sidecar meant."""
    data = np.random.default_rng(0).uniform(size=(8, 6, 9)).astype(np.float32)
    path = write_nifti(tmp_path / "t2_cor.nii.gz", data, AFFINES["permuted"])
    sidecar = tmp_path / "t2_cor.json"
    if text is None:
        sidecar.symlink_to(tmp_path / "gone.json")
    else:
        sidecar.write_text(text)
    with pytest.raises(InputError) as err:
        load_stack(path, "t2")
    assert str(err.value).startswith(f"{sidecar}: {problem}")
    assert load_stack(path, "t2", thickness_mm=2.0).slice_thickness_mm == 2.0  # an option does not read it


def test_a_sidecar_thickness_out_of_range_is_named_and_a_null_one_is_none(tmp_path):
    data = np.random.default_rng(0).uniform(size=(8, 6, 9)).astype(np.float32)
    path = write_nifti(tmp_path / "t2_cor.nii.gz", data, AFFINES["permuted"])  # 6 slices 3 mm apart
    sidecar = tmp_path / "t2_cor.json"
    sidecar.write_text('{"SliceThickness": 1e300}')
    with pytest.raises(InputError, match=f"t2_cor.nii.gz: slice thickness 1e\\+300 mm \\(SliceThickness of {sidecar}\\) "
                                         "exceeds the stack's whole extent"):
        load_stack(path, "t2")
    sidecar.write_text('{"SliceThickness": 1e-300}')
    with pytest.warns(InputWarning, match=f"t2_cor.nii.gz: slices 1e-300 mm thick \\(SliceThickness of {sidecar}\\) "
                                          "are under 1% of their spacing \\(3 mm\\); is the thickness right\\?"):
        assert load_stack(path, "t2").slice_thickness_mm == 1e-300
    sidecar.write_text('{"SliceThickness": null, "EchoTime": 0.1}')
    assert load_stack(path, "t2").thickness_source == "spacing"
    with pytest.raises(InputError, match="t2_cor.nii.gz: slice thickness 40 mm \\(SliceThickness of its BIDS "
                                         "sidecars\\) exceeds the stack's whole extent"):
        load_stack(path, "t2", thickness_mm=40.0, thickness_from_sidecar=True)  # inherited, found by pybids


def test_trailing_singleton_axis_and_user_mask(tmp_path):
    data = np.random.default_rng(1).uniform(1, 2, size=(5, 5, 4, 1)).astype(np.float32)
    path = write_nifti(tmp_path / "a.nii", data, AFFINES["oblique"])
    mask = np.zeros((5, 5, 4), np.uint8)
    mask[1:4, 1:4, 1:3] = 1
    mpath = write_nifti(tmp_path / "m.nii.gz", mask, AFFINES["oblique"])
    stack = load_stack(path, "t1", mask_path=mpath)
    assert stack.shape == (5, 5, 4) and stack.data.dtype == np.float32
    assert stack.mask.sum() == 18 and stack.mask_path == str(mpath)
    assert load_stack(path, "t1").mask_path is None
