"""The report of a real fit on a crop of the shared BraTS case (t1c axial, t2w coronal, 1 mm
slices 4 mm apart, the t2 stack's sform 3 mm from its qform, which the fit warns about). Checks
the sections, that every picture is an embedded PNG that decodes, the numbers it reports
(support fractions against their exact value, self-consistency against ``inrsr check``, slice
profiles), the warning at the top, ``inrsr report`` rebuilding it, its errors, and the page in a
real headless browser. The registration section is tested in tests/report/test_sections.py."""

from __future__ import annotations

import base64
import io
import json
import re

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.jobs.conftest import FAST, run

HALF = np.array([32, 32, 24])  # crop half-size in voxels (1 mm)
SECTIONS = ("warnings", "volumes", "detail", "masks", "support", "profiles", "consistency", "training", "run")


def crop(img: nib.Nifti1Image, centre: np.ndarray) -> nib.Nifti1Image:
    lo = centre - HALF
    data = np.asarray(img.dataobj, dtype=np.float32)[tuple(slice(a, a + 2 * h) for a, h in zip(lo, HALF))]
    return nib.Nifti1Image(data, img.affine @ np.vstack([np.c_[np.eye(3), lo], [0, 0, 0, 1]]), img.header)


@pytest.fixture(scope="module")
def crop_fit(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    t1 = nib.load(str(shared_data / "brats_gli_00001" / "t1c.nii.gz"))
    centre = np.round(np.argwhere(np.asarray(t1.dataobj) > 0).mean(axis=0)).astype(int)
    for name, file, view in (("t1", "t1c", "axial"), ("t2", "t2w", "coronal")):
        nib.save(crop(nib.load(str(shared_data / "brats_gli_00001" / f"{file}.nii.gz")), centre),
                 str(tmp / f"{name}_hr.nii.gz"))
        code, err, _ = run(["simulate", tmp / f"{name}_hr.nii.gz", "--view", view, "--factor", "4", "--profile",
                            "point", "-o", tmp / f"{name}_lr.nii.gz"])
        assert code == 0, err
    moved = nib.load(str(tmp / "t2_lr.nii.gz"))
    sform = moved.affine.copy()
    sform[:3, 3] += [3.0, 0.0, 0.0]  # the header's sform places the stack 3 mm off; its qform does not
    img = nib.Nifti1Image(np.asarray(moved.dataobj), sform)
    img.set_qform(moved.affine, code=1)
    img.set_sform(sform, code=1)
    nib.save(img, str(tmp / "t2_lr.nii.gz"))
    code, err, _ = run(["fit", "--t1", tmp / "t1_lr.nii.gz", "--t2", tmp / "t2_lr.nii.gz", "--ref",
                        tmp / "t1_hr.nii.gz", "-o", tmp / "out", *FAST, "--max-steps", "150"])
    assert code == 0, err
    return tmp


def sections(html: str) -> dict[str, str]:
    """Section id → its HTML."""
    parts = re.split(r'(?=<section id=")', html)
    return {re.match(r'<section id="([^"]+)"', p).group(1): p for p in parts if p.startswith("<section id=")}


def images(html: str) -> list[Image.Image]:
    """Every picture of the page, decoded (fails on a picture that is not an embedded PNG)."""
    sources = re.findall(r'<img [^>]*src="([^"]*)"', html)
    out = []
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:60]
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        img.load()
        out.append(img)
    return out


def cells(section: str) -> list[list[str]]:
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section)]
    return [r for r in rows if r]  # not the header


def test_report_has_every_section_and_only_embedded_pictures(crop_fit):
    html = (crop_fit / "out" / "report.html").read_text()
    found = sections(html)
    assert set(SECTIONS) <= set(found) and "registration" not in found
    pictures = images(html)
    # 2 contrasts × (volumes, detail) + masks + support + MI curve + loss curves
    assert len(pictures) == 8
    assert all(p.format == "PNG" and min(p.size) >= 150 for p in pictures)
    assert not re.search(r'(src|href)="(?!data:|#)', html) and "<script" not in html and "<link" not in html


def test_warnings_are_repeated_at_the_top(crop_fit):
    html = (crop_fit / "out" / "report.html").read_text()
    log = json.loads((crop_fit / "out" / "log.json").read_text())
    assert any("qform and sform disagree" in w for w in log["warnings"])
    top = sections(html)["warnings"]
    assert "t2_lr.nii.gz: the header&#x27;s qform and sform disagree" in top


def test_support_fractions_match_the_slice_gaps(crop_fit):
    """1 mm slices 4 mm apart: a point is more than 1 mm from a measured slice when it lies more
    than 1.5 mm from the nearest slice centre, a quarter of the positions."""
    rows = {r[0]: r for r in cells(sections((crop_fit / "out" / "report.html").read_text())["support"])}
    beyond_1mm = float(rows["t1"][4].rstrip(" %"))
    assert beyond_1mm == pytest.approx(25.0, abs=3.0)
    assert float(rows["t1"][5].rstrip(" %")) < 1.0  # nothing far from the t1 stack inside the crop


def test_self_consistency_agrees_with_check(crop_fit):
    out = crop_fit / "out"
    code, err, _ = run(["check", "--model", out / "model.pt", "-o", crop_fit / "check.json", "--quiet"])
    assert code == 0, err
    checked = [r["self"]["psnr"] for r in json.loads((crop_fit / "check.json").read_text())["stacks"]]
    reported = [float(r[2]) for r in cells(sections((out / "report.html").read_text())["consistency"])]
    assert reported == pytest.approx(checked, abs=0.3)  # a random subset of the voxels vs all of them


def test_slice_profiles_say_where_the_thickness_came_from(crop_fit):
    rows = cells(sections((crop_fit / "out" / "report.html").read_text())["profiles"])
    # stack, contrast, voxels, spacing, slice axis, thickness, thickness from, estimated, estimated by, profile,
    # training voxels
    assert [(r[1], r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows] == [("t1", "2", "1", "sidecar", "–", "–", "box"),
                                                                          ("t2", "1", "1", "sidecar", "–", "–", "box")]


def test_report_command_rebuilds_it_through_another_point(crop_fit):
    out = crop_fit / "out"
    centre = nib.load(str(out / "t1.nii.gz")).affine @ np.r_[np.array(nib.load(str(out / "t1.nii.gz")).shape) / 3, 1]
    code, err, _ = run(["report", "--model", out / "model.pt", "-o", crop_fit / "again.html", "--point",
                        *np.round(centre[:3], 1)])
    assert code == 0, err
    again = (crop_fit / "again.html").read_text()
    assert set(sections(again)) == set(sections((out / "report.html").read_text()))
    assert "through (" + ", ".join(f"{v:.1f}" for v in np.round(centre[:3], 1)) + ") mm" in again
    assert len(images(again)) == 8


def test_report_command_errors(crop_fit, tmp_path):
    out = crop_fit / "out"
    code, err, _ = run(["report", "--model", out / "model.pt"])
    assert code == 2 and err == f"inrsr: error: {out / 'report.html'}: output exists (use --overwrite to replace it)"
    code, err, _ = run(["report", "--model", out / "model.pt", "-o", tmp_path / "r.html", "--point", "0", "0", "900"])
    assert code == 2 and err.startswith("inrsr: error: --point 0 0 900: outside the output grid's field of view (x ")
    code, err, _ = run(["report", "--model", tmp_path / "none.pt", "-o", tmp_path / "r.html"])
    assert code == 2 and err.startswith(f"inrsr: error: {tmp_path / 'none.pt'}: ")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.browser
def test_report_in_a_headless_browser(crop_fit, tmp_path):
    from tests.report.browser import broken_images, opened

    report = crop_fit / "out" / "report.html"
    with opened(report) as page:
        assert broken_images(page) == []
        assert page.errors == []
        assert page.evaluate("document.images.length") == 8
        assert page.evaluate("document.querySelector('#support h2').textContent") == "Support of the field"
        heights = page.evaluate("Array.from(document.images).map(i => i.getBoundingClientRect().height)")
        assert min(heights) > 100  # every picture is drawn at a readable size
    # the check fails loudly on a page with a picture the browser cannot decode
    html = report.read_text()
    start = html.index("base64,") + len("base64,")
    damaged = tmp_path / "damaged.html"
    damaged.write_text(html[:start] + "AAAA" + html[start + 4000:])
    with opened(damaged) as page:
        assert len(broken_images(page)) == 1
