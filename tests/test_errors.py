"""Input warnings recorded for log.json while still shown to the user."""

from __future__ import annotations

import warnings

from inrsr.errors import InputWarning, recorded_warnings


def test_recorded_warnings_keeps_showing_them_and_records_only_input_warnings_on_one_line():
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *args, **kwargs: shown.append((str(message), category))
        printer = warnings.showwarning
        with recorded_warnings() as seen:
            warnings.warn("a.nii.gz: only 2 slices\n  along its slice axis", InputWarning)
            warnings.warn("not about the input", RuntimeWarning)
            warnings.warn("b.nii.gz: header fixed", InputWarning)
        assert warnings.showwarning is printer
        warnings.warn("c.nii.gz: after the block", InputWarning)
    assert seen == ["a.nii.gz: only 2 slices along its slice axis", "b.nii.gz: header fixed"]
    assert [m for m, _ in shown] == ["a.nii.gz: only 2 slices\n  along its slice axis", "not about the input",
                                     "b.nii.gz: header fixed", "c.nii.gz: after the block"]
