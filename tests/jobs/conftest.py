"""Shared by the job tests: three thick phantom stacks written as NIfTI files, and a CLI runner.

``run`` and ``FAST`` are imported by the test modules of this folder (``from tests.jobs.conftest import FAST, run``).
"""

from __future__ import annotations

import nibabel as nib
import pytest
from click.testing import CliRunner

from inrsr.acquisition.phantom import head_phantom
from inrsr.acquisition.simulate import simulate_stack
from inrsr.cli import main


@pytest.fixture(scope="module")
def phantom_stacks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stacks")
    vols, aff, _ = head_phantom((40, 48, 40), seed=4)
    paths = {}
    for name, contrast, axis in (("t1ax", "t1", 2), ("t2cor", "t2", 1), ("t2sag", "t2", 0)):
        data, affine = simulate_stack(vols[contrast], aff, axis, 4, "box")
        paths[name] = tmp / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(paths[name]))
    return tmp, paths


def run(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stderr.strip(), result.stdout


FAST = ["--preset", "fast", "--max-steps", "60", "--threads", "1", "--quiet"]
