"""How many threads a fit uses when the caller does not say: the cores this process may run on,
less the cores other processes are busy on right now.

Why not simply every core: the CPU kernels synchronise their threads once or more per
mini-batch (NCF, GRU4Rec) or per pass (NMF), and a barrier waits until the OS has run every
thread of the team again. When another process keeps a core busy, one of the fit's threads is
queued behind it at every barrier, so the fit runs far slower on all cores than on the free
ones (benchmarks/load_report.py, 2-core VM shared with other jobs, one busy-loop process
beside the fit: a 1-epoch GMF fit took 52 s on 2 threads against 4.1 s on 1, GRU4Rec 54 s against
7.1 s, NMF 2.2 s against 0.32 s). Every kernel gives the same bits at any thread count, so the
choice changes the speed only.

The load is read from Linux's instantaneous count of runnable threads (the fourth field of
/proc/loadavg), minus this process's own running threads, as the median of a few samples a
millisecond apart (about 3 ms per fit); elsewhere the default is the usable cores. It is
decided once per fit: a load that starts later is not seen. An explicit ``n_threads`` is used
as given.
"""

from __future__ import annotations

import os
import statistics
import time

LOAD_SAMPLES = 3
LOAD_SAMPLE_GAP_S = 0.001


def usable_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. taskset or cgroups)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _runnable_on_machine() -> int | None:
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _runnable_in_process() -> int:
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    running = 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        # the state follows the command name, which is in parentheses and may contain spaces
        running += stat[stat.rfind(")") + 2:].startswith("R")
    return max(running, 1)


def busy_elsewhere() -> int:
    """Runnable threads of other processes now (0 where /proc/loadavg is not available)."""
    samples = []
    for i in range(LOAD_SAMPLES):
        if i:
            time.sleep(LOAD_SAMPLE_GAP_S)
        total = _runnable_on_machine()
        if total is None:
            return 0
        samples.append(max(0, total - _runnable_in_process()))
    return int(statistics.median(samples))


def threads_for(cores: int, online: int, busy: int) -> int:
    """The usable ``cores`` that the ``busy`` threads of other processes, spread over the
    ``online`` CPUs, leave free; at least 1."""
    return max(1, min(cores, online - busy))


def default_n_threads() -> int:
    """Threads for a fit whose ``n_threads`` is None (see the module docstring)."""
    cores = usable_cores()
    return threads_for(cores, os.cpu_count() or cores, busy_elsewhere())


# libgomp's spin at a barrier, or after a parallel region, before its thread sleeps on a futex,
# in iterations of a pause-and-check loop (a pause took 27 ns on this project's AMD EPYC VM, so
# 20000 iterations are about 0.5 ms). It must outlast the serial stretches between the parallel
# passes of a mini-batch (GRU4Rec's recurrence and optimizer steps between its output-layer
# passes take a few hundred us): a thread that sleeps there costs a futex wake-up, and on a
# quiet VM an idle vCPU's wake-up, at the next pass. Measured (2-core VM, the fit's process
# under SCHED_FIFO so the other jobs sharing the VM could not interrupt it, GRU4Rec of
# benchmarks/load_report.py, median of 3): 2 threads took 1.06 s at 2000 against 1.02 s on one
# thread, 0.78 s at 20000 and 0.93 s at 300000 (libgomp's default). The cost of spinning is
# under load, where a thread spins while its sibling waits behind another process (beside a
# busy process, 2 threads of a 1-epoch GMF took 30-35 s at 20000, 4.6-6.0 s at 2000, against
# 2.9-3.3 s on one thread); the default thread count (default_n_threads) runs such fits on the
# free cores only, so only an explicit ``n_threads`` above them pays it.
OPENMP_SPIN_COUNT = "20000"


def set_openmp_wait_policy() -> None:
    """Bound libgomp's spinning, unless the user chose a policy (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``; libgomp lets GOMP_SPINCOUNT override OMP_WAIT_POLICY, so setting it
    beside a user's policy would silently replace theirs). libgomp reads the environment once,
    when it is loaded, so this runs when ``fastrec.backends`` is imported, before any OpenMP
    extension under it can be (the data path loads one before any backend is asked for); the
    Cython kernels and Numba's ``omp`` threading layer share that one libgomp."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
