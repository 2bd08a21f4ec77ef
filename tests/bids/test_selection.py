"""Which runs of a BIDS dataset become stacks: the default rule, labels, sessions, sidecar metadata,
the filter file, and the errors a user can cause (no fit is run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inrsr.bids.selection import ANAT_SUFFIXES, Run, Selection, read_filter_file, select_stacks
from inrsr.errors import InputError, InputWarning
from inrsr.io.stack import StackSpec
from tests.bids.conftest import ISOTROPIC, THICK_AXIAL, contrast_dataset, make_dataset, write_json

NOT_ANATOMICAL = f"suffix T1map is not an anatomical contrast inrsr fits ({', '.join(ANAT_SUFFIXES)})"


def by_label(selections: list[Selection]) -> dict[str, Selection]:
    return {s.label: s for s in selections}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time (ns)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.stat(Path(folder) / name)
            found[os.path.relpath(Path(folder) / name, root)] = (st.st_size, st.st_mtime_ns)
    return found


def test_default_rule_keeps_thick_runs_and_says_why_others_are_left_out(dataset):
    selections = select_stacks(dataset)
    assert [s.label for s in selections] == ["sub-01", "sub-02", "sub-03"]
    sub01 = selections[0]
    assert sub01.runs == [
        Run(path=str(dataset / "sub-01/anat/sub-01_acq-ax_T1w.nii.gz"), contrast="t1w", suffix="T1w",
            entities={"acquisition": "ax"}, spacing_mm=(1.0, 1.0, 4.0), thickness_mm=4.0),
        Run(path=str(dataset / "sub-01/anat/sub-01_acq-cor_T2w.nii.gz"), contrast="t2w", suffix="T2w",
            entities={"acquisition": "cor"}, spacing_mm=(1.0, 4.0, 1.0), thickness_mm=4.4),  # from /T2w.json
    ]
    assert sub01.excluded == [
        (str(dataset / "sub-01/anat/sub-01_acq-iso_T1w.nii.gz"), "isotropic 3D run (1×1×1 mm): nothing to super-resolve"),
        (str(dataset / "sub-01/anat/sub-01_T1map.nii.gz"), NOT_ANATOMICAL),
    ]
    assert sub01.notes == [] and sub01.why_empty() is None
    everything = json.dumps([s.to_dict() for s in selections])
    assert "dwi" not in everything and "derivatives" not in everything and "/out/" not in everything


def test_several_thick_runs_of_one_suffix_are_stacks_of_one_contrast(dataset):
    sub02 = by_label(select_stacks(dataset))["sub-02"]
    assert [(Path(r.path).name, r.contrast, r.spacing_mm, r.thickness_mm) for r in sub02.runs] == [
        ("sub-02_acq-ax_T2w.nii.gz", "t2w", (1.0, 1.0, 4.0), 4.4),
        ("sub-02_acq-cor_T2w.nii.gz", "t2w", (1.0, 4.0, 1.0), 4.4),
    ]
    assert sub02.contrasts == ["t2w"]
    assert sub02.excluded == [(str(dataset / "sub-02/anat/sub-02_FLAIR.nii.gz"),
                               "isotropic run (1×1×1 mm): nothing to super-resolve")]
    assert sub02.stack_specs() == [StackSpec("t2w", r.path, 4.4, thickness_from_sidecar=True) for r in sub02.runs]


def test_a_subject_without_a_thick_run_gets_an_empty_selection_with_the_reason(dataset):
    sub03 = by_label(select_stacks(dataset))["sub-03"]
    assert sub03.runs == []
    assert sub03.why_empty() == "sub-03: no run to fit (sub-03_T1w.nii.gz: isotropic run (1×1×1 mm): nothing to super-resolve)"


def test_a_2d_acquisition_is_thick_even_when_its_voxels_are_nearly_isotropic(tmp_path):
    root = make_dataset(tmp_path / "bids", {
        "sub-01/anat/sub-01_acq-a_T2w.nii.gz": ((16, 16, 12), (1.0, 1.0, 1.2)),
        "sub-01/anat/sub-01_acq-b_T2w.nii.gz": ((16, 16, 12), (1.0, 1.0, 1.2)),
        "sub-01/anat/sub-01_FLAIR.nii.gz": ((16, 16, 4, 2), (1.0, 1.0, 4.0)),
        "sub-01/anat/sub-01_PDw.nii.gz": ((16, 16), (1.0, 4.0)),
    }, {"sub-01/anat/sub-01_acq-a_T2w.json": {"MRAcquisitionType": "2D", "SliceThickness": 1.2}})
    (selection,) = select_stacks(root)
    assert [Path(r.path).name for r in selection.runs] == ["sub-01_acq-a_T2w.nii.gz"]
    assert selection.excluded == [
        (str(root / "sub-01/anat/sub-01_acq-b_T2w.nii.gz"), "near-isotropic run (1×1×1.2 mm): nothing to super-resolve"),
        (str(root / "sub-01/anat/sub-01_FLAIR.nii.gz"), "4D image (16×16×4×2 voxels): a stack is one 3D volume"),
        (str(root / "sub-01/anat/sub-01_PDw.nii.gz"), "2D image (16×16 voxels): a stack is one 3D volume"),
    ]


def test_a_contrast_agent_or_an_echo_makes_another_contrast(tmp_path):
    root = contrast_dataset(tmp_path / "bids")
    (selection,) = select_stacks(root)
    assert [(Path(r.path).name, r.contrast) for r in selection.runs] == [
        ("sub-01_T1w.nii.gz", "t1w"), ("sub-01_ce-gad_T1w.nii.gz", "t1w_ce-gad"),
        ("sub-01_echo-1_T2w.nii.gz", "t2w_echo-1"), ("sub-01_echo-2_T2w.nii.gz", "t2w_echo-2"),
        ("sub-01_part-mag_T2starw.nii.gz", "t2starw")]
    assert selection.excluded == [(str(root / "sub-01/anat/sub-01_part-phase_T2starw.nii.gz"),
                                   "the phase part of a complex image: inrsr fits magnitude images")]


def test_participant_labels_with_or_without_prefix(dataset):
    assert [s.label for s in select_stacks(dataset, participant_labels=["sub-02", "01"])] == ["sub-01", "sub-02"]
    assert [s.label for s in select_stacks(dataset, participant_labels=["03"])] == ["sub-03"]
    # the runs found are the same as when every subject is indexed
    assert select_stacks(dataset, ["01"])[0] == select_stacks(dataset)[0]


def test_an_unknown_participant_label_names_it_and_the_existing_ones(dataset):
    with pytest.raises(InputError) as err:
        select_stacks(dataset, participant_labels=["01", "sub-04", "1"])
    assert str(err.value) == f"--participant-label: no participants 04, 1 in {dataset} (participants: 01, 02, 03)"


def test_a_folder_that_is_not_a_bids_dataset_is_refused_in_one_line(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "file.txt").write_text("x")
    cases = {
        tmp_path / "plain": "not a BIDS dataset (no dataset_description.json)",
        tmp_path / "missing": "not a BIDS dataset (folder not found)",
        tmp_path / "file.txt": "not a BIDS dataset (not a folder)",
    }
    for path, problem in cases.items():
        with pytest.raises(InputError) as err:
            select_stacks(path)
        assert str(err.value) == f"{path}: {problem}"
    (tmp_path / "plain" / "dataset_description.json").write_text("{Name")
    with pytest.raises(InputError, match=r"dataset_description.json: not valid JSON \(Expecting property name"):
        select_stacks(tmp_path / "plain")


def test_sessions_labels_and_errors(sessions_dataset, dataset):
    assert [s.label for s in select_stacks(sessions_dataset)] == ["sub-01_ses-post", "sub-01_ses-pre", "sub-02_ses-pre"]
    only = select_stacks(sessions_dataset, session_labels=["ses-post"])
    assert [s.label for s in only] == ["sub-01_ses-post"]
    assert [r.thickness_mm for r in only[0].runs] == [None, 3.0]
    assert [s.label for s in select_stacks(sessions_dataset, ["02"], ["pre"])] == ["sub-02_ses-pre"]
    with pytest.raises(InputError) as err:
        select_stacks(sessions_dataset, session_labels=["late"])
    assert str(err.value) == f"--session-label: no session late in {sessions_dataset} (sessions: post, pre)"
    with pytest.raises(InputError) as err:
        select_stacks(dataset, session_labels=["pre"])
    assert str(err.value) == f"--session-label: {dataset} has no sessions"


def test_filter_file_selects_exactly_its_heads(dataset, tmp_path):
    filter_file = write_json(tmp_path / "filter.json", {
        "t2w": {"datatype": "anat", "suffix": "T2w", "acquisition": ["ax", "cor"]},
        "flair": {"suffix": "FLAIR"},
    })
    with pytest.warns(InputWarning) as seen:
        selections = by_label(select_stacks(dataset, filter_file=filter_file))
    sub01, sub02 = selections["sub-01"], selections["sub-02"]
    assert [(Path(r.path).name, r.contrast) for r in sub02.runs] == [
        ("sub-02_acq-ax_T2w.nii.gz", "t2w"), ("sub-02_acq-cor_T2w.nii.gz", "t2w"), ("sub-02_FLAIR.nii.gz", "flair")]
    assert sub02.excluded == [] and sub02.notes == []
    flair = dataset / "sub-02/anat/sub-02_FLAIR.nii.gz"
    assert [str(w.message) for w in seen] == [
        f"{flair}: isotropic run (1×1×1 mm): nothing to super-resolve (selected for 'flair' by {filter_file}: it is "
        "fitted all the same)"]
    assert [(Path(r.path).name, r.contrast) for r in sub01.runs] == [("sub-01_acq-cor_T2w.nii.gz", "t2w")]
    assert sorted(Path(p).name for p, reason in sub01.excluded if reason == "excluded by the filter file") == [
        "sub-01_T1map.nii.gz", "sub-01_acq-ax_T1w.nii.gz", "sub-01_acq-iso_T1w.nii.gz"]
    assert sub01.notes == [f"{filter_file}: the query of 'flair' matches no run of sub-01"]
    sub03 = selections["sub-03"]
    assert sub03.runs == [] and sub03.why_empty() == (
        f"sub-03: no run to fit (sub-03_T1w.nii.gz: excluded by the filter file; {filter_file}: the query of 't2w' "
        f"matches no run of sub-03; {filter_file}: the query of 'flair' matches no run of sub-03)")
    assert Selection("04", "pre").why_empty() == "sub-04_ses-pre: no anatomical NIfTI run"


def test_filter_file_head_names_entities_and_special_values(dataset, tmp_path):
    from bids.layout import Query

    path = write_json(tmp_path / "f.json", {"T2_ax": {"suffix": "T2w", "acquisition": "ax", "run": None,
                                                      "reconstruction": "*"}, "pdw": {}})
    assert read_filter_file(path) == {
        "T2_ax": {"datatype": "anat", "suffix": "T2w", "acquisition": "ax", "run": Query.NONE,
                  "reconstruction": Query.REQUIRED},
        "pdw": {"datatype": "anat", "suffix": "PDw"},
    }
    path = write_json(tmp_path / "g.json", {"T2_ax": {"suffix": "T2w", "acquisition": "ax", "run": None}})
    (sub02,) = select_stacks(dataset, ["02"], filter_file=path)
    assert [(Path(r.path).name, r.contrast) for r in sub02.runs] == [("sub-02_acq-ax_T2w.nii.gz", "T2_ax")]


@pytest.mark.parametrize("content, problem", [
    ('{"t2w": {"suffix": "T2w"}', "not valid JSON (Expecting ',' delimiter at line 1, column 26)"),
    ('["t2w"]', "expected a JSON object of head name → query, got a list"),
    ('{}', "no head to select (an empty JSON object)"),
    ('{"t2w": "T2w"}', "the query of 't2w' must be a JSON object of entity → value, got a string"),
    ('{"t2 w": {"suffix": "T2w"}}', "head name 't2 w' must be letters, digits, '_' or '-', starting with a letter or digit"),
    ('{"_t2": {"suffix": "T2w"}}', "head name '_t2' must be letters, digits, '_' or '-', starting with a letter or digit"),
    ('{"t2": {"acquisition": "ax"}}', "the query of 't2' gives no \"suffix\" and 't2' is not an anatomical suffix "
                                      f"({', '.join(ANAT_SUFFIXES)}); add one, e.g. \"suffix\": \"T2w\""),
    ('{"t2w": {"acquisition": {"ax": 1}}}', "t2w.acquisition: expected a string, an integer, a non-empty list of them, "
                                            "null or \"*\", got {\"ax\": 1}"),
])
def test_a_bad_filter_file_is_refused_naming_the_file_and_the_problem(dataset, tmp_path, content, problem):
    path = tmp_path / "filter.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        select_stacks(dataset, filter_file=path)
    assert str(err.value) == f"{path}: {problem}"


def test_an_unknown_entity_in_the_filter_file_is_named_with_the_likely_one(dataset, tmp_path):
    path = write_json(tmp_path / "filter.json", {"t2w": {"acq": "ax"}})
    with pytest.raises(InputError) as err:
        select_stacks(dataset, filter_file=path)
    message = str(err.value)
    assert message.startswith(f"{path}: unknown entity 'acq' in the query of 't2w'; did you mean 'acquisition'? "
                              "(entities: acquisition, ceagent, chunk, datatype, ")
    path = write_json(tmp_path / "filter.json", {"t2w": {"SliceThickness": 4}})
    with pytest.raises(InputError, match=r"unknown entity 'SliceThickness' in the query of 't2w' \(entities: "):
        select_stacks(dataset, filter_file=path)
    with pytest.raises(InputError) as err:
        select_stacks(dataset, filter_file=tmp_path / "absent.json")
    assert str(err.value) == f"{tmp_path / 'absent.json'}: file not found"


def test_a_run_selected_by_two_heads_is_refused(dataset, tmp_path):
    path = write_json(tmp_path / "filter.json", {"t2w": {}, "t2ax": {"suffix": "T2w", "acquisition": "ax"}})
    with pytest.raises(InputError) as err:
        select_stacks(dataset, ["02"], filter_file=path)
    assert str(err.value) == (f"{path}: {dataset / 'sub-02/anat/sub-02_acq-ax_T2w.nii.gz'} is selected by both "
                              "'t2w' and 't2ax'")


def test_nothing_is_written_into_the_bids_dataset(dataset, tmp_path):
    before = snapshot(dataset)
    filter_file = write_json(tmp_path / "filter.json", {"t2w": {}})
    select_stacks(dataset)
    select_stacks(dataset, ["01"])
    select_stacks(dataset, filter_file=filter_file)
    assert snapshot(dataset) == before


def test_a_damaged_sidecar_or_image_is_named(dataset):
    damaged = dataset / "sub-02/anat/sub-02_FLAIR.nii.gz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.warns(InputWarning, match="sub-02_FLAIR.nii.gz: cannot read its NIfTI header"):
        sub02 = select_stacks(dataset, ["02"])[0]
    assert sub02.excluded[0][0] == str(damaged) and sub02.excluded[0][1].startswith("cannot read its NIfTI header (")
    sidecar = dataset / "sub-01/anat/sub-01_acq-ax_T1w.json"
    sidecar.write_text('{"SliceThickness": 4,')
    with pytest.raises(InputError) as err:
        select_stacks(dataset)
    assert str(err.value).startswith(f"{sidecar}: not valid JSON (Expecting property name enclosed in double quotes")


def test_selection_record_is_json_ready(dataset):
    record = by_label(select_stacks(dataset))["sub-01"].to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["label"] == "sub-01" and record["session"] is None
    assert record["runs"][0] == {"path": str(dataset / "sub-01/anat/sub-01_acq-ax_T1w.nii.gz"), "contrast": "t1w",
                                 "suffix": "T1w", "entities": {"acquisition": "ax"}, "spacing_mm": [1.0, 1.0, 4.0],
                                 "thickness_mm": 4.0}
    assert record["excluded"][0] == {"path": str(dataset / "sub-01/anat/sub-01_acq-iso_T1w.nii.gz"),
                                     "reason": "isotropic 3D run (1×1×1 mm): nothing to super-resolve"}


def test_an_invalid_slice_thickness_is_refused(tmp_path):
    """Not ignored: the run would be fitted with another thickness than its sidecar meant."""
    root = make_dataset(tmp_path / "bids", {"sub-01/anat/sub-01_T2w.nii.gz": THICK_AXIAL,
                                            "sub-01/anat/sub-01_T1w.nii.gz": ISOTROPIC},
                        {"sub-01/anat/sub-01_T2w.json": {"SliceThickness": "4mm"}})
    with pytest.raises(InputError, match=r'sub-01_T2w.nii.gz: SliceThickness "4mm" in its sidecar is not a positive '
                                         r'number of mm$'):
        select_stacks(root)


def test_importing_the_package_imports_neither_torch_nor_pybids():
    code = ("import sys, inrsr.bids, inrsr.bids.selection, inrsr.bids.derivatives; "
            "print(sorted(m for m in ('torch', 'bids', 'bidsschematools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
