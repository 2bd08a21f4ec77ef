"""The Python API (``inrsr.fit_stacks``) on a crop of the shared BraTS case: images in memory give the
same volumes as the command line on the same stacks written to files, on the right grid, and
nothing is written to disk; every input mistake is one InputError line."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

import inrsr
from inrsr.acquisition.simulate import simulate_stack
from inrsr.errors import InputError
from inrsr.io.files import write_thickness_sidecar
from tests.jobs.conftest import run

HALF = np.array([28, 28, 20])  # crop half-size in voxels (1 mm)
OPTIONS = {"max_steps": 60, "threads": 1}


def snapshot(folder) -> dict:
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(folder) for f in fs}


@pytest.fixture(scope="module")
def crop_stacks(shared_data, tmp_path_factory):
    """t1c axial and t2w coronal thick stacks (slabs of 4 mm) of a crop, as images and as files."""
    tmp = tmp_path_factory.mktemp("api")
    t1 = nib.load(str(shared_data / "brats_gli_00001" / "t1c.nii.gz"))
    centre = np.round(np.argwhere(np.asarray(t1.dataobj) > 0).mean(axis=0)).astype(int)
    lo = centre - HALF
    images, paths = {}, {}
    for name, file, axis in (("t1", "t1c", 2), ("t2", "t2w", 1)):
        img = nib.load(str(shared_data / "brats_gli_00001" / f"{file}.nii.gz"))
        data = np.asarray(img.dataobj, dtype=np.float32)[tuple(slice(a, a + 2 * h) for a, h in zip(lo, HALF))]
        affine = img.affine @ np.vstack([np.c_[np.eye(3), lo], [0, 0, 0, 1]])
        thick, thick_affine = simulate_stack(data, affine, axis, 4, "box")
        images[name] = nib.Nifti1Image(thick, thick_affine)
        paths[name] = tmp / f"{name}.nii.gz"
        nib.save(images[name], str(paths[name]))
        write_thickness_sidecar(paths[name], 4.0)
    return tmp, images, paths


def test_images_in_memory_match_the_command_line(crop_stacks, tmp_path):
    folder, images, paths = crop_stacks
    before = snapshot(folder)
    out = inrsr.fit_stacks({"t1": images["t1"], "t2": [images["t2"]]}, preset="fast", thickness_mm=4.0, **OPTIONS)
    assert snapshot(folder) == before and not os.listdir(tmp_path)  # nothing written
    assert list(out.images) == ["t1", "t2"]
    code, err, _ = run(["fit", "--t1", paths["t1"], "--t2", paths["t2"], "-o", tmp_path / "cli", "--preset", "fast",
                        "--max-steps", "60", "--threads", "1", "--quiet"])
    assert code == 0, err
    for c, img in out.images.items():
        written = nib.load(str(tmp_path / "cli" / f"{c}.nii.gz"))
        assert img.shape == written.shape and img.get_data_dtype() == np.float32
        np.testing.assert_allclose(img.affine, written.affine, atol=1e-6)
        data, ref = img.get_fdata(), written.get_fdata()
        assert np.isfinite(data).all()
        np.testing.assert_allclose(data, ref, rtol=0, atol=1e-3 * np.abs(ref).max())  # the same fit
    assert out.output_dir is None and out.config.max_steps == 60 and out.log["steps"] == 60
    assert [s["thickness_source"] for s in out.log["stacks"]] == ["option", "option"]
    assert out.model.contrasts == ["t1", "t2"]


def test_output_dir_writes_what_the_command_line_writes(crop_stacks, tmp_path):
    _, _, paths = crop_stacks
    out = inrsr.fit_stacks({"t1": str(paths["t1"]), "t2": paths["t2"]}, preset="fast", ref=paths["t1"], output_dir=tmp_path,
                    **OPTIONS)
    ref = nib.load(str(paths["t1"]))
    assert out.output_dir == tmp_path and out.images["t2"].shape == ref.shape
    np.testing.assert_allclose(out.images["t2"].affine, ref.affine, atol=1e-6)
    for name in ("t1.nii.gz", "t1.json", "t2.nii.gz", "model.pt", "log.json", "report.html", "mask-2_t2.nii.gz"):
        assert (tmp_path / name).is_file(), name
    assert out.log["command_line"] is None and out.log["preset"] == "fast"
    assert [s["thickness_source"] for s in out.log["stacks"]] == ["sidecar", "sidecar"]


@pytest.mark.parametrize("call, message", [
    (lambda im: inrsr.fit_stacks({"t1": im}, nonsense=3), "unknown option: nonsense"),
    (lambda im: inrsr.fit_stacks({"t 1": im}), "t 1 stack 1 (in memory): contrast name 't 1' must be letters, digits, '_' or '-'"),
    (lambda im: inrsr.fit_stacks({}), "stacks: expected a non-empty dict of contrast name → image, path or list of them"),
    (lambda im: inrsr.fit_stacks({"t1": im}, output_dir="x"),
     "output_dir: the stacks, masks and ref must be file paths to be written with their sources (save the images "
     "first, or leave output_dir out to keep the result in memory)"),
    (lambda im: inrsr.fit_stacks({"t1": np.zeros((4, 4, 4))}),
     "t1 stack 1 (in memory): expected a nibabel NIfTI image or a file path, got ndarray"),
    (lambda im: inrsr.fit_stacks({"t1": nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4))}),
     "t1 stack 1 (in memory): stack must be 3D and not empty, got shape (4, 4, 4, 2)"),
    (lambda im: inrsr.fit_stacks({"t1": [im, im]}, masks={"t1": [None]}), "t1: give one mask and one thickness per stack (2 stacks)"),
    (lambda im: inrsr.fit_stacks({"t1": im}, masks=[None]),
     "masks: with stacks given as a dict, give masks as a dict of contrast → mask(s)"),
    (lambda im: inrsr.fit_stacks({"t1": im}, masks={"t1": np.ones((2, 2, 2))}),
     "t1 stack 1 (in memory): its mask is not on the stack's grid (shape (2, 2, 2), stack (56, 56, 10))"),
    (lambda im: inrsr.fit_stacks({"t1": im}, masks={"t1": np.zeros((56, 56, 10))}),
     "t1 stack 1 (in memory): its mask holds no foreground voxel"),
    (lambda im: inrsr.fit_stacks([("t1", im)], thickness_mm={"t1": 4.0}),
     "masks, thickness_mm: with stacks given as (contrast, stack) pairs, give lists in the same order (or one "
     "thickness for all)"),
    (lambda im: inrsr.fit_stacks({"t1": im}, preset="bogus"), "unknown preset 'bogus'; choose one of paper, default, fast"),
    (lambda im: inrsr.fit_stacks({"t1": im}, max_steps=-1),
     "--depth, --mi-every, --threads, --es-min-evals and --max-steps must be non-negative"),
])
def test_input_mistakes_are_one_line(crop_stacks, call, message):
    _, images, _ = crop_stacks
    with pytest.raises(InputError) as info:
        call(images["t1"])
    assert str(info.value) == message


def test_each_foreground_is_found_once_when_the_thickness_is_estimated(crop_stacks, monkeypatch):
    """The estimate and the fit after it share each stack's foreground (no mask given): one
    search per stack, not one for each."""
    import inrsr.samples.training_set as training_set

    _, images, _ = crop_stacks
    searched, estimate_foreground = [], training_set.estimate_foreground

    def counted(data, *args, **kwargs):
        searched.append(data.shape)
        return estimate_foreground(data, *args, **kwargs)

    monkeypatch.setattr(training_set, "estimate_foreground", counted)
    out = inrsr.fit_stacks({"t1": images["t1"], "t2": images["t2"]}, preset="fast", max_steps=20, threads=1)
    assert [s["thickness_source"] for s in out.log["stacks"]] == ["estimate", "estimate"]
    assert searched == [images["t1"].shape, images["t2"].shape]
