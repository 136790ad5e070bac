"""Readers for rating files: the three MovieLens layouts, generic delimited text, and a cached
MovieLens downloader.

Every reader validates the whole file before building an :class:`Interactions`: a line with too
few or too many fields, a non-numeric id, rating or timestamp, or a NaN rating raises
``ValueError`` naming the file and the 1-based line number.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from itertools import islice
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fastrec.data.interactions import Interactions

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"

# variant -> (ratings file inside the archive's top-level folder, sha256 of the official zip).
# The hashes are those pinned by TensorFlow Datasets (tensorflow_datasets/url_checksums/
# movielens.txt) and agree with several independent projects that pin the same GroupLens files.
_MOVIELENS_ARCHIVES = {
    "ml-latest-small": ("ratings.csv",
                        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"),
    "ml-100k": ("u.data", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
    "ml-1m": ("ratings.dat", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
}
_MOVIELENS_FILES = ("ratings.csv", "ratings.dat", "u.data")
_MOVIELENS_CSV_HEADER = "userId,movieId,rating,timestamp"
_MOVIELENS_LAYOUTS = {
    "u.data": "tab-separated 'user item rating timestamp' without header (u.data)",
    "ratings.dat": "'user::item::rating::timestamp' (ratings.dat)",
    "ratings.csv": f"CSV with header '{_MOVIELENS_CSV_HEADER}' (ratings.csv)",
}
_CHUNK_BYTES = 1 << 20


class DownloadError(OSError):
    """A download failed: HTTP error, truncated transfer, checksum mismatch or unusable archive."""


# -- MovieLens -------------------------------------------------------------------------------------
def load_movielens(path: str | os.PathLike, dtype=np.float32) -> Interactions:
    """Read MovieLens ratings in any of the three official layouts.

    Parameters
    ----------
    path : a ratings file (``u.data``, ``ratings.dat`` or ``ratings.csv``; the layout is detected
        from the content, not the name) or a directory containing exactly one of those names.
    dtype : float dtype of the ratings.

    Returns
    -------
    Interactions with ``values`` dtype ``dtype``, int64 ``timestamps`` (seconds since the epoch)
    and the sorted raw user and movie ids as id maps.
    """
    file = _find_movielens_file(Path(path))
    layout = _sniff_movielens(file)
    bad_rows = None
    if layout == "ratings.csv":
        frame = _read_table(file, sep=",", header=0, encoding="utf-8")
        frame.columns = ["user", "item", "rating", "timestamp"]
        first_line = 2
    elif layout == "ratings.dat":
        # The C parser only takes one-character separators; splitting on ":" turns "a::b" into
        # "a", "", "b", which keeps the fast parser (the python engine is ~8x slower on ml-1m).
        # The empty gap columns must stay empty, which rejects lines such as "1:2:3:4".
        names = ["user", "gap1", "item", "gap2", "rating", "gap3", "timestamp"]
        frame = _read_table(file, sep=":", header=None, names=names, encoding="latin-1")
        first_line = 1
        bad_rows = frame[["gap1", "gap2", "gap3"]].notna().any(axis=1).to_numpy()
        frame = frame[["user", "item", "rating", "timestamp"]]
    else:
        frame = _read_table(file, sep="\t", header=None,
                            names=["user", "item", "rating", "timestamp"], encoding="latin-1")
        first_line = 1
    frame = _validate(frame, file, first_line, _MOVIELENS_LAYOUTS[layout],
                      numeric=("user", "item", "rating", "timestamp"), bad_rows=bad_rows)
    return Interactions.from_ids(frame["user"].to_numpy(), frame["item"].to_numpy(),
                                 frame["rating"].to_numpy(), dtype,
                                 timestamps=frame["timestamp"].to_numpy(np.int64))


def _find_movielens_file(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_file():
        return path
    found = [path / name for name in _MOVIELENS_FILES if (path / name).is_file()]
    if not found:
        raise FileNotFoundError(f"{path} contains none of the MovieLens ratings files "
                                f"{', '.join(_MOVIELENS_FILES)}")
    if len(found) > 1:
        names = ", ".join(file.name for file in found)
        raise ValueError(f"{path} contains several ratings files ({names}); pass the file itself")
    return found[0]


def _sniff_movielens(file: Path) -> str:
    """The layout of a ratings file, from its first non-empty line."""
    with open(file, encoding="latin-1", newline="") as handle:
        first = next((line for line in handle if line.strip()), None)
    if first is None:
        raise ValueError(f"{file} is empty")
    first = first.strip().lstrip("\ufeff")
    if first == _MOVIELENS_CSV_HEADER:
        return "ratings.csv"
    if "::" in first:
        return "ratings.dat"
    if "\t" in first:
        return "u.data"
    layouts = "; ".join(_MOVIELENS_LAYOUTS.values())
    raise ValueError(f"{file} is not a MovieLens ratings file: first line {first[:80]!r}; "
                     f"expected one of: {layouts}")


# -- generic delimited text ------------------------------------------------------------------------
def load_csv(path: str | os.PathLike, user_col: str | int, item_col: str | int,
             rating_col: str | int | None = None, timestamp_col: str | int | None = None,
             sep: str = ",", header: bool | Literal["infer"] = "infer",
             dtype=np.float32, duplicates: str = "raise") -> Interactions:
    """Read interactions from a delimited text file (compressed files are inflated by pandas).

    Parameters
    ----------
    path : the file.
    user_col, item_col : column name (needs a header) or 0-based position. Ids may be integers or
        strings; they are mapped to dense indices in sorted order.
    rating_col : rating column, or None for implicit data (every value is 1).
    timestamp_col : numeric timestamp column, or None.
    sep : field separator; one character keeps pandas' fast parser.
    header : True if the first line holds column names, False if not; ``"infer"`` means True
        when any column is given by name and False when all are positions.
    dtype : float dtype of the ratings.
    duplicates : a repeated (user, item) pair is an error ("raise"), or merged: "mean", "sum"
        (e.g. event logs counted per pair) or "last" (see :meth:`Interactions.from_any`).

    Returns
    -------
    Interactions; ``timestamps`` is set when ``timestamp_col`` is given.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    named = {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": timestamp_col}
    named = {role: col for role, col in named.items() if col is not None}
    if header == "infer":
        header = any(isinstance(col, str) for col in named.values())
    frame = _read_table(path, sep=sep, header=0 if header else None, encoding="utf-8")
    columns = {}
    for role, col in named.items():
        if isinstance(col, str):
            if not header:
                raise ValueError(f"{role} column {col!r} is a name but header=False")
            if col not in frame.columns:
                raise ValueError(f"{path} has no column {col!r}; columns: {list(frame.columns)}")
            columns[role] = col
        else:
            if not 0 <= col < frame.shape[1]:
                raise ValueError(f"{role} column position {col} out of range: {path} has "
                                 f"{frame.shape[1]} columns")
            columns[role] = frame.columns[col]
    frame = frame[list(columns.values())].set_axis(list(columns), axis=1)
    numeric = tuple(role for role in ("rating", "timestamp") if role in columns)
    expected = sep.join(str(col) for col in named.values()) + f" (separator {sep!r})"
    first_line = 2 if header else 1
    frame = _validate(frame, path, first_line, expected, numeric=numeric,
                      hint="" if header else "; pass header=True if the first line holds names")
    values = frame["rating"].to_numpy() if "rating" in columns else np.ones(frame.shape[0])
    times = frame["timestamp"].to_numpy() if "timestamp" in columns else None
    return Interactions.from_ids(frame["user"].to_numpy(), frame["item"].to_numpy(), values,
                                 dtype, timestamps=times, duplicates=duplicates)


# -- shared parsing and validation -----------------------------------------------------------------
def _read_table(file: Path, sep: str, header, encoding: str, names=None) -> pd.DataFrame:
    # skip_blank_lines=False keeps row i on line i + first_line, so errors can name the line;
    # blank lines become all-missing rows that _validate drops.
    try:
        return pd.read_csv(file, sep=sep, header=header, names=names, encoding=encoding,
                           skip_blank_lines=False, engine="c" if len(sep) == 1 else "python")
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{file} is empty") from err
    except pd.errors.ParserError as err:
        raise ValueError(f"{file} is malformed: {err}") from err


def _validate(frame: pd.DataFrame, file: Path, first_line: int, expected: str,
              numeric: tuple[str, ...], hint: str = "",
              bad_rows: np.ndarray | None = None) -> pd.DataFrame:
    """Drop blank lines, check every field is present and the ``numeric`` ones are numbers and
    return the frame with those columns converted; raises on the first bad line (also on the
    rows flagged in ``bad_rows``, bool[n_rows]) and when no line holds data."""
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.all():
        raise ValueError(f"{file} holds no data lines")
    bad = frame.isna().to_numpy() & ~blank[:, None]
    if bad_rows is not None:
        bad[:, 0] |= bad_rows
    converted = {}
    for role in numeric:
        column = frame[role]
        if not pd.api.types.is_numeric_dtype(column):
            column = pd.to_numeric(column, errors="coerce")
        converted[role] = column
        values = column.to_numpy(np.float64)
        position = frame.columns.get_loc(role)
        bad[:, position] |= ~np.isfinite(values) & ~blank
    rows = bad.any(axis=1)
    if rows.any():
        row = int(np.argmax(rows))
        line = row + first_line
        if "rating" in frame.columns and bad[row].sum() == 1 \
                and bad[row, frame.columns.get_loc("rating")]:
            raw = frame["rating"].iloc[row]
            # A NaN or infinite rating is bad data; text in the rating field is a bad line.
            if pd.isna(raw) or not np.isnan(converted["rating"].iloc[row]):
                raise ValueError(f"{file}, line {line}: rating is NaN or infinite: "
                                 f"{_line_text(file, line)!r}")
        _raise_line(file, line, expected, hint)
    frame = frame.assign(**converted)
    return frame[~blank] if blank.any() else frame


def _raise_line(file: Path, line: int, expected: str, hint: str = "") -> None:
    raise ValueError(f"{file}, line {line} is malformed: {_line_text(file, line)!r}; "
                     f"expected {expected}{hint}")


def _line_text(file: Path, line: int) -> str:
    with open(file, encoding="latin-1") as handle:
        text = next(islice(handle, line - 1, None), "")
    return text.rstrip("\r\n")[:200]


# -- download --------------------------------------------------------------------------------------
def download_movielens(variant: Literal["ml-latest-small", "ml-100k", "ml-1m"] = "ml-latest-small",
                       data_home: str | os.PathLike | None = None,
                       base_url: str = GROUPLENS_URL, verify: bool | str = True,
                       timeout: float = 60.0) -> Path:
    """Download and extract a MovieLens archive once; later calls return the cached copy.

    Parameters
    ----------
    variant : which archive (``<base_url>/<variant>.zip``).
    data_home : cache directory, default ``~/.cache/fastrec``; the files land in
        ``<data_home>/<variant>/``.
    base_url : where the archives live (a mirror, or a local server in tests).
    verify : True checks the archive's sha256 against the official GroupLens archive, a hex
        string checks against that digest, False skips the hash check. In every case the archive
        must be a zip holding ``<variant>/<ratings file>``.
    timeout : seconds to wait for the server at each network operation.

    Returns
    -------
    The directory holding the extracted files; pass it to :func:`load_movielens`.

    Nothing is left in ``data_home`` unless the whole download succeeds: the archive is written
    to a temporary file, checked, extracted into a temporary directory and moved into place with
    one rename. Raises :class:`DownloadError` on any failure.
    """
    if variant not in _MOVIELENS_ARCHIVES:
        raise ValueError(f"unknown MovieLens variant {variant!r}; "
                         f"choose from {sorted(_MOVIELENS_ARCHIVES)}")
    ratings_name, official_sha256 = _MOVIELENS_ARCHIVES[variant]
    home = Path(data_home).expanduser() if data_home is not None else \
        Path.home() / ".cache" / "fastrec"
    target = home / variant
    if (target / ratings_name).is_file():
        return target
    if verify is True:
        expected = official_sha256
    else:
        expected = verify or None
    url = base_url.rstrip("/") + f"/{variant}.zip"
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=f".{variant}-") as scratch:
        archive = Path(scratch) / f"{variant}.zip"
        digest = _fetch(url, archive, timeout)
        if expected is not None and digest != expected.lower():
            raise DownloadError(f"{url}: sha256 {digest} does not match the expected {expected}; "
                                "the download is corrupt or the file changed upstream")
        member = f"{variant}/{ratings_name}"
        try:
            with zipfile.ZipFile(archive) as zf:
                if member not in zf.namelist():
                    raise DownloadError(f"{url} has no {member}; it holds {zf.namelist()[:10]}")
                # ZipFile.extractall drops absolute paths and '..' components, so members cannot
                # escape the scratch directory.
                zf.extractall(Path(scratch) / "extracted")
        except zipfile.BadZipFile as err:
            raise DownloadError(f"{url} is not a zip archive: {err}") from err
        try:
            os.replace(Path(scratch) / "extracted" / variant, target)
        except OSError as err:
            # Another process may have finished the same download first.
            if not (target / ratings_name).is_file():
                raise DownloadError(f"cannot move the extracted files to {target} ({err}); "
                                    "remove that directory and retry") from err
    return target


def _fetch(url: str, destination: Path, timeout: float) -> str:
    """Stream ``url`` into ``destination``; returns the sha256 hex digest of the bytes."""
    sha256 = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                open(destination, "wb") as out:
            length = response.headers.get("Content-Length")
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                sha256.update(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"downloading {url} failed: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise DownloadError(f"downloading {url} failed: {err.reason}") from err
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"downloading {url} failed: {err!r}") from err
    # urllib returns a short body without complaint when the server closes early.
    if length is not None and received != int(length):
        raise DownloadError(f"downloading {url} failed: got {received} of {length} bytes")
    return sha256.hexdigest()


__all__ = ["GROUPLENS_URL", "DownloadError", "download_movielens", "load_csv", "load_movielens"]
