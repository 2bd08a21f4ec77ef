"""The fit configuration: presets validate, dict round trip, errors that name the option and the choices."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from inrsr.config import PRESETS, FitConfig, check_choices, fit_config, option_field, preset, read_config_file
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


def test_config_file_replaces_the_preset_and_options_override_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**PRESETS["fast"].replace(lr=0.003, width=48).to_dict()}))
    assert fit_config("paper", str(path)) == PRESETS["fast"].replace(lr=0.003, width=48)  # every field from the file
    assert fit_config("paper", str(path), lr=0.001, width=None) == PRESETS["fast"].replace(lr=0.001, width=48)
    path.write_text('{"max_steps": 7, "lr": 1}')  # some options: the rest from the preset; an integer for a float
    config = fit_config("fast", str(path), seed=3)
    assert config == PRESETS["fast"].replace(max_steps=7, lr=1.0, seed=3) and isinstance(config.lr, float)
    assert fit_config("fast") == PRESETS["fast"]


@pytest.mark.parametrize("content, message", [
    ('{"lr": "fast"}', 'lr must be a number, got "fast"'),
    ('{"batch_size": 1.5}', "batch_size must be an integer, got 1.5"),
    ('{"max_steps": true}', "max_steps must be an integer, got true"),
    ('{"register": 1}', "register must be true or false, got 1"),
    ('{"encoding": null}', "encoding must be a string, got null"),
    ('{"lr": 0.01, "learning_rate": 1, "colour": "red"}', "unknown options 'learning_rate', 'colour'"),
    ('{"wdith": 3}', "unknown option 'wdith'"),
    ("[1, 2]", "expected a JSON object of options (as config.json), got an array"),
    ('"fast"', "expected a JSON object of options (as config.json), got a string"),
    ('{"lr": 0.01,}', "not valid JSON (Expecting property name enclosed in double quotes at line 1, column 13)"),
])
def test_config_file_errors_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(InputError) as e:
        read_config_file(str(path))
    assert str(e.value) == f"{path}: {message}"


@pytest.mark.parametrize("content, message", [
    ('{"lr": -1}', "--lr must be positive, got -1.0"),
    ('{"encoding": "wavelet"}', "--encoding must be one of fourier, hash"),
    ('{"lr": NaN}', "--lr must be a finite number, got nan"),
])
def test_invalid_values_in_a_config_file_name_the_file_and_the_option(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(InputError) as e:
        fit_config("fast", str(path))
    assert str(e.value) == f"{path}: {message}"
    valid = tmp_path / "valid.json"
    valid.write_text('{"lr": 0.01}')
    with pytest.raises(InputError) as e:  # an invalid value given as an option is the option's, not the file's
        fit_config("fast", str(valid), lr=-2.0)
    assert str(e.value) == "--lr must be positive, got -2.0"
    with pytest.raises(InputError, match="file not found"):
        fit_config("fast", str(tmp_path / "none.json"))
