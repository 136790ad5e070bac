"""The Cython sources also build and run serial, without OpenMP (compile-test fallback)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")
def test_builds_and_runs_without_openmp(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "build", "*.so", "*.cpp", ".git", "__pycache__", ".pytest_cache", "*.egg-info"))
    # Every extension, since any of them may call OpenMP outside the shim (omp_shim.h), but
    # the cheapest build of each: one ISA version (FASTREC_NO_CLONES; the clones do not depend
    # on OpenMP, tests/test_isa_versions.py builds and compares them) and the debug build
    # (FASTREC_DEBUG: -O0, bounds checks on), which compiles ~10x faster than -O3 and runs the
    # same kernels, so this test does not cost CI a second full build.
    env = dict(os.environ, FASTREC_DISABLE_OPENMP="1", FASTREC_NO_CLONES="1", FASTREC_DEBUG="1")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "-j", "2"],
                           cwd=src, env=env, capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, build.stderr[-3000:]
    # Importing every module catches an OpenMP call that compiled (omp.h is found without
    # -fopenmp) but left libgomp's symbol undefined.
    modules = sorted(p.stem for p in (src / "fastrec" / "backends" / "cython").glob("*.pyx"))
    assert "_info" in modules and "_sgd" in modules, modules
    check = (f"import importlib; [importlib.import_module('fastrec.backends.cython.' + m) "
             f"for m in {modules!r}]; from fastrec.backends.cython import probe; v, d = probe(); "
             "assert d['openmp'].startswith('off'), d; print(d)")
    result = subprocess.run([sys.executable, "-c", check], cwd=src, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(src)))
    assert result.returncode == 0, result.stderr
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/kernels/test_sgd_kernels.py", "-k", "cython"], cwd=src,
                          capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-2000:]
