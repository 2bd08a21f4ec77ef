"""Derivative names (checked against the BIDS schema), dataset_description.json and .bidsignore."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from inrsr import __version__
from inrsr.bids.derivatives import (BIDS_VERSION, BIDSIGNORE, derivative_entities, derivative_paths, head_suffixes,
                                    write_dataset_description)
from inrsr.bids.selection import Run, Selection, select_stacks
from inrsr.errors import InputError, InputWarning
from tests.bids.conftest import contrast_dataset, write_json


def run(name: str, contrast: str, suffix: str, **entities: str) -> Run:
    return Run(path=f"/data/{name}", contrast=contrast, suffix=suffix, entities=entities,
               spacing_mm=(1.0, 1.0, 4.0), thickness_mm=None)


def relative(paths, root: Path) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


def ignored(relative_path: str) -> bool:
    """Whether a .bidsignore line of inrsr's covers the path (gitignore-like: a pattern without
    '/' matches a name in any folder; 'name/' matches a folder anywhere)."""
    parts = relative_path.split("/")
    for line in BIDSIGNORE:
        if line.endswith("/") and line[:-1] in parts[:-1]:
            return True
        if "/" not in line and fnmatch.fnmatch(parts[-1], line):
            return True
    return False


def test_names_without_session(dataset, tmp_path):
    out = tmp_path / "out"
    sub01 = select_stacks(dataset, ["01"])[0]
    outputs = derivative_paths(out, sub01)
    assert outputs.anat == out / "sub-01/anat"
    assert {h: p.relative_to(out).as_posix() for h, p in outputs.volumes.items()} == {
        "t1w": "sub-01/anat/sub-01_rec-inrsr_T1w.nii.gz", "t2w": "sub-01/anat/sub-01_rec-inrsr_T2w.nii.gz"}
    assert {h: p.relative_to(out).as_posix() for h, p in outputs.sidecars.items()} == {
        "t1w": "sub-01/anat/sub-01_rec-inrsr_T1w.json", "t2w": "sub-01/anat/sub-01_rec-inrsr_T2w.json"}
    assert relative(outputs.masks, out) == ["sub-01/anat/sub-01_acq-ax_desc-T1wforeground_mask.nii.gz",
                                            "sub-01/anat/sub-01_acq-cor_desc-T2wforeground_mask.nii.gz"]
    assert outputs.model == out / "sub-01/anat/sub-01_rec-inrsr_model.pt"
    assert outputs.report == out / "sub-01.html"
    assert outputs.log_dir == out / "sub-01/log"


def test_names_with_session(sessions_dataset, tmp_path):
    out = tmp_path / "out"
    selection = select_stacks(sessions_dataset, ["01"], ["post"])[0]
    outputs = derivative_paths(out, selection)
    assert relative(outputs.files(), out) == [
        "sub-01/ses-post/anat/sub-01_ses-post_rec-inrsr_T1w.nii.gz", "sub-01/ses-post/anat/sub-01_ses-post_rec-inrsr_T1w.json",
        "sub-01/ses-post/anat/sub-01_ses-post_rec-inrsr_T2w.nii.gz", "sub-01/ses-post/anat/sub-01_ses-post_rec-inrsr_T2w.json",
        "sub-01/ses-post/anat/sub-01_ses-post_acq-ax_desc-T1wforeground_mask.nii.gz",
        "sub-01/ses-post/anat/sub-01_ses-post_acq-ax_desc-T1wforeground_mask.json",
        "sub-01/ses-post/anat/sub-01_ses-post_acq-cor_desc-T2wforeground_mask.nii.gz",
        "sub-01/ses-post/anat/sub-01_ses-post_acq-cor_desc-T2wforeground_mask.json",
        "sub-01/ses-post/anat/sub-01_ses-post_rec-inrsr_model.pt",
        "sub-01_ses-post.html",
    ]
    assert outputs.log_dir == out / "sub-01/ses-post/log"


def test_heads_that_share_a_suffix_or_mix_suffixes_get_an_acq_entity(tmp_path):
    selection = Selection("01", None, runs=[
        run("a.nii.gz", "t2_ax", "T2w", acquisition="ax", run="1"),
        run("b.nii.gz", "t2-cor", "T2w", acquisition="cor"),
        run("c.nii.gz", "mixed", "FLAIR"),
        run("d.nii.gz", "mixed", "PDw", reconstruction="norm", inversion="2"),
        run("e.nii.gz", "mixed", "PDw", echo="2"),
        run("f.nii.gz", "t1w", "T1w", ceagent="gad", part="mag"),
    ])
    assert head_suffixes(selection) == {"t2_ax": "T2w", "t2-cor": "T2w", "mixed": "PDw", "t1w": "T1w"}
    outputs = derivative_paths(tmp_path, selection)
    assert [p.name for p in outputs.volumes.values()] == [
        "sub-01_acq-t2ax_rec-inrsr_T2w.nii.gz", "sub-01_acq-t2cor_rec-inrsr_T2w.nii.gz",
        "sub-01_acq-mixed_rec-inrsr_PDw.nii.gz", "sub-01_ce-gad_rec-inrsr_T1w.nii.gz"]
    assert [p.name for p in outputs.masks] == [
        "sub-01_acq-ax_run-1_desc-T2wforeground_mask.nii.gz", "sub-01_acq-cor_desc-T2wforeground_mask.nii.gz",
        "sub-01_desc-FLAIRforeground_mask.nii.gz", "sub-01_rec-norm_desc-PDwforeground_mask.nii.gz",
        "sub-01_echo-2_desc-PDwforeground_mask.nii.gz", "sub-01_ce-gad_part-mag_desc-T1wforeground_mask.nii.gz"]


def test_a_contrast_agent_and_an_echo_stay_in_the_volume_names(tmp_path):
    root = contrast_dataset(tmp_path / "bids")
    outputs = derivative_paths(tmp_path / "out", select_stacks(root)[0])
    assert {h: p.name for h, p in outputs.volumes.items()} == {
        "t1w": "sub-01_rec-inrsr_T1w.nii.gz", "t1w_ce-gad": "sub-01_ce-gad_rec-inrsr_T1w.nii.gz",
        "t2w_echo-1": "sub-01_rec-inrsr_echo-1_T2w.nii.gz", "t2w_echo-2": "sub-01_rec-inrsr_echo-2_T2w.nii.gz",
        "t2starw": "sub-01_rec-inrsr_T2starw.nii.gz"}
    assert [p.name for p in outputs.masks] == [
        "sub-01_desc-T1wforeground_mask.nii.gz", "sub-01_ce-gad_desc-T1wforeground_mask.nii.gz",
        "sub-01_echo-1_desc-T2wforeground_mask.nii.gz", "sub-01_echo-2_desc-T2wforeground_mask.nii.gz",
        "sub-01_part-mag_desc-T2starwforeground_mask.nii.gz"]
    for path in outputs.files()[:-2]:
        assert derivative_entities(path.relative_to(tmp_path / "out").as_posix()) is not None, path.name
    # a head whose runs differ in agent keeps none in its name
    mixed = Selection("01", None, runs=[run("a.nii.gz", "t1", "T1w", ceagent="gad"), run("b.nii.gz", "t1", "T1w")])
    assert derivative_paths(tmp_path, mixed).volumes["t1"].name == "sub-01_rec-inrsr_T1w.nii.gz"


def test_two_outputs_with_one_name_are_refused(tmp_path):
    selection = Selection("01", None, runs=[run("a.nii.gz", "t2_ax", "T2w"), run("b.nii.gz", "t2-ax", "T2w")])
    with pytest.raises(InputError) as err:
        derivative_paths(tmp_path, selection)
    assert str(err.value) == ("sub-01: 't2_ax' and 't2-ax' would both be written to "
                              "sub-01_acq-t2ax_rec-inrsr_T2w.nii.gz; rename one (in the filter file) or give the runs "
                              "distinct entities")
    selection = Selection("01", None, runs=[run("a.nii.gz", "t2w", "T2w", inversion="1"),
                                            run("b.nii.gz", "t2w", "T2w", inversion="2")])
    with pytest.raises(InputError, match="'/data/a.nii.gz' and '/data/b.nii.gz' would both be written to "
                                         "sub-01_desc-T2wforeground_mask.nii.gz"):
        derivative_paths(tmp_path, selection)


def test_every_name_produced_passes_the_bids_schema(dataset, sessions_dataset, tmp_path):
    out = tmp_path / "out"
    selections = select_stacks(dataset) + select_stacks(sessions_dataset)
    selections.append(Selection("07", "pre", runs=[
        run("a.nii.gz", "t2_ax", "T2w", acquisition="ax", run="01"), run("b.nii.gz", "t2cor", "T2w"),
        run("c.nii.gz", "flair", "FLAIR", ceagent="gad", reconstruction="norm", echo="1", part="mag", chunk="2")]))
    checked = 0
    for selection in selections:
        outputs = derivative_paths(out, selection)
        for path in outputs.files():
            name = path.relative_to(out).as_posix()
            entities = derivative_entities(name)
            if path in (outputs.model, outputs.report):
                assert entities is None and ignored(name), name
                continue
            assert entities is not None, name
            assert entities["subject"] == selection.subject and entities.get("session") == selection.session
            checked += 1
        assert ignored((outputs.log_dir / "log.json").relative_to(out).as_posix())
    assert checked == 2 * (4 + 3 + 0 + 4 + 4 + 4 + 6)  # volumes and masks, with their sidecars
    assert derivative_entities("sub-01/ses-post/anat/sub-01_ses-post_acq-t2ax_rec-inrsr_T2w.nii.gz") == {
        "subject": "01", "session": "post", "datatype": "anat", "acquisition": "t2ax", "reconstruction": "inrsr",
        "suffix": "T2w", "extension": ".nii.gz"}
    assert derivative_entities("dataset_description.json") == {"path": "dataset_description.json"}


@pytest.mark.parametrize("name", [
    "sub-01/anat/sub-01_rec-inrsr_acq-ax_T2w.nii.gz",       # entities out of order
    "sub-01/anat/sub-01_rec-in_rsr_T2w.nii.gz",             # '_' in a label
    "sub-01/anat/sub-02_rec-inrsr_T2w.nii.gz",              # another subject's name in sub-01
    "sub-01/anat/sub-01_rec-inrsr_T2.nii.gz",               # not a suffix
    "sub-01/anat/sub-01_rec-inrsr_T2w.nii.gz.tmp",          # not an extension
])
def test_names_that_break_the_rules_are_refused(name):
    assert derivative_entities(name) is None


def test_the_bids_version_is_the_schemas_or_older():
    import bidsschematools.schema

    schema_version = bidsschematools.schema.load_schema().bids_version
    as_tuple = lambda v: tuple(int(x) for x in v.split("-")[0].split("."))  # noqa: E731
    assert as_tuple(BIDS_VERSION) <= as_tuple(schema_version)


def test_dataset_description_names_inrsr_and_the_source(dataset, tmp_path):
    out = tmp_path / "derivatives" / "inrsr"
    path = write_dataset_description(out, dataset)
    assert path == out / "dataset_description.json"
    description = json.loads(path.read_text())
    assert description == {
        "Name": "inrsr: isotropic anatomical volumes of tiny",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "inrsr", "Version": __version__, "Description": description["GeneratedBy"][0]["Description"]}],
        "SourceDatasets": [{"URL": dataset.as_uri()}],
    }
    assert "implicit neural representation" in description["GeneratedBy"][0]["Description"]
    assert (out / ".bidsignore").read_text() == "*.html\n*_model.pt\nlog/\n"
    assert sorted(p.name for p in out.iterdir()) == [".bidsignore", "dataset_description.json"]  # no temporary file


def test_dataset_description_cites_the_doi_when_the_source_has_one(tmp_path):
    source = write_json(tmp_path / "bids" / "dataset_description.json",
                        {"Name": "ds", "BIDSVersion": "1.8.0", "DatasetDOI": "doi:10.18112/openneuro.ds000001.v1.0.0"}).parent
    description = json.loads(write_dataset_description(tmp_path / "out", source).read_text())
    assert description["SourceDatasets"] == [{"DOI": "doi:10.18112/openneuro.ds000001.v1.0.0"}]


def test_an_existing_inrsr_description_is_kept(dataset, tmp_path):
    out = tmp_path / "out"
    path = write_dataset_description(out, dataset)
    (out / ".bidsignore").write_text("extra/\n*.html\n")
    first = path.read_bytes()
    path.touch()
    mtime = path.stat().st_mtime_ns
    write_dataset_description(out, dataset)
    assert path.read_bytes() == first and path.stat().st_mtime_ns == mtime
    assert (out / ".bidsignore").read_text() == "extra/\n*.html\n*_model.pt\nlog/\n"
    older = {**json.loads(first), "GeneratedBy": [{"Name": "inrsr", "Version": "0.0.1"}]}
    path.write_text(json.dumps(older))
    with pytest.warns(InputWarning, match=f"written by inrsr 0.0.1, this is inrsr {__version__}"):
        write_dataset_description(out, dataset)
    assert json.loads(path.read_text()) == older


def test_another_pipelines_output_folder_is_refused(dataset, tmp_path):
    out = tmp_path / "fmriprep"
    path = write_json(out / "dataset_description.json", {"Name": "fMRIPrep outputs", "BIDSVersion": "1.9.0",
                                                         "DatasetType": "derivative",
                                                         "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.0"}]})
    before = path.read_text()
    with pytest.raises(InputError) as err:
        write_dataset_description(out, dataset)
    assert str(err.value) == (f"{path}: the output folder belongs to another pipeline (fMRIPrep); choose another "
                              "output folder")
    assert path.read_text() == before and not (out / ".bidsignore").exists()
    with pytest.raises(InputError) as err:
        write_dataset_description(dataset, dataset)
    assert str(err.value) == (f"{dataset}: the output folder is the BIDS dataset itself; choose another one "
                              "(e.g. BIDS_DIR/derivatives/inrsr)")
    raw = tmp_path / "raw"
    write_json(raw / "dataset_description.json", {"Name": "raw", "BIDSVersion": "1.9.0"})
    with pytest.raises(InputError) as err:
        write_dataset_description(raw, dataset)
    assert str(err.value) == (f"{raw / 'dataset_description.json'}: the output folder holds a dataset that is not a "
                              "derivatives dataset; choose another output folder")
