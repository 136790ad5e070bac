"""Backend registry: lazily probed kernel providers behind the contract in ``_contract``.

Nothing is imported or probed at ``import fastrec``: a backend is probed the first time it is
asked for (by a model, ``resolve("auto")`` or ``show_backends()``), and the outcome is cached.
Importing this package only sets fastrec's OpenMP wait policy (threads.set_openmp_wait_policy),
which must precede the first import of any OpenMP extension below it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastrec.backends._contract import CONTRACT
from fastrec.backends.threads import default_n_threads, set_openmp_wait_policy, usable_cores

__all__ = [
    "AUTO_ORDER",
    "Backend",
    "BackendUnavailable",
    "available_backends",
    "default_n_threads",
    "get_backend",
    "show_backends",
]

set_openmp_wait_policy()

# Fastest first: ``backend="auto"`` takes the first available one that has every kernel needed.
AUTO_ORDER = ("cuda", "cython", "numba", "numpy")

# Backend name -> module under fastrec.backends (the numpy backend is the reference oracle).
_MODULES = {"cuda": "cuda", "cython": "cython", "numba": "numba", "numpy": "reference"}

_INSTALL_HINTS = {
    "numpy": "it ships with fastrec",
    "cython": "reinstall from source with a C++ compiler: pip install .",
    "numba": 'pip install "fastrec[numba]" (or: pip install numba)',
    "cuda": 'a CUDA GPU and driver, then pip install "fastrec[cuda]"',
}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says why and what to install."""


@dataclass
class Backend:
    """A probed backend: its kernels as attributes, plus what ``show_backends`` reports."""

    name: str
    available: bool
    reason: str = ""
    version: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    kernels: dict[str, Any] = field(default_factory=dict)
    # The backend module's ``default_n_blocks(n_users, n_items)`` when it has one (CUDA sizes
    # the SGD grid to the device); None: the CPU rule, ``sgd_schedule.choose_n_blocks``.
    n_blocks_rule: Callable[[int, int], int] | None = None
    # The backend module's ``row_width(kind, k, dtype)`` when its kernels want padded factor
    # rows (the CPU backends); None: rows are k wide.
    row_width_rule: Callable[[str, int, Any], int] | None = None

    def has(self, *names: str) -> bool:
        return all(n in self.kernels for n in names)

    def default_n_blocks(self, n_users: int, n_items: int) -> int:
        """Side ``G`` of the SGD block grid this backend wants for an n_users x n_items matrix
        (what ``MF(n_blocks=None)`` uses)."""
        if self.n_blocks_rule is not None:
            return self.n_blocks_rule(n_users, n_items)
        from fastrec._algorithms.sgd_schedule import choose_n_blocks

        return choose_n_blocks(n_users, n_items)

    def row_width(self, kind: str, k: int, dtype) -> int:
        """Width of the rank-``k`` factor rows this backend's ``kind`` kernels ("sgd", "nmf")
        update: ``k``, or more zero-padded columns where the kernels vectorise over them."""
        return k if self.row_width_rule is None else self.row_width_rule(kind, k, dtype)

    @property
    def on_device(self) -> bool:
        """True when the kernels take device (CuPy) arrays: the array module the estimators
        place their inputs and state in (see :class:`fastrec._array.Placement`)."""
        return self.name == "cuda"

    def __getattr__(self, item: str):
        kernels = self.__dict__.get("kernels", {})
        if item in kernels:
            return kernels[item]
        raise AttributeError(f"backend {self.__dict__.get('name')!r} has no kernel {item!r}")


_CACHE: dict[str, Backend] = {}


def _probe(name: str) -> Backend:
    if name in _CACHE:
        return _CACHE[name]
    if name not in AUTO_ORDER:
        raise ValueError(f"unknown backend {name!r}; choose one of {('auto', *AUTO_ORDER)}")
    try:
        module = importlib.import_module(f"fastrec.backends.{_MODULES[name]}")
        version, details = module.probe()
        kernels = {k: getattr(module, k) for k in CONTRACT if hasattr(module, k)}
        backend = Backend(name, True, "", version, details, kernels,
                          getattr(module, "default_n_blocks", None),
                          getattr(module, "row_width", None))
    except Exception as exc:  # noqa: BLE001 - any failure to load is a reason to report
        reason = f"{type(exc).__name__}: {exc}".strip()
        if "pip install" not in reason:  # the probe's own message may already say what to do
            reason += f" (needs {_INSTALL_HINTS[name]})"
        backend = Backend(name, False, reason)
    _CACHE[name] = backend
    return backend


def get_backend(name: str = "auto", require: tuple[str, ...] = ()) -> Backend:
    """Return the backend ``name`` (or the fastest available for ``"auto"``).

    Raises :class:`BackendUnavailable` with the reason when it cannot run here or lacks a kernel
    listed in ``require``.
    """
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            backend = _probe(candidate)
            if backend.available and backend.has(*require):
                return backend
            reasons.append(f"{candidate}: {_why_not(backend, require)}")
        raise BackendUnavailable("no backend can run this: " + "; ".join(reasons))
    backend = _probe(name)
    if not backend.available or not backend.has(*require):
        raise BackendUnavailable(f"backend {name!r} is unavailable: {_why_not(backend, require)}")
    return backend


def _why_not(backend: Backend, require: tuple[str, ...]) -> str:
    if not backend.available:
        return backend.reason
    missing = [r for r in require if r not in backend.kernels]
    return f"has no kernel {', '.join(missing)} yet" if missing else "available"


def auto_choice(require: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """The backend ``"auto"`` picks for ``require``, and why each faster one was passed over."""
    passed_over = {}
    for candidate in AUTO_ORDER:
        backend = _probe(candidate)
        if backend.available and backend.has(*require):
            return candidate, passed_over
        passed_over[candidate] = _why_not(backend, require)
    raise BackendUnavailable("no backend available: " + "; ".join(passed_over.values()))


def available_backends(require: tuple[str, ...] = ()) -> list[str]:
    return [n for n in AUTO_ORDER if _probe(n).available and _probe(n).has(*require)]


def show_backends(file=None) -> list[Backend]:
    """Print every backend: availability, version, threads, OpenMP, kernels, or why not."""
    out = file or sys.stdout
    backends = [_probe(n) for n in AUTO_ORDER]
    print(f"fastrec backends (auto order: {' > '.join(AUTO_ORDER)}; "
          f"{usable_cores()} usable cores, {default_n_threads()} free now)", file=out)
    for b in backends:
        if b.available:
            extra = ", ".join(f"{k}={v}" for k, v in b.details.items())
            print(f"  {b.name:7s} available  {b.version}  {extra}", file=out)
            print(f"          kernels: {', '.join(sorted(b.kernels)) or 'none'}", file=out)
        else:
            print(f"  {b.name:7s} unavailable: {b.reason}", file=out)
    try:
        name, _ = auto_choice(("sgd_epoch",))
        print(f"  auto -> {name} (for MF)", file=out)
    except BackendUnavailable as exc:
        print(f"  auto -> none: {exc}", file=out)
    return backends
