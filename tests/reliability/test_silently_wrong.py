"""Silently wrong: input the tool used to accept without a word (or mangle), that must either be
used as the user meant or be named in exactly one ``inrsr: warning:`` / ``inrsr: error:`` line."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tests.reliability.conftest import save_nifti, write_patched


def _only_cli_lines(res) -> None:
    """A ``--quiet`` fit prints nothing but its own ``inrsr:`` lines (no raw nibabel/numpy output)."""
    other = [ln for ln in res.lines if not ln.startswith("inrsr: ")]
    assert not other, f"stderr lines not from the CLI: {other}{res.show()}"


# -- 7. a contrast given twice ---------------------------------------------------------------------------

def test_same_contrast_option_twice(case):
    case.expect("`--t2 t2cor.nii.gz --t2 t2sag.nii.gz`: exit 0, both stacks used (log.json 'stacks' has 2 "
                "entries, one per file)")
    case.put("t2cor")
    case.put("t2sag")
    res = case.fit(["--t2", "t2cor.nii.gz", "--t2", "t2sag.nii.gz", "-o", "out"])
    res.expect_success("out")
    stacks = json.loads((case.root / "out" / "log.json").read_text())["stacks"]
    names = sorted(s["path"].rsplit("/", 1)[-1] for s in stacks)
    assert names == ["t2cor.nii.gz", "t2sag.nii.gz"], f"stacks used: {names}{res.show()}"


# -- 8. learning rates ------------------------------------------------------------------------------------

def test_lr_inf(case):
    case.expect("exit 2 before fitting, one error naming --lr (not finite)")
    case.put("t1ax")
    res = case.fit(["--t1", "t1ax.nii.gz", "-o", "out", "--lr", "inf", "--max-steps", "5000"], timeout=60)
    res.expect_error("--lr", allow_dirs=("out",), max_s=45)


def test_lr_diverges(case):
    case.expect("`--lr 1e30`: exit 2, one error saying the fit diverged (non-finite loss) and suggesting a lower "
                "--lr; no volume or model written, no temp file")
    case.put("t1ax")
    case.put("t2cor")
    res = case.fit(["--t1", "t1ax.nii.gz", "--t2", "t2cor.nii.gz", "-o", "out", "--lr", "1e30"])
    res._common()
    assert res.rc == 2, f"exit status {res.rc}, expected 2{res.show()}"
    assert len(res.error_lines) == 1, res.show()
    from tests.reliability.conftest import check_keywords

    check_keywords(res.error_lines[0], [("diverg", "non-finite", "not finite"), "--lr"], res)
    written = [p for p in res.changes.created if p.endswith((".nii.gz", "model.pt"))]
    assert not written, f"outputs of a diverged fit: {written}{res.show()}"
    assert not res.changes.modified and not res.changes.removed, res.show()


# -- 9. suspicious headers and shapes -> one warning naming the file ----------------------------------------

def _pixdim0(path, data, affine):
    """Slice axis pixdim 0, qform and sform codes 0: nibabel builds the affine from pixdim."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)
    write_patched(path, img, {76 + 12: np.float32(0).tobytes()})  # pixdim[3]


def _complex(path, data, affine):
    save_nifti(path, (data * np.exp(1j * np.pi)).astype(np.complex64), affine)  # real part: −magnitude


def _slices(n):
    def make(path, data, affine):
        img = nib.Nifti1Image(data, affine).slicer[:, :, 4:4 + n]
        save_nifti(path, np.asarray(img.dataobj), img.affine)
    return make


def _qform_sform_disagree(path, data, affine):
    img = nib.Nifti1Image(data, affine)
    turn = np.array([[0, -1, 0, 30.0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # 90° about z, 30 mm
    img.set_sform(affine, code=1)
    img.set_qform(turn @ affine, code=1)
    nib.save(img, str(path))


WARNINGS = {
    "pixdim-zero": (_pixdim0, "slice pixdim 0 with qform/sform codes 0"),
    "complex64": (_complex, "complex64 data (magnitude used)"),
    "single-slice": (_slices(1), "a stack of a single slice"),
    "two-slices": (_slices(2), "a stack of 2 slices"),
    "qform-sform-disagree": (_qform_sform_disagree, "qform and sform 90° and 30 mm apart"),
}


@pytest.mark.parametrize("name", list(WARNINGS))
def test_suspicious_stack_warns(case, name):
    make, text = WARNINGS[name]
    case.expect(f"{text}: exit 0, exactly one 'inrsr: warning:' line naming {name}.nii.gz, no other stderr")
    data, affine = case.inputs.arrays["t1ax"]
    make(case.path(f"{name}.nii.gz"), data, affine)
    res = case.fit(["--t1", f"{name}.nii.gz", "-o", "out"])
    res.expect_warning(f"{name}.nii.gz")
    _only_cli_lines(res)
    if name == "complex64":
        out = np.asanyarray(nib.load(str(case.root / "out" / "t1.nii.gz")).dataobj)
        assert np.percentile(out, 99) > 0.5 * float(data.max()), \
            f"the output is not the magnitude image (99th percentile {np.percentile(out, 99):.3g}){res.show()}"


def test_single_nonzero_voxel(case):
    case.expect("a stack with one non-zero voxel: exit 2 with one error naming it, or exit 0 with one warning "
                "naming it; nothing else on stderr")
    data, affine = case.inputs.arrays["t1ax"]
    one = np.zeros_like(data)
    one[20, 24, 5] = 1.0
    save_nifti(case.path("one.nii.gz"), one, affine)
    res = case.fit(["--t1", "one.nii.gz", "-o", "out"])
    if res.rc == 0:
        res.expect_warning("one.nii.gz")
    else:
        res.expect_error("one.nii.gz", allow_dirs=("out",))
    _only_cli_lines(res)
