"""Safe model files: numpy ``.npz`` archives of plain arrays, never pickles.

An archive holds ``__fastrec_format__`` (format version), ``__class__`` (model class name),
``__params__`` (the estimator's parameters as JSON) and named arrays. Loading refuses anything
else: files that are not npz archives, archives without the fastrec header, object arrays
(which would need unpickling), unknown format versions and archives of another model class.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from fastrec.exceptions import ModelFileError

FORMAT_VERSION = 2  # 2: fitted metadata (``__fitted__``) and training curves


def _header(path, arrays: dict) -> tuple[int, str, dict]:
    """(format version, model class, parameters) from an archive's header entries, checked."""
    version, model_class, params = (arrays.pop(name, None) for name in
                                    ("__fastrec_format__", "__class__", "__params__"))
    if (version is None or version.shape != (1,) or version.dtype.kind not in "iu"
            or model_class is None or model_class.shape != () or model_class.dtype.kind != "U"
            or params is None or params.shape != () or params.dtype.kind != "U"):
        raise ModelFileError(f"{path} has a damaged fastrec header")
    try:
        params = json.loads(str(params))
    except ValueError as exc:
        raise ModelFileError(f"{path} has damaged parameters: {exc}") from exc
    if not isinstance(params, dict):
        raise ModelFileError(f"{path} has damaged parameters: not a JSON object")
    return int(version[0]), str(model_class), params


def model_path(path) -> Path:
    """``path`` with the ``.npz`` suffix that :func:`save_arrays` writes (added when absent)."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def save_arrays(path, model_class: str, params: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write atomically: a temp file in the same folder, fsynced, then renamed over ``path``,
    so a crash never leaves a half-written model; the temp file is removed on any failure, and
    one left by a killed process is never read (its name is not a model's). The file gets the
    permissions the umask gives any new file."""
    path = model_path(path)
    payload = {
        "__fastrec_format__": np.array([FORMAT_VERSION], dtype=np.int64),
        "__class__": np.array(model_class),
        "__params__": np.array(json.dumps(params, sort_keys=True)),
    }
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype == object:
            raise TypeError(f"array {name!r} has dtype object, which cannot be saved safely")
        payload[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (setting and restoring
    it would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def load_arrays(path, expected_class: str | None = None) -> tuple[str, dict, dict]:
    """Return ``(model_class, params, arrays)``; raises :class:`ModelFileError` when the file is
    not a fastrec model (or not of ``expected_class``)."""
    path = Path(path)
    if not path.is_file() and model_path(path).is_file():
        path = model_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a fastrec model file (not an npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "__fastrec_format__" not in archive.files:
                raise ModelFileError(f"{path} is an npz archive but not a fastrec model")
            arrays = {name: archive[name] for name in archive.files}
    except ModelFileError:
        raise
    except ValueError as exc:  # object arrays: numpy refuses to unpickle them, and so do we
        raise ModelFileError(f"{path} holds data that would need unpickling; refused") from exc
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelFileError(f"{path} is not a readable fastrec model: {exc}") from exc
    version, model_class, params = _header(path, arrays)
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {version}; this fastrec reads up to "
                             f"{FORMAT_VERSION}: upgrade fastrec")
    if expected_class is not None and model_class != expected_class:
        raise ModelFileError(f"{path} holds a {model_class} model, not a {expected_class}")
    return model_class, params, arrays
