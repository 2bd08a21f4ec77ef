"""The report's sections built from a known fit-like state: two thick phantom stacks (t1 axial,
t2 coronal) whose "outputs" are the phantom's truths, the t2 stack's header 3 mm off where
registration put it back. Checks the section order, the registration table against the known
transform, the support over the foreground against its exact value, and every picture."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.config import PRESETS
from inrsr.geometry import Grid
from inrsr.io.stack import Stack
from inrsr.register.joint import registration_report
from inrsr.report.evidence import Evidence
from inrsr.report.planes import foreground_centre_mm
from inrsr.report.sections import brain_support, build_sections
from inrsr.samples.foreground import estimate_foreground

SHIFT = np.eye(4)
SHIFT[0, 3] = 3.0  # the t2 header places the stack 3 mm to the right of where it was acquired


def evidence(tmp_path, t1_thickness_mm: float = 4.0) -> Evidence:
    truths, affine, _ = head_phantom((40, 48, 40), seed=2)
    stacks, file_affines = [], []
    for contrast, axis in (("t1", 2), ("t2", 1)):
        data, aff = simulate_stack(truths[contrast], affine, axis, 4, "box")
        thickness = t1_thickness_mm if contrast == "t1" else 4.0
        stacks.append(Stack(data, aff, contrast, str(tmp_path / f"{contrast}.nii.gz"), thickness))
        file_affines.append(SHIFT @ aff if contrast == "t2" else aff)
    as_filed = [Stack(s.data, a, s.contrast, s.path, s.thickness_mm) for s, a in zip(stacks, file_affines)]
    transforms = registration_report(as_filed, [np.eye(4), np.linalg.inv(SHIFT)], 0)
    masks = [estimate_foreground(s.data) for s in stacks]
    log = {
        "transforms": transforms, "steps": 60, "stopped_by": "limit", "final_mi": 0.61, "warnings": [],
        "stacks": [{"thickness_source": "option", "n_train_points": 1000}] * 2, "seconds": {"fit": 2.0},
        "mi_curve": [{"step": k, "mi": 0.5 + k / 1000, "mi_t1_t2": 0.5 + k / 1000} for k in (20, 40, 60)],
        "loss_curve": [{"step": k, "loss_t1": 1.0 / k, "loss_t2": 2.0 / k} for k in (10, 20, 30, 40, 50, 60)],
    }
    scores = [{"psnr": 41.0, "nrmse": 0.01, "corr": 0.999, "voxels": 500}] * 2
    return Evidence(tmp_path, Grid(truths["t1"].shape, affine), dict(truths), stacks, file_affines, masks,
                    PRESETS["fast"].replace(register=True), log, scores,
                    foreground_centre_mm([(m, s.affine) for m, s in zip(masks, stacks)]))


def test_sections_in_order_with_the_registration_found(tmp_path):
    sections = build_sections(evidence(tmp_path))
    assert [s.anchor for s in sections] == ["volumes", "detail", "masks", "support", "registration", "profiles",
                                            "consistency", "training", "run"]
    reg = sections[4].body
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", reg)]
    rows = [r for r in rows if r]
    assert [r[2] for r in rows] == ["reference", "moved"]
    assert float(rows[1][3]) == pytest.approx(0.0, abs=1e-6)  # rotation, degrees
    assert float(rows[1][4]) == pytest.approx(3.0, abs=1e-3)  # centre shift, mm
    for section in sections:
        for src in re.findall(r'src="data:image/png;base64,([^"]+)"', section.body):
            img = Image.open(io.BytesIO(base64.b64decode(src)))
            img.load()
            assert img.format == "PNG" and min(img.size) >= 150


def test_support_over_the_foreground(tmp_path):
    """Contiguous 4 mm slices measure everything inside their field of view. Slices 0.8 mm thick
    4 mm apart, centred half-way between the output grid's planes: the output planes lie 0.5 or
    1.5 mm from the nearest slice centre, so 0.1 or 1.1 mm from a measured point, half of each."""
    contiguous = brain_support(evidence(tmp_path))
    assert contiguous["t1"]["beyond_1mm"] == pytest.approx(0.0, abs=1e-3)
    assert contiguous["t2"]["beyond_1mm"] == pytest.approx(0.0, abs=1e-3)
    gaps = brain_support(evidence(tmp_path, t1_thickness_mm=0.8))
    assert gaps["t1"]["beyond_1mm"] == pytest.approx(0.5, abs=0.03)
    assert gaps["t1"]["beyond_5mm"] == 0.0 and gaps["t1"]["p95_mm"] == pytest.approx(1.1, abs=1e-3)
    assert gaps["t2"] == contiguous["t2"]
