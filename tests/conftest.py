"""Shared fixtures: backends that skip with the reason when they cannot run here, the CPU
backends as parameters, and the test-only compiled scalar wrappers."""

from pathlib import Path

import numpy as np
import pytest

from fastrec.backends import BackendUnavailable, get_backend

CPU_BACKENDS = ("numpy", "cython", "numba")
COMPILED_BACKENDS = ("cython", "numba")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def backend_or_skip(name: str, *kernels: str):
    """The backend ``name`` (its kernels as attributes); skips the test with the reason when it
    cannot run here or lacks one of ``kernels``."""
    try:
        return get_backend(name, require=kernels)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


def planted_split(n_users: int, n_items: int, n_ratings: int, rank: int, noise_std: float,
                  seed: int):
    """A planted low-rank rating problem (``fastrec.data.synthetic_ratings``) split at random
    80/20 into ``(train, test)`` Interactions."""
    from fastrec.data import synthetic_ratings

    data = synthetic_ratings(n_users=n_users, n_items=n_items, n_ratings=n_ratings, rank=rank,
                             noise_std=noise_std, seed=seed).interactions
    mask = np.random.default_rng(0).random(data.nnz) < 0.8
    return data.subset(mask), data.subset(~mask)


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    return request.param


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request):
    return request.param


@pytest.fixture(scope="session")
def shims():
    """``tests/shims/_shims.pyx`` compiled (cached) and imported: the header scalar math."""
    pytest.importorskip("Cython")
    from tests.shims import load

    return load()


# The files that take longest (mostly compiles: the serial build, Numba's first GRU/NCF/NMF
# kernels, NVRTC for every architecture, the emulator, the ISA versions), first: pytest-xdist
# (`-n auto --dist loadfile`, the README's command) hands files to its workers in this order, and
# a long file handed out last leaves one worker running it alone at the end.
LONGEST_FIRST = (
    "tests/test_build.py",
    "tests/gru/test_gru4rec_model.py",
    "tests/cuda/test_compile.py",
    "tests/models/test_battery.py",
    "tests/ncf/test_joint.py",
    "tests/cuda/test_ncf_emulated.py",
    "tests/nmf/test_kernels.py",
    "tests/test_isa_versions.py",
    "tests/cuda/test_gru_emulated.py",
    "tests/cuda/test_sgd_emulated.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
