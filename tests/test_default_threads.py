"""The default thread count leaves the cores other processes are busy on to them."""

import sys

import pytest

from fastrec.backends import threads


@pytest.mark.parametrize(("cores", "online", "busy", "expected"), [
    (2, 2, 0, 2),   # quiet machine: every usable core
    (2, 2, 1, 1),   # one busy process beside the fit
    (2, 2, 7, 1),   # overloaded: never below one thread
    (4, 8, 3, 4),   # affinity is the cap when enough CPUs are free
    (8, 8, 5, 3),
])
def test_threads_for(cores, online, busy, expected):
    assert threads.threads_for(cores, online, busy) == expected


def test_default_counts_other_processes_only(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "_runnable_in_process", lambda: 2)
    monkeypatch.setattr(threads, "_runnable_on_machine", lambda: 3)  # 2 of them are ours
    assert threads.default_n_threads() == 3
    monkeypatch.setattr(threads, "_runnable_on_machine", lambda: None)  # no /proc/loadavg
    assert threads.default_n_threads() == 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_proc_readers():
    assert threads._runnable_in_process() >= 1  # the calling thread is running
    assert threads._runnable_on_machine() >= 1
    assert 1 <= threads.default_n_threads() <= threads.usable_cores()


@pytest.mark.parametrize(("env", "expected"), [
    ({}, threads.OPENMP_SPIN_COUNT),
    ({"GOMP_SPINCOUNT": "5"}, "5"),
    ({"OMP_WAIT_POLICY": "passive"}, None),  # GOMP_SPINCOUNT would override the user's policy
])
def test_openmp_wait_policy_respects_the_user(monkeypatch, env, expected):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    threads.set_openmp_wait_policy()
    assert threads.os.environ.get("GOMP_SPINCOUNT") == expected


def test_wait_policy_precedes_the_first_openmp_extension():
    """The data path loads libgomp before any backend is asked for, and libgomp reads the
    policy once, when it loads: importing it alone must find the policy set."""
    import os
    import subprocess

    pytest.importorskip("fastrec.backends.cython._datapath")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import os, fastrec.backends.cython._datapath; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == threads.OPENMP_SPIN_COUNT
