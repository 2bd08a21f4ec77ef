"""Memory safety and escapes: absurd numbers and crafted model files must end in one error line,
never in a crash (exit 139), a memory blow-up or a file written outside the output folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.reliability.conftest import craft_model, rename_contrast

# A fit that reaches its loop runs for minutes with this: a case that must fail "before fitting"
# and does not is ended by its timeout instead of passing after a short fit.
LONG = ["--max-steps", "5000"]
CRAFTED_RSS_MB = 1536


# -- 1. slice thickness ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, words", [
    ("1e11", ("extent", "larger", "exceeds", "field of view")),
    ("inf", ("finite", "inf")),
    ("nan", ("finite", "nan")),
], ids=["1e11", "inf", "nan"])
def test_thickness_absurd(case, value, words):
    # a finite thickness is judged against the stack (the error names the file); a non-finite one is
    # refused while the options are parsed (the error names the option)
    named = "t.nii.gz" if value == "1e11" else "--thickness"
    case.expect(f"exit 2 before fitting; one error naming {named}: thickness {value} "
                f"({'larger than the stack extent' if value == '1e11' else 'not finite'}); never exit 139")
    case.put("t2cor", "t.nii.gz")
    res = case.fit(["--t2", "t.nii.gz", "--thickness", value, "-o", "out", *LONG], timeout=60)
    assert res.rc not in (-11, 139), f"crashed{res.show()}"
    res.expect_error(named, "thickness", words, allow_dirs=("out",), max_s=45)


# -- 2. crafted model files ------------------------------------------------------------------------

def _contrast(name):
    def mutate(p, root):
        rename_contrast(p, "t1", name(root) if callable(name) else name)
    return mutate


def _nan_weights(p, root):
    key = next(k for k in p["state_dict"] if k.startswith("trunk.") and k.endswith("weight"))
    w = p["state_dict"][key].clone()
    w.view(-1)[:5] = float("nan")
    p["state_dict"][key] = w


def _drop(key):
    def mutate(p, root):
        del p[key]
    return mutate


def _shape_mismatch(p, root):
    import torch

    key = next(k for k in p["state_dict"] if k.startswith("trunk.") and k.endswith("weight"))
    w = p["state_dict"][key]
    p["state_dict"][key] = torch.zeros(w.shape[0] + 3, w.shape[1])


def _config(**changes):
    def mutate(p, root):
        p["config"].update(changes)
    return mutate


def _huge_foreground(p, root):
    p["foregrounds"][0]["shape"] = [1600, 1600, 1600]  # 4.1e9 voxels, from a few kB of bits


def _far_centre(p, root):
    p["normaliser"]["centre_mm"] = [1e12, 1e12, 1e12]


# name → (mutation, keywords of the error, expected behaviour)
CRAFTED = {
    "contrast-dotdot": (_contrast("../../x"), ("contrast",), "contrast '../../x' refused; nothing written anywhere"),
    "contrast-absolute": (_contrast(lambda root: str(root / "abs" / "x")), ("contrast",),
                          "contrast '<sandbox>/abs/x' refused; nothing written anywhere"),
    "contrast-slash": (_contrast("a/b"), ("contrast",), "contrast 'a/b' refused"),
    "contrast-empty": (_contrast(""), ("contrast",), "empty contrast name refused"),
    "nan-weights": (_nan_weights, (("nan", "finite"),), "NaN in state_dict refused"),
    "missing-normaliser": (_drop("normaliser"), ("normaliser",), "missing key named"),
    "state-shape-mismatch": (_shape_mismatch, (("weight", "shape", "size", "match"),),
                             "state_dict shape mismatch refused (the tensor or its shape named)"),
    "width-20000": (_config(width=20000), (), "config width 20000 refused quickly, RSS < 1.5 GB"),
    "log2-table-60": (_config(grid_log2_table=60), (), "grid_log2_table 60 refused quickly, RSS < 1.5 GB"),
    "foreground-1600cubed": (_huge_foreground, (), "foreground shape 1600^3 with short bits refused, RSS < 1.5 GB"),
}


@pytest.fixture
def sample_out(case):
    """Where crafted models are rendered: deep enough that ``../../x`` stays in the sandbox."""
    (case.root / "abs").mkdir()
    return "a/b/out"


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_model(case, base_fit, sample_out, name):
    mutate, words, text = CRAFTED[name]
    case.expect(f"`sample` exit 2, one error naming evil/model.pt: {text}; nothing written outside a/b/out")
    model = craft_model(base_fit.model, case.path("evil/model.pt"), lambda p: mutate(p, case.root))
    res = case.run(["sample", "--model", "evil/model.pt", "-o", sample_out, "--threads", "1"],
                   rss_mb=CRAFTED_RSS_MB, timeout=60)
    assert res.rc not in (-11, 139), f"crashed{res.show()}"
    res.expect_error("model.pt", *words, allow_dirs=("a", "a/b", "a/b/out"), max_s=30)
    assert model.is_file()


def test_crafted_model_far_centre(case, base_fit, sample_out):
    case.expect("`sample` of a model whose normaliser centre is 1e12 mm: exit 2 with one error naming "
                "model.pt (values out of range), or exit 0 with finite volumes; never a crash")
    craft_model(base_fit.model, case.path("evil/model.pt"), lambda p: _far_centre(p, case.root))
    res = case.run(["sample", "--model", "evil/model.pt", "-o", sample_out, "--threads", "1"],
                   rss_mb=CRAFTED_RSS_MB, timeout=90)
    assert res.rc not in (-11, 139), f"crashed{res.show()}"
    if res.rc == 0:
        import nibabel as nib

        res.expect_success(sample_out)
        for c in ("t1", "t2"):
            data = np.asanyarray(nib.load(str(case.root / sample_out / f"{c}.nii.gz")).dataobj)
            assert np.isfinite(data).all(), f"{c}: non-finite voxels written{res.show()}"
    else:
        res.expect_error("model.pt", allow_dirs=("a", "a/b", "a/b/out"))


# -- 3. negative thread count ------------------------------------------------------------------------

def test_sample_negative_threads(case, base_fit):
    case.expect("exit 2, one error line naming --threads (click's 'Error: Invalid value' accepted)")
    shutil.copy2(base_fit.model, case.path("m/model.pt"))
    res = case.run(["sample", "--model", "m/model.pt", "-o", "out", "--threads", "-1"])
    res.expect_error("--threads", click_ok=True, allow_dirs=("out",))
