"""The fit configuration: presets validate, dict round trip, errors that name the option and the choices."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from inrsr.config import PRESETS, FitConfig, check_choices, option_field, preset
from inrsr.errors import InputError


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates_and_survives_a_dict_round_trip(name):
    c = PRESETS[name]
    assert c.validate() is c
    assert FitConfig.from_dict(c.to_dict()) == c
    assert preset(name) == c


def test_from_dict_ignores_unknown_keys_and_overrides_replace_fields():
    c = preset("fast", lr=0.5, width=None)  # None: keep the preset's value
    assert c.lr == 0.5 and c.width == PRESETS["fast"].width
    assert FitConfig.from_dict({**c.to_dict(), "removed_option": 1}) == c


def test_unknown_preset_names_the_choices():
    with pytest.raises(InputError) as e:
        preset("nope")
    assert "'nope'" in str(e.value)
    for name in PRESETS:
        assert name in str(e.value)


@pytest.mark.parametrize("option, value, flag", [
    ("lr", -1, "--lr"), ("width", 0, "--width"), ("grid_log2_table", 30, "--grid-log2-table"),
    ("adam_beta2", 1.0, "--adam-beta2"), ("c2f_fraction", 1.5, "--c2f-fraction"), ("es_buffer", 1, "--es-buffer"),
    ("reg_weight", -0.1, "--reg-weight"), ("variant", "wide", "--variant"),
])
def test_invalid_values_name_their_option(option, value, flag):
    with pytest.raises(InputError, match=flag):
        preset("default", **{option: value})


def test_check_choices_rejects_a_value_outside_the_choices():
    @dataclass(frozen=True)
    class Options:
        colour: str = option_field("red", "a colour", ("red", "green"))
        free: str = option_field("anything", "no choices")

    check_choices(Options())
    check_choices(Options(colour="green", free="whatever"))
    with pytest.raises(InputError, match="^--colour must be one of red, green$"):
        check_choices(Options(colour="blue"))
    with pytest.raises(InputError, match="--slice-profile must be one of point, box, gaussian"):
        check_choices(PRESETS["default"].replace(slice_profile="sinc"))
