"""svdpp_epoch of every CPU backend against the numpy reference, and against MF's sgd_epoch when
there is no implicit feedback."""

import numpy as np
import pytest

from fastrec.backends._contract import ContractError, check_svdpp_epoch
from fastrec.backends.reference import sgd_epoch as reference_sgd_epoch
from fastrec.backends.reference import svdpp_epoch as reference_epoch
from tests.conftest import COMPILED_BACKENDS, backend_or_skip
from tests.svdpp.problems import make_svdpp_problem, run_epoch

TOLERANCE = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("k", [1, 37])
def test_epoch_matches_reference(backend, dtype, index_dtype, k):
    kernel = backend_or_skip(backend, "svdpp_epoch").svdpp_epoch
    for implicit, biased in (("rated", True), ("more", False), ("random", True)):
        data, state, scalars = make_svdpp_problem(k=k, dtype=dtype, index_dtype=index_dtype,
                                                  implicit=implicit, seed=k)
        sse_ref, expected = run_epoch(reference_epoch, data, state, scalars, biased)
        sse, got = run_epoch(kernel, data, state, scalars, biased)
        np.testing.assert_allclose(sse, sse_ref, rtol=1e-4 if dtype == np.float32 else 1e-10)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], **TOLERANCE[dtype],
                                       err_msg=f"{name} ({implicit})")
            assert got[name].dtype == dtype
        if not biased:
            np.testing.assert_array_equal(got["user_bias"], state["user_bias"])
            np.testing.assert_array_equal(got["item_bias"], state["item_bias"])


def test_reference_without_implicit_feedback_is_mf():
    """With every N(u) empty, z = 0 and y only decays: the epoch is MF's sgd_epoch (computed by
    the other reference, in its own formulation)."""
    data, state, scalars = make_svdpp_problem(k=6, implicit="none")
    sse, got = run_epoch(reference_epoch, data, state, scalars)
    mf = {name: state[name].copy() for name in ("user_factors", "item_factors", "user_bias",
                                                "item_bias")}
    sse_mf = reference_sgd_epoch(*list(data.values())[:5], *mf.values(), *scalars[:5], True)
    assert sse == pytest.approx(sse_mf, rel=1e-12)
    for name, table in mf.items():
        np.testing.assert_allclose(got[name], table, rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_array_equal(got["implicit_factors"], state["implicit_factors"])


def test_implicit_factors_learn_from_all_their_users_ratings():
    """One user, one rated item j and one unrated implicit item: the y of both moves by the
    norm-weighted gradient of the user's rating, then the proximal shrink."""
    data, state, scalars = make_svdpp_problem(n_users=1, n_items=2, nnz=1, k=3, n_blocks=1,
                                              implicit="rated")
    data["user_ptr"], data["user_items"] = np.array([0, 2]), np.array([0, 1], np.int32)
    data["item_ptr"], data["item_users"] = np.array([0, 1, 2]), np.array([0, 0], np.int32)
    mu, lr, _, _, _, reg_y = scalars
    p, y = state["user_factors"][0], state["implicit_factors"]
    i = data["items"][0]
    q = state["item_factors"][i]
    norm = 1 / np.sqrt(2)
    z = norm * y.sum(axis=0)
    err = data["ratings"][0] - (mu + state["user_bias"][0] + state["item_bias"][i] + (p + z) @ q)
    for backend in ("numpy", *COMPILED_BACKENDS):
        kernel = backend_or_skip(backend, "svdpp_epoch").svdpp_epoch
        _, got = run_epoch(kernel, data, state, scalars)
        np.testing.assert_allclose(got["implicit_factors"],
                                   (y + lr * norm * err * q) / (1 + lr * reg_y), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [5, 32])
def test_numba_equals_cython_bit_for_bit(dtype, k):
    """Both compiled CPU backends run the header's operations in the same order (16-lane dot,
    sums in CSR/CSC order, no FMA contraction), so they agree exactly."""
    cython = backend_or_skip("cython", "svdpp_epoch").svdpp_epoch
    numba = backend_or_skip("numba", "svdpp_epoch").svdpp_epoch
    data, state, scalars = make_svdpp_problem(n_users=300, n_items=200, nnz=6000, k=k,
                                              n_blocks=8, dtype=dtype, implicit="more")
    sse_c, by_cython = run_epoch(cython, data, state, scalars)
    sse_n, by_numba = run_epoch(numba, data, state, scalars)
    assert sse_c == sse_n
    for name in by_cython:
        np.testing.assert_array_equal(by_numba[name], by_cython[name], err_msg=name)


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_bitwise_identical_at_any_thread_count(backend):
    kernel = backend_or_skip(backend, "svdpp_epoch").svdpp_epoch
    data, state, scalars = make_svdpp_problem(n_users=200, n_items=150, nnz=3000, k=16,
                                              n_blocks=6, dtype=np.float32)
    runs = [run_epoch(kernel, data, state, scalars, n_threads=n) for n in (1, 2, 4)]
    for sse, got in runs[1:]:
        assert sse == runs[0][0]
        for name in got:
            np.testing.assert_array_equal(got[name], runs[0][1][name], err_msg=name)


def test_contract_check_rejects_bad_implicit_arrays():
    data, state, _ = make_svdpp_problem()
    check_svdpp_epoch(*data.values(), *state.values())
    bad = dict(data, user_items=data["user_items"].astype(np.int64))
    with pytest.raises(ContractError, match="dtype"):
        check_svdpp_epoch(*bad.values(), *state.values())
    bad = dict(data, item_users=np.full_like(data["item_users"], 10**6))
    with pytest.raises(ContractError, match="out of range"):
        check_svdpp_epoch(*bad.values(), *state.values())
    bad = dict(data, user_ptr=data["user_ptr"][::-1].copy())
    with pytest.raises(ContractError, match="rise"):
        check_svdpp_epoch(*bad.values(), *state.values())
    with pytest.raises(ContractError, match="implicit_factors"):
        check_svdpp_epoch(*data.values(), *dict(state, implicit_factors=state[
            "user_factors"]).values())
