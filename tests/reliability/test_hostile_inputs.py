"""Careless and hostile input files and option values: each ends in exactly one error line that
names the file or option, or is accepted as documented; never a traceback."""

from __future__ import annotations

import os
import struct

import nibabel as nib
import numpy as np
import pytest

from tests.reliability.conftest import permissions_testable, save_nifti, write_patched

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", 64, 64) + b"\x08\x02\x00\x00\x00" + bytes(300)


def _truncated_gz(case, path):
    block = case.inputs.paths["t1ax"].read_bytes()
    path.write_bytes(block[: len(block) // 3])


def _zero_bytes(case, path):
    path.write_bytes(b"")


def _png(case, path):
    path.write_bytes(PNG)


def _directory(case, path):
    path.mkdir()


def _nan_voxels(case, path):
    data, affine = case.inputs.arrays["t1ax"]
    bad = data.copy()
    bad[3, 3, 3] = np.nan
    save_nifti(path, bad, affine)


def _constant(case, path):
    data, affine = case.inputs.arrays["t1ax"]
    save_nifti(path, np.full_like(data, 7.0), affine)


def _four_d(case, path):
    data, affine = case.inputs.arrays["t1ax"]
    save_nifti(path, np.stack([data, data], axis=-1), affine)


def _singular_affine(case, path):
    """An sform whose third column is zero (qform code 0, so readers take the sform)."""
    data, affine = case.inputs.arrays["t1ax"]
    img = nib.Nifti1Image(data, affine)
    img.set_qform(None, code=0)
    zero = np.float32(0).tobytes()
    write_patched(path, img, {280 + 8: zero, 296 + 8: zero, 312 + 8: zero})  # srow_x/y/z[2]


# name → (file name, maker, keywords of the error, command). The file-level cases go through
# `baseline cubic` (the same loader as `fit`, without importing torch: ~1 s instead of ~6 s);
# those about a stack's contents go through `fit`.
BAD_FILES = {
    "truncated-gz": ("cut.nii.gz", _truncated_gz, (("truncated", "damaged", "corrupt", "incomplete", "ended"),), "cubic"),
    "zero-bytes": ("empty.nii.gz", _zero_bytes, (("empty", "0 bytes", "zero"),), "cubic"),
    "png-as-nii": ("picture.nii", _png, (("not a nifti", "nifti"),), "cubic"),
    "directory": ("folder.nii.gz", _directory, (("directory", "folder"),), "cubic"),
    "missing": ("absent.nii.gz", None, (("not found", "no such", "does not exist"),), "cubic"),
    "singular-affine": ("singular.nii.gz", _singular_affine, (("singular", "affine"),), "cubic"),
    "four-d": ("fourd.nii.gz", _four_d, (("3d", "4d", "dimension"),), "fit"),
    "nan-voxels": ("nan.nii.gz", _nan_voxels, (("nan", "finite"),), "fit"),
    "constant": ("flat.nii.gz", _constant, ("constant",), "fit"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_stack_file(case, name):
    fname, make, words, command = BAD_FILES[name]
    shown = f"fit --t1 {fname}" if command == "fit" else f"baseline cubic --input {fname}"
    case.expect(f"`{shown}` ({name}): exit 2, one error naming {fname}")
    if make is not None:
        make(case, case.root / fname)
    if command == "fit":
        res = case.fit(["--t1", fname, "-o", "out"])
    else:
        res = case.run(["baseline", "cubic", "--input", fname, "-o", "out.nii.gz"])
    res.expect_error(fname, *words, allow_dirs=("out",))


@pytest.mark.skipif(not permissions_testable(), reason="root that cannot drop CAP_DAC_OVERRIDE")
def test_unreadable_stack(case):
    case.expect("`fit --t1 locked.nii.gz` (mode 000): exit 2, one error naming locked.nii.gz (permission; click's "
                "usage error accepted)")
    case.put("t1ax", "locked.nii.gz")
    os.chmod(case.root / "locked.nii.gz", 0)
    res = case.fit(["--t1", "locked.nii.gz", "-o", "out"], honour_permissions=True)
    res.expect_error("locked.nii.gz", ("permission", "not readable", "cannot read", "denied"), allow_dirs=("out",),
                     click_ok=True)


def test_unknown_option(case):
    case.expect("`fit --no-such-option`: exit 2, click's one 'Error: No such option' line")
    case.put("t1ax")
    res = case.run(["fit", "--t1", "t1ax.nii.gz", "-o", "out", "--no-such-option", "3"])
    res.expect_error("--no-such-option", click_ok=True)


def test_same_file_twice(case):
    case.expect("`--t2 t2cor.nii.gz --t2 ./t2cor.nii.gz`: exit 2, one error naming t2cor.nii.gz (given twice)")
    case.put("t2cor")
    res = case.fit(["--t2", "t2cor.nii.gz", "--t2", "./t2cor.nii.gz", "-o", "out"])
    res.expect_error("t2cor.nii.gz", "twice", allow_dirs=("out",))


def test_contrast_name_escape(case):
    case.expect("`--stack ../../evil=t1ax.nii.gz`: exit 2, one error naming the contrast; nothing written")
    case.put("t1ax")
    res = case.fit(["--stack", "../../evil=t1ax.nii.gz", "-o", "out"])
    res.expect_error("evil", "contrast", allow_dirs=("out",))


def test_output_is_a_file(case):
    case.expect("`fit -o taken` where taken is a regular file: exit 2, one error naming taken (not a folder)")
    case.put("t1ax")
    (case.root / "taken").write_text("mine\n")
    res = case.fit(["--t1", "t1ax.nii.gz", "-o", "taken"])
    res.expect_error("taken", ("folder", "directory"))


# -- masks -----------------------------------------------------------------------------------------------------

def test_mask_other_shape(case):
    case.expect("`--mask` on another stack's grid (40×12×40 for a 40×48×10 stack): exit 2, one error naming the "
                "mask (shape/grid)")
    case.put("t1ax")
    data, affine = case.inputs.arrays["t2cor"]
    save_nifti(case.path("mask.nii.gz"), (data > 0.1).astype(np.uint8), affine)
    res = case.fit(["--t1", "t1ax.nii.gz", "--mask", "mask.nii.gz", "-o", "out"])
    res.expect_error("mask.nii.gz", ("shape", "grid"), allow_dirs=("out",))


def test_mask_all_zero(case):
    case.expect("an all-zero --mask: exit 2, one error naming the mask (empty)")
    case.put("t1ax")
    data, affine = case.inputs.arrays["t1ax"]
    save_nifti(case.path("mask.nii.gz"), np.zeros(data.shape, np.uint8), affine)
    res = case.fit(["--t1", "t1ax.nii.gz", "--mask", "mask.nii.gz", "-o", "out"])
    res.expect_error("mask.nii.gz", "empty", allow_dirs=("out",))


def test_ref_four_d(case):
    case.expect("`--ref` a 4D image: exit 2, one error naming the reference (3D)")
    case.put("t1ax")
    data, affine = case.inputs.arrays["t1ax"]
    save_nifti(case.path("ref4d.nii.gz"), np.stack([data, data], axis=-1), affine)
    res = case.fit(["--t1", "t1ax.nii.gz", "--ref", "ref4d.nii.gz", "-o", "out"])
    res.expect_error("ref4d.nii.gz", ("3d", "4d", "dimension"), allow_dirs=("out",))


def test_bad_qform_code_quiet(case):
    case.expect("a stack whose qform_code is 170 (invalid): exit 0 with exactly one 'inrsr: warning:' line naming "
                "it and no raw nibabel log line on stderr")
    data, affine = case.inputs.arrays["t1ax"]
    write_patched(case.path("odd.nii.gz"), nib.Nifti1Image(data, affine), {252: struct.pack("<h", 170)})  # qform_code
    (case.root / "out").mkdir()
    res = case.run(["baseline", "cubic", "--input", "odd.nii.gz", "-o", "out/cubic.nii.gz"])
    res.expect_warning("odd.nii.gz")
    other = [ln for ln in res.lines if not ln.startswith("inrsr: ") and not ln.startswith("out/cubic.nii.gz:")]
    assert not other, f"raw lines on stderr: {other}{res.show()}"


# -- option sweep --------------------------------------------------------------------------------------------------

E, C, A = "error", "click", "accept"
# option → expectation for -1, 0, inf, nan. error: the tool's one error line naming the option;
# click: click's usage error (an integer option given inf/nan); accept: documented meaning
# (0 = no limit / same as --lr / off; a negative --background-ratio trains on every voxel).
SWEEP = {
    "--lr": (E, E, E, E),
    "--batch-size": (E, E, C, C),
    "--width": (E, E, C, C),
    "--max-steps": (E, A, C, C),
    "--time-limit-s": (E, A, E, E),
    "--render-chunk": (E, E, C, C),
}
CASES = [(opt, v, kind) for opt, kinds in SWEEP.items() for v, kind in zip(("-1", "0", "inf", "nan"), kinds)
         if (opt, v) != ("--lr", "inf")]  # --lr inf: test_silently_wrong.py::test_lr_inf
# Other float options, at the values the code before the fixes accepted (inf) or mishandled.
CASES += [("--checkpoint-every-s", "inf", E), ("--grid-lr", "inf", E), ("--background-ratio", "inf", E),
          ("--background-ratio", "nan", E), ("--background-ratio", "-1", A), ("--adam-beta2", "inf", E)]


@pytest.mark.parametrize("option, value, kind", CASES, ids=[f"{o}={v}" for o, v, _ in CASES])
def test_fit_option_sweep(case, option, value, kind):
    case.put("t1ax")
    if kind == A:
        # Accepted values must not be refused: with an output that is a file, the only error left is the output's.
        case.expect(f"`{option} {value}` accepted (documented meaning): the only error is about the output 'taken'")
        (case.root / "taken").write_text("mine\n")
        res = case.fit(["--t1", "t1ax.nii.gz", "-o", "taken", option, value])
        line = res.expect_error("taken")
        assert option not in line, f"{option} {value} was refused: {line}"
        return
    case.expect(f"`{option} {value}`: exit 2, one error line naming {option}"
                + (" (click usage error)" if kind == C else " before fitting"))
    res = case.fit(["--t1", "t1ax.nii.gz", "-o", "out", option, value])
    res.expect_error(option, click_ok=(kind == C), allow_dirs=("out",))
