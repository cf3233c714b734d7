"""Exceptions whose message is meant for the user (the CLI prints it, exit 2)."""


class DigitlabError(Exception):
    """Base class: a problem the user can fix; the message says what and where."""


class DataError(DigitlabError):
    """A data file is missing, corrupt, truncated or does not match its checksum."""


class ConfigError(DigitlabError):
    """An option or a saved config.json has an invalid value."""


class ModelError(DigitlabError):
    """A model file or run directory is missing or unusable."""


class ImageError(DigitlabError):
    """An input image is unreadable, truncated, too large or not an image at all."""


class TrainingError(DigitlabError):
    """Training cannot go on: the loss diverged (NaN/inf), or the settings cannot fit the data."""


class StorageError(DigitlabError):
    """A file could not be written (disk full, read-only, permission); the previous file is kept."""
