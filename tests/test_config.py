import dataclasses
import json

import pytest

from digitlab.config import Config, make_config
from digitlab.errors import ConfigError


def test_defaults_are_the_tutorials():
    c = make_config("seed")
    assert (c.preset, c.epochs, c.batch_size, c.val_fraction, c.seed) == ("seed", 10, 128, 0.2, 42)
    assert c.scale == pytest.approx(1 / 255) and c.image_size == 28 and c.limit is None


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_config("seed").epochs = 3  # type: ignore[misc]


def test_none_overrides_mean_not_given():
    assert make_config("seed", epochs=None, batch_size=None) == make_config("seed")
    assert make_config("seed", epochs=3).epochs == 3


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch size must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch size must be an integer"),
        ({"limit": 5}, "limit must be an integer >= 20"),
        ({"val_fraction": 1.0}, "validation fraction must be between 0 and 1"),
        ({"learning_rate": -1.0}, "learning rate must be > 0"),
        ({"seed": -1}, "seed must be an integer >= 0"),
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
                                            ('{"epochs": 0}', "epochs must be")])
def test_bad_config_file_names_the_file(tmp_path, text, message):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load(tmp_path)
    assert "config.json" in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(tmp_path)
