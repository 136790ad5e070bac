"""The numpy reference is an oracle only: no production module imports it, and what production
took over from it (the host-side RNG and samplers, GRU4Rec's inference step) draws and computes
exactly what the reference's plain transcriptions do."""

import ast
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastrec
from fastrec._algorithms import rng, sampling
from fastrec._algorithms.gru4rec import alias_table
from fastrec._algorithms.gru_forward import gru_step
from fastrec.backends.reference import gru as ref_gru
from fastrec.backends.reference import ncf as ref_ncf
from fastrec.backends.reference import rng as ref_rng
from tests.tolerances import tolerance

PACKAGE = Path(fastrec.__file__).resolve().parent
REFERENCE = "fastrec.backends.reference"
# The registries load backend "numpy" (the reference) when asked for it by name: the backend
# registry, and the top-n dispatcher (its backend="numpy" kernels are the reference's).
REGISTRIES = {"fastrec.backends.__init__", "fastrec._algorithms.topn"}


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of the modules (and imported names) that ``source``, the text of module
    ``module``, imports: ``import``, ``from ... import`` (relative ones resolved) and
    ``importlib.import_module("...")`` with a literal name."""
    package = module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return names


def _imports_reference(names) -> list[str]:
    return sorted(n for n in names if n == REFERENCE or n.startswith(REFERENCE + "."))


def test_only_the_registry_imports_the_reference():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if parts[-1] == "__init__":
            module += ".__init__"  # relative imports resolve against the package itself
        if module.startswith(REFERENCE) or module in REGISTRIES:
            continue
        hits = _imports_reference(imported_modules(path.read_text(), module))
        if hits:
            offenders.append(f"{path.relative_to(PACKAGE.parent)}: {hits}")
    assert not offenders, "production code imports the reference oracle:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    "from fastrec.backends.reference.ncf import draw_negatives",
    "import fastrec.backends.reference.gru",
    "from fastrec.backends import reference",
    "from ..backends.reference import rng",
    "from .reference import optim",
    "import importlib\nimportlib.import_module('fastrec.backends.reference')",
])
def test_the_import_scan_sees_every_spelling(source):
    module = "fastrec.backends.probe" if source.startswith("from .reference") else (
        "fastrec.models.probe")
    assert _imports_reference(imported_modules(source, module)), source


def test_the_import_scan_passes_other_imports():
    source = "from fastrec.backends import referenced\nfrom . import reference_notes"
    assert not _imports_reference(imported_modules(source, "fastrec.models.probe"))


SEEDS = [(0, 0, 0, 1), (42, 7, 123456789, 1000), (2**63 + 5, 2**40, 2**62, 2**32), (1, 2, 3, 9724)]


@pytest.mark.parametrize("seed, stream, index, n", SEEDS)
def test_vectorised_rng_is_the_reference_rng(seed, stream, index, n):
    key = ref_rng.rng_key(seed, stream)
    assert int(rng.rng_key(seed, stream)[0]) == key
    indices = np.array([index, index + 1, 2**64 - 1], np.uint64)
    bits = rng.rng_at(key, indices)
    assert bits.tolist() == [ref_rng.rng_at(key, int(i)) for i in indices]
    assert rng.rng_below(bits, n).tolist() == [ref_rng.rng_below(int(b), n) for b in bits]
    assert rng.rng_uniform(bits).tolist() == [ref_rng.rng_uniform(int(b)) for b in bits]


def test_rng_is_uniform_and_streams_differ():
    bits = rng.rng_at(rng.rng_key(3, 0), np.arange(200_000))
    counts = np.bincount(rng.rng_below(bits, 10).astype(np.int64), minlength=10)
    assert counts.min() > 19_000 and counts.max() < 21_000
    other = rng.rng_at(rng.rng_key(3, 1), np.arange(200_000))
    assert np.mean(bits == other) == 0.0


def test_draw_negatives_is_the_reference_sampler():
    """Same draws, including users who have seen all but one item (many rejections) or every
    item (the last of the NCF_NEGATIVE_TRIES draws is kept)."""
    n_users, n_items = 6, 12
    rows = [np.arange(n_items)[np.arange(n_items) != 5], np.arange(n_items), np.array([0, 3]),
            np.array([], np.int64), np.arange(0, n_items, 2), np.array([11])]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64)
    pos_users = np.repeat(np.arange(n_users), 3).astype(np.int32)
    for seed, epoch in [(3, 0), (2**63 + 5, 7)]:
        expected = ref_ncf.draw_negatives(pos_users, indptr, indices, n_items, 4, seed, epoch)
        got = sampling.draw_negatives(pos_users, indptr, indices, n_items, 4, seed, epoch)
        assert_array_equal(got, expected)
        assert (got[:3] == 5).all()
        subset = np.array([4, 9, 0])
        assert_array_equal(
            sampling.draw_negatives(pos_users, indptr, indices, n_items, 4, seed, epoch, subset),
            expected[subset])


def test_sample_negatives_is_the_reference_sampler():
    rng_np = np.random.default_rng(6)
    prob, alias = alias_table(rng_np.random(37) ** 3)
    for first in (0, 2**40):
        expected = ref_gru.sample_negatives(prob, alias, 500, 7, 5, first)
        assert_array_equal(sampling.sample_negatives(prob, alias, 500, 7, 5, first), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_layers", [1, 3])
def test_gru_step_is_one_step_of_the_reference_forward(dtype, n_layers):
    rng_np = np.random.default_rng(n_layers)
    B, H = 5, 4
    A0 = rng_np.normal(size=(B, 3 * H)).astype(dtype)
    hidden = rng_np.normal(size=(n_layers, B, H)).astype(dtype)
    Wx_rest = rng_np.normal(size=(max(n_layers - 1, 0), H, 3 * H)).astype(dtype)
    Wh = rng_np.normal(size=(n_layers, H, 3 * H)).astype(dtype)
    b = rng_np.normal(size=(n_layers, 3 * H)).astype(dtype)
    hs, _ = ref_gru.stack_forward(A0[None], hidden, np.zeros((1, B), np.uint8), Wx_rest, Wh, b)
    got = gru_step(A0, hidden, Wx_rest, Wh, b)
    assert got.dtype == dtype
    assert_allclose(got, hs[:, 0], **tolerance(dtype))
