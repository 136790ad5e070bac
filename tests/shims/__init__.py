"""Test-only compiled wrappers of the csrc/ scalar math (``_shims.pyx``), built on first use.

The parity tests call the header functions one scalar at a time; those wrappers have no place in
the installed extensions, so this module compiles them with the production flags (setup.py's
``extensions()``: C++17, -O3, no FMA contraction) into a cache directory keyed by a hash of
everything that goes into the build, and imports the result. Set ``FASTREC_SHIMS_CACHE`` to move
the cache.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYX = HERE / "_shims.pyx"
INCLUDE = ROOT / "csrc" / "include"
CYTHON_DIR = ROOT / "fastrec" / "backends" / "cython"
# -Wno-unknown-pragmas: the headers' OpenMP pragmas are unused here (built without -fopenmp).
COMPILE_ARGS = ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-wrapv", "-Wno-unknown-pragmas"]


def _cache_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"fastrec-test-shims-{os.getuid()}"
    return Path(os.environ.get("FASTREC_SHIMS_CACHE", default))


def _key() -> str:
    import Cython

    digest = hashlib.sha256()
    for part in (PYX.read_bytes(), (CYTHON_DIR / "_types.pxd").read_bytes(),
                 repr(COMPILE_ARGS).encode(), Cython.__version__.encode(),
                 np.__version__.encode(), sys.version.encode()):
        digest.update(part + b"\0")
    for header in sorted(INCLUDE.rglob("*.h")):
        digest.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _build(out_dir: Path) -> None:
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    work = Path(tempfile.mkdtemp(prefix="build-", dir=out_dir))
    extension = Extension("_shims", [str(PYX)], language="c++",
                          include_dirs=[np.get_include(), str(INCLUDE)],
                          define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                          extra_compile_args=COMPILE_ARGS)
    modules = cythonize([extension], build_dir=str(work), quiet=True,
                        include_path=[str(ROOT)], compiler_directives={"language_level": 3})
    dist = Distribution({"ext_modules": modules})
    command = dist.get_command_obj("build_ext")
    command.build_lib, command.build_temp = str(work / "lib"), str(work / "tmp")
    dist.run_command("build_ext")
    built = next((work / "lib").glob("_shims*"))
    # A concurrent build of the same key writes its own directory, then renames into place.
    built.rename(out_dir / built.name)
    shutil.rmtree(work)


@cache
def load():
    """The compiled ``_shims`` module (built into the cache on first use)."""
    out_dir = _cache_dir() / _key()
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    library = out_dir / f"_shims{suffix}"
    if not library.exists():
        _build(out_dir)
    spec = importlib.util.spec_from_file_location("_shims", library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
