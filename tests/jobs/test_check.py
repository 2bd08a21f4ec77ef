"""`inrsr check`: the refits that score left-out slices train on the masks the fit used."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tests.jobs.conftest import FAST, run


def test_check_refits_train_on_the_masks_the_fit_used(phantom_stacks, tmp_path, monkeypatch):
    import inrsr.jobs.check as check
    import inrsr.jobs.reconstruct as reconstruct

    tmp, p = phantom_stacks
    masks = []
    for name in ("t1ax", "t2cor"):
        img = nib.load(str(p[name]))
        m = np.zeros(img.shape, np.uint8)
        m[4:-4, 4:-4, :] = 1  # a user mask unlike any estimated foreground
        masks.append(tmp_path / f"{name}_mask.nii.gz")
        nib.save(nib.Nifti1Image(m, img.affine), str(masks[-1]))
    out = tmp_path / "masked"
    code, err, _ = run(["fit", "--t1", p["t1ax"], "--t2", p["t2cor"], "--mask", masks[0], "--mask", masks[1],
                        "-o", out, *FAST])
    assert code == 0, err
    seen = []

    class Stop(Exception):
        pass

    def spy(stacks, config, exclude=None):
        seen.extend(s.mask for s in stacks)
        raise Stop

    monkeypatch.setattr(reconstruct, "training_set", spy)
    with pytest.raises(Stop):
        check.check_model(out / "model.pt", holdout_every=4, progress=False)
    for got, path in zip(seen, masks):
        np.testing.assert_array_equal(got, np.asarray(nib.load(str(path)).dataobj) > 0)
