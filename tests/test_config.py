import dataclasses
import json

import pytest

from digitlab.config.settings import Config, make_config
from digitlab.errors import ConfigError


def test_defaults_are_the_tutorials():
    c = make_config("seed")
    assert (c.preset, c.epochs, c.batch_size, c.val_fraction, c.seed) == ("seed", 10, 128, 0.2, 42)
    assert c.scale == pytest.approx(1 / 255) and c.image_size == 28 and c.limit is None


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_config("seed").epochs = 3  # type: ignore[misc]


def test_replace_with_none_clears_an_optional_value():
    c = make_config("seed", limit=1000, name="x")
    assert c.replace(limit=None).limit is None and c.replace(name=None).name is None
    assert make_config("seed", epochs=3).epochs == 3
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        c.replace(epochs=None)  # not optional: None is not "not given", it is a wrong value


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be an integer between 1 and 10,000"),
        ({"epochs": 99999999999999999999}, "epochs must be an integer between 1 and 10,000"),
        ({"batch_size": 0}, "batch size must be an integer between 1 and 65,536"),
        ({"batch_size": 999999999999}, "batch size must be an integer between 1"),
        ({"batch_size": 2.5}, "batch size must be an integer"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"learning_rate": float("inf")}, "learning rate must be a finite number"),
        ({"learning_rate": float("nan")}, "learning rate must be a finite number"),
        ({"learning_rate": 1e6}, "learning rate must be > 0 and <= 10"),
        ({"rotation": float("nan")}, "rotation must be a finite number"),
        ({"scale": 0.0}, "scale must be a number in"),
        ({"scale": 1000.0}, "scale must be a number in"),
        ({"scale": "0.1"}, "scale must be a finite number"),
        ({"stratify": "yes"}, "stratify must be true or false"),
        ({"limit": 5}, "limit must be an integer >= 20"),
        ({"val_fraction": 1.0}, "validation fraction must be between 0 and 1"),
        ({"learning_rate": -1.0}, "learning rate must be > 0"),
        ({"seed": -1}, "seed must be an integer between 0 and 4294967295"),
        ({"data_dir": "x", "download": True}, "not both"),
    ],
)
def test_invalid_values_are_rejected_with_a_clear_message(changes, message):
    with pytest.raises(ConfigError, match=message):
        make_config("seed", **changes)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'; valid presets: seed"):
        make_config("nope")


def test_unknown_field_is_an_error():
    with pytest.raises(ConfigError, match="unknown config field"):
        make_config("seed").replace(epoch=3)


def test_save_load_roundtrip(tmp_path):
    c = make_config("seed", epochs=3, limit=1000, name="x")
    c.save(tmp_path)
    assert Config.load(tmp_path) == c
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 3


def test_load_ignores_unknown_keys_from_newer_versions(tmp_path):
    data = make_config("seed").to_dict() | {"some_future_field": 1}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert Config.load(tmp_path) == make_config("seed")


@pytest.mark.parametrize("text, message", [("{not json", "not a readable JSON config"),
                                            ('{"epochs": 0}', "epochs must be"),
                                            ('{"scale": NaN}', "NaN is not a valid JSON number"),
                                            ('{"scale": "x"}', "scale must be a finite number"),
                                            ('{"epochs": "10"}', "epochs must be an integer"),
                                            ('[1, 2]', "config must be a JSON object")])
def test_bad_config_file_names_the_file(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(tmp_path)
    assert "config.json" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(tmp_path)


def test_set_overrides_are_typed_by_the_config_fields():
    from digitlab.config.settings import parse_overrides

    got = parse_overrides(["epochs=3", "limit=none", "rotation=7.5", "stratify=yes", "schedule=cosine",
                           "batch-size=1_024", "data_dir=/x"])
    assert got == {"epochs": 3, "limit": None, "rotation": 7.5, "stratify": True, "schedule": "cosine",
                   "batch_size": 1024, "data_dir": "/x"}
    assert make_config("strong", **got).rotation == 7.5


@pytest.mark.parametrize("item, message", [
    ("epochs", "expected key=value"),
    ("epoch=3", "unknown config field 'epoch'"),
    ("epochs=three", "epochs must be an integer"),
    ("stratify=maybe", "stratify must be true or false"),
    ("limit=", None),  # clears an optional value: valid
])
def test_bad_set_overrides(item, message):
    from digitlab.config.settings import parse_overrides

    if message is None:
        assert parse_overrides([item]) == {"limit": None}
        return
    with pytest.raises(ConfigError, match=message):
        parse_overrides([item])


def test_runs_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITLAB_RUNS", str(tmp_path))
    assert make_config("seed").out == str(tmp_path)
    monkeypatch.delenv("DIGITLAB_RUNS")
    assert make_config("seed").out == "runs"
