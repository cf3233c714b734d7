"""What sits beside a model file: its config, its export metadata, its integrity.

A model on disk is one of: `model.keras` in a run directory (its config is
the run's `config.json`), or an exported artifact (`model.onnx`,
`model.tflite`, `savedmodel/`, an inference `.keras`) with a metadata sidecar
`<file>.json` written by `digitlab export`, which carries the artifact's own
config, size and sha256 (ONNX files also carry the metadata inside). This
module is the one reader of all of that, and the one place that finds a
model from what a user names (`resolve_model`: a path, "latest", a run name,
or the shipped model); it imports neither TensorFlow nor ONNX Runtime at
import time.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelError
from ..files.atomic import sha256_file
from ..files.layout import CONFIG_FILE, MODEL_FILE, metadata_path

META_PREFIX = "digitlab."  # keys of ONNX metadata_props written by digitlab


def _read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None if the file is missing; ModelError if it is not usable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable metadata ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: metadata must be a JSON object")
    return data


def onnx_metadata(session: Any) -> dict[str, Any]:
    """The `digitlab.*` metadata_props of an open ONNX Runtime session, JSON-decoded."""
    out: dict[str, Any] = {}
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        if key.startswith(META_PREFIX):
            try:
                out[key[len(META_PREFIX):]] = json.loads(value)
            except ValueError:
                out[key[len(META_PREFIX):]] = value
    return out


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata embedded in an ONNX file (no onnx package needed)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ModelError(f"{path}: not a loadable ONNX model ({str(exc)[:200]})") from None
    return onnx_metadata(session)


def read_metadata(artifact: str | os.PathLike) -> dict[str, Any]:
    """Metadata of an exported artifact: the sidecar JSON, else (ONNX) the embedded props."""
    artifact = Path(artifact)
    side = _read_json_object(metadata_path(artifact))
    if side is not None:
        return side
    if artifact.suffix == ".onnx" and artifact.is_file():
        return read_onnx_metadata(artifact)
    raise ModelError(f"no metadata found for {artifact} (expected {metadata_path(artifact)})")


def load_config(model_file: str | os.PathLike, embedded: dict[str, Any] | None = None) -> Any:
    """The Config a model was trained with: the artifact's own (sidecar, or `embedded`
    metadata) first, else `config.json` beside it. Raises ModelError/ConfigError."""
    from ..config.settings import Config

    model_file = Path(model_file)
    side = _read_json_object(metadata_path(model_file))
    for meta, where in ((side, metadata_path(model_file)), (embedded, f"{model_file} (embedded metadata)")):
        if meta and isinstance(meta.get("config"), dict):
            try:
                return Config.from_dict(meta["config"])
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    folder = model_file if model_file.is_dir() else model_file.parent
    if (folder / CONFIG_FILE).is_file():
        return Config.load(folder)
    raise ModelError(f"{model_file}: no {CONFIG_FILE} beside it and no digitlab metadata "
                     f"(the config says how inputs are prepared)")


def check_file(path: Path) -> None:
    """Missing, empty, or not the file its export metadata describes -> ModelError.

    The sidecar records the file's size and sha256; checking them (about
    1 ms) catches truncated copies and flipped bytes that the format's own
    parser would accept.
    """
    if not path.is_file():
        raise ModelError(f"no model found at {path}")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path}: empty file (truncated download or interrupted copy?)")
    try:
        side = _read_json_object(metadata_path(path))
    except ModelError:
        side = None  # an unreadable sidecar: the format's own checks must do
    try:
        recorded = (side or {})["file"]
        want_size, want_sha = int(recorded["bytes"]), str(recorded["sha256"])
    except (KeyError, TypeError, ValueError):
        return
    if size != want_size:
        raise ModelError(f"{path}: {size} bytes, but its export metadata says {want_size} "
                         f"(truncated or replaced? re-export it with `digitlab export`)")
    if sha256_file(path) != want_sha:
        raise ModelError(f"{path}: contents do not match the sha256 in {metadata_path(path).name} "
                         f"(corrupted or replaced? re-export it with `digitlab export`)")


def exported_from(artifact: Path, keras_file: Path) -> bool:
    """False when `artifact`'s metadata names another source than `keras_file` (a stale export)."""
    if not keras_file.is_file():
        return True
    try:
        expected = (_read_json_object(metadata_path(artifact)) or {})["source_model"]["sha256"]
    except (ModelError, KeyError, TypeError):
        return True
    return sha256_file(keras_file) == expected


def pretrained_dir() -> Path:
    """Where the shipped pretrained model lives (inside the installed package)."""
    return Path(str(importlib.resources.files("digitlab") / "pretrained"))


def resolve_model(model: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> Path:
    """The model to use: a path (run dir, model dir or model file), "latest"
    (the latest run under `out`: $DIGITLAB_RUNS, else ./runs), a run name
    under `out`, or None for the shipped pretrained model."""
    from ..files.layout import LATEST, default_runs_dir
    from .directories import resolve_run

    out = out if out is not None else default_runs_dir()

    if model is None:
        path = pretrained_dir()
        if not (path / MODEL_FILE).is_file() and not any(path.glob("model.*")):
            raise ModelError(f"the shipped pretrained model is missing ({path}); "
                             "give one with --model PATH or --model latest")
        return path
    if str(model) == LATEST:
        return resolve_run(None, out)
    path = Path(model)
    if path.exists():
        return path.resolve()
    if os.sep not in str(model) and (Path(out) / str(model)).is_dir():
        return resolve_run(str(model), out)
    raise ModelError(f"model {str(model)!r} not found (expected a run directory, a model directory or a model file)")


PRETRAINED = "pretrained"  # the name of the model shipped with digitlab (`--init pretrained`, `ensemble pretrained ...`)


def keras_model_file(model: str | os.PathLike, out: str | os.PathLike | None = None, *, label: str,
                     needs: str) -> Path:
    """The .keras file `model` names: "pretrained", a run (name, directory, "latest") or a file; a
    ModelError starting with `label` (the option, e.g. "--init X") saying `needs` when it is no Keras model."""
    try:
        path = pretrained_dir() if str(model) == PRETRAINED else resolve_model(model, out)
    except ModelError as exc:
        raise ModelError(f"{label}: {exc}") from None
    model_file = path / MODEL_FILE if path.is_dir() else path
    if model_file.suffix != ".keras" or not model_file.is_file():
        where = f"no {MODEL_FILE} in {path}" if path.is_dir() else f"{path} is not a .keras model"
        raise ModelError(f"{label}: {where}; {needs} (a run directory, a model directory or a .keras file)")
    return model_file


def model_id(path: Path) -> str | None:
    """A model file's id: the first 12 hex digits of its sha256 (None if it cannot be read)."""
    try:
        return sha256_file(path)[:12]
    except OSError:
        return None
