"""`inrsr baseline smore`: the options' defaults are the config's, and bad input fails in one line."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from inrsr.baselines.smore.config import SmoreConfig
from inrsr.cli import main, smore as smore_command
from tests.conftest import write_nifti


def run(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stderr.strip()


def check_error(code, err, *needles):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("inrsr: error: "), err
    for n in needles:
        assert n in err, err


def test_cli_defaults_are_the_config_defaults():
    defaults = {p.name: p.default for p in smore_command.params}
    cfg = SmoreConfig()
    for option, field_name in (("profile", "profile"), ("iterations", "iterations"), ("time_limit_s", "time_limit_s"),
                               ("patch_size", "patch_size"), ("batch_size", "batch_size"), ("seed", "seed"),
                               ("device", "device"), ("threads", "threads")):
        assert defaults[option] == getattr(cfg, field_name), option


def test_cli_errors(tmp_path):
    rng = np.random.default_rng(0)
    iso = write_nifti(tmp_path / "iso.nii.gz", rng.uniform(size=(40, 40, 40)).astype(np.float32), np.eye(4))
    small = write_nifti(tmp_path / "small.nii.gz", rng.uniform(size=(20, 40, 6)).astype(np.float32),
                        np.diag([1.0, 1.0, 4.0, 1.0]))
    good = write_nifti(tmp_path / "good.nii.gz", rng.uniform(size=(40, 40, 6)).astype(np.float32),
                       np.diag([1.0, 1.0, 4.0, 1.0]))
    out = tmp_path / "out.nii.gz"
    smore = ["baseline", "smore", "--input"]
    check_error(*run([*smore, iso, "-o", out]), "iso.nii.gz", "not anisotropic")
    check_error(*run([*smore, small, "-o", out]), "small.nii.gz", "smaller than the training patch")
    check_error(*run([*smore, good, "-o", out, "--patch", "4"]), "--patch must be at least 8")
    check_error(*run([*smore, good, "-o", out, "--iterations", "0"]), "--iterations")
    check_error(*run([*smore, good, "-o", out, "--thickness", "-1"]), "--thickness", "positive finite number")
    check_error(*run([*smore, good, "-o", out, "--ref", good, "--resolution", "1"]), "exclusive")
    check_error(*run([*smore, tmp_path / "none.nii.gz", "-o", out]), "not found")
    check_error(*run([*smore, good, "-o", tmp_path / "out.txt"]), "must end in .nii")
    check_error(*run([*smore, good, "-o", tmp_path / "no" / "out.nii.gz"]), "does not exist")
    check_error(*run([*smore, good, "-o", iso]), "iso.nii.gz", "output exists")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.nii.gz", "iso.nii.gz", "small.nii.gz"]
