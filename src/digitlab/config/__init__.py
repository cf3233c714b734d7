"""Configuration: the one frozen `Config` (settings), the presets (the grouped table of
defaults) and the class-name rules a Config validates (classes).

Bottom layer: imports only `errors` and `files`. `make_config` here builds a training
config from a preset; a fine-tuning config (`init=MODEL`) needs the model it starts from and
is made by `digitlab.make_config` (`pipeline.make_config`).
"""

from __future__ import annotations

from .settings import Config, make_config, parse_overrides

__all__ = ["Config", "make_config", "parse_overrides"]
