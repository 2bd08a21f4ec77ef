"""Resuming a fit: an interrupted fit's saved state leads to the uninterrupted result."""

from __future__ import annotations

import torch

from inrsr.fit.loop import fit_field
from tests.fit.conftest import CFG, tiny_training_set


def test_interrupted_fit_resumes_to_the_uninterrupted_result(tmp_path):
    import signal

    import pytest

    from inrsr.errors import InputError

    subject, train = tiny_training_set()
    cfg = CFG.replace(max_steps=30, early_stopping=False, checkpoint_every_s=1000.0, reg_weight=0.1, reg_points=256)
    state = tmp_path / "fit_state.pt"
    whole = fit_field(train, subject.contrasts, cfg, progress=False, state_path=state)
    # the finished fit's state stays until the caller has written its outputs, and resuming it gives the fit back
    assert state.is_file()
    again = fit_field(train, subject.contrasts, cfg, progress=False, state_path=state, resume=True)
    assert again.steps == 30 and again.stopped_by == whole.stopped_by and again.epochs == whole.epochs
    x = torch.rand(200, 3) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(again.field(x), whole.field(x), rtol=0, atol=0)
    state.unlink()

    def interrupt(step: int, seconds: float, field) -> None:
        if step == 17:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit_field(train, subject.contrasts, cfg, progress=False, state_path=state, callback=interrupt)
    assert state.is_file()
    with pytest.raises(InputError, match="--lr"):
        fit_field(train, subject.contrasts, cfg.replace(lr=0.5), progress=False, state_path=state, resume=True)
    resumed = fit_field(train, subject.contrasts, cfg.replace(device="cpu"), progress=False, state_path=state,
                        resume=True)
    assert resumed.steps == 30 and [e["steps"] for e in resumed.epochs] == [e["steps"] for e in whole.epochs]
    with torch.no_grad():
        torch.testing.assert_close(resumed.field(x), whole.field(x), rtol=0, atol=0)
    assert [m["mi"] for m in resumed.mi_curve] == [m["mi"] for m in whole.mi_curve]
