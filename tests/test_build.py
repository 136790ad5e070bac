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
    # One ISA version of each kernel (FASTREC_NO_CLONES): the clones do not depend on OpenMP
    # (tests/test_isa_versions.py builds and compares them), and a third of the compile keeps
    # this test from costing CI a second full build.
    env = dict(os.environ, FASTREC_DISABLE_OPENMP="1", FASTREC_NO_CLONES="1")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "-j", "2"],
                           cwd=src, env=env, capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, build.stderr[-3000:]
    check = ("from fastrec.backends.cython import probe, sgd_epoch; v, d = probe(); "
             "assert d['openmp'].startswith('off'), d; print(d)")
    result = subprocess.run([sys.executable, "-c", check], cwd=src, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(src)))
    assert result.returncode == 0, result.stderr
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/kernels/test_sgd_kernels.py", "-k", "cython"], cwd=src,
                          capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-2000:]
