"""Numba's on-disk cache lands in a per-user folder, never inside the installed package (a
folder left there by an uninstall shadows a later editable install: issue 15)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[2]

# Compiles one small cached kernel and prints where numba wrote it.
_SCRIPT = """
import glob, os, sys
import fastrec.backends.numba as nb
from fastrec.backends.numba.rng import rng_key
rng_key(1, 2)
print(nb.numba_cache_dir())
print(len(glob.glob(os.path.join(nb.numba_cache_dir(), "**", "rng.rng_key-*.nbi"),
                    recursive=True)))
"""


def _run(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environ.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=tmp_path, env=environ,
                         capture_output=True, text=True, timeout=120, check=True)
    folder, n_files = out.stdout.split()
    return Path(folder), int(n_files)


def test_cache_goes_to_the_user_cache_folder(tmp_path):
    pycache = ROOT / "fastrec" / "backends" / "numba" / "__pycache__"
    in_tree = {p.name: p.stat().st_mtime_ns for p in pycache.glob("rng.*")}
    folder, n_files = _run(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert folder == tmp_path / "xdg" / "fastrec" / "numba"
    assert n_files == 1
    assert {p.name: p.stat().st_mtime_ns for p in pycache.glob("rng.*")} == in_tree


def test_numba_cache_dir_set_by_the_user_wins(tmp_path):
    folder, n_files = _run(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "mine"),
                           XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert folder == tmp_path / "mine"
    assert n_files == 1
    assert not (tmp_path / "xdg").exists()


def test_other_numba_code_keeps_numba_default():
    import numba

    import fastrec.backends.numba  # noqa: F401

    assert numba.config.CACHE_DIR == os.environ.get("NUMBA_CACHE_DIR", "")
