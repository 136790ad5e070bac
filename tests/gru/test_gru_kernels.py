"""GRU4Rec kernels: the numpy reference against finite differences, and every backend's forward,
BPTT backward, sampled-output losses and whole training epoch against the reference."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrec._algorithms.gru4rec import GRU4RecParams, alias_table, session_parallel_schedule
from fastrec._algorithms.sampling import sample_negatives
from fastrec.backends import _probe
from fastrec.backends._contract import (
    LOSS_CODES,
    OPT_ADAGRAD,
    OPT_ADAM,
    ContractError,
    GRU4RecSpec,
    check_gru,
    check_gru4rec_epoch,
    rng_streams,
)
from fastrec.backends.reference import gru as ref
from tests.conftest import backend_or_skip
from tests.tolerances import assert_gradient_matches, tolerance

COMPILED = ("cython", "numba")
LOSSES = tuple(LOSS_CODES.values())


def gru_problem(T, L, dtype=np.float64, B=4, D=5, H=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(T, B, D)).astype(dtype)
    h0 = (0.5 * rng.normal(size=(L, B, H))).astype(dtype)
    reset = (rng.random((T, B)) < 0.3).astype(np.uint8)
    Wx0 = (0.4 * rng.normal(size=(D, 3 * H))).astype(dtype)
    Wx_rest = (0.4 * rng.normal(size=(L - 1, H, 3 * H))).astype(dtype)
    Wh = (0.4 * rng.normal(size=(L, H, 3 * H))).astype(dtype)
    b = (0.1 * rng.normal(size=(L, 3 * H))).astype(dtype)
    G = rng.normal(size=(T, B, H)).astype(dtype)  # loss = sum(G * top outputs)
    return [X, h0, reset, Wx0, Wx_rest, Wh, b], G


@pytest.mark.parametrize("T,L", [(1, 1), (3, 1), (1, 2), (3, 2)])
def test_reference_gru_backward_matches_finite_differences(T, L):
    args, G = gru_problem(T, L)

    def loss():
        hs, _ = ref.gru_forward(*args)
        return float(np.sum(G * hs[-1]))

    hs, gates = ref.gru_forward(*args)
    grads = ref.gru_backward(*args, hs, gates, G)
    rng = np.random.default_rng(1)
    for arg_index, grad in zip((0, 1, 3, 4, 5, 6), grads, strict=True):
        assert_gradient_matches(loss, args[arg_index], grad, rng)


@pytest.mark.parametrize("loss", LOSSES)
def test_reference_output_loss_matches_finite_differences(loss):
    rng = np.random.default_rng(2)
    N, H, n_items, K = 4, 5, 12, 6
    hidden = rng.normal(size=(N, H))
    table = 0.5 * rng.normal(size=(n_items, H + 1))
    samples = np.concatenate([rng.permutation(n_items)[:N], rng.integers(0, n_items, K)])
    total, d_hidden, d_rows = ref.gru4rec_output_loss(hidden, table, samples, loss, 0.7, 1.0)
    d_table = np.zeros_like(table)
    np.add.at(d_table, samples, d_rows)

    def f():
        return ref.gru4rec_output_loss(hidden, table, samples, loss, 0.7, 1.0)[0]

    for param, grad in ((hidden, d_hidden), (table, d_table)):
        assert_gradient_matches(f, param, grad, rng, n_points=8)


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("T,L", [(1, 1), (3, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gru_forward_backward_match_reference(name, T, L, dtype):
    if name == "numba" and dtype == np.float32:
        pytest.skip("Numba float32 not compiled in the suite (a second full compile, ~40 s CPU); "
                    "the benchmarks run it")
    backend = backend_or_skip(name, "gru4rec_train_epoch")
    args, G = gru_problem(T, L, dtype)
    check_gru(*args)
    expected = ref.gru_forward(*args)
    got = backend.gru_forward(*args, n_threads=2)
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == dtype
        assert_allclose(g, e, **tolerance(dtype))
    expected_grads = ref.gru_backward(*args, *expected, G)
    got_grads = backend.gru_backward(*args, *expected, G, n_threads=2)
    for e, g in zip(expected_grads, got_grads, strict=True):
        assert g.shape == e.shape
        assert_allclose(g, e, **tolerance(dtype))


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("loss", LOSSES)
def test_output_loss_matches_reference(name, loss):
    backend = backend_or_skip(name, "gru4rec_train_epoch")
    rng = np.random.default_rng(3)
    N, H, n_items, K = 20, 7, 50, 300  # several sample chunks
    hidden = rng.normal(size=(N, H))
    table = 0.5 * rng.normal(size=(n_items, H + 1))
    samples = np.concatenate([rng.integers(0, n_items, N),
                              rng.integers(0, n_items, K)]).astype(np.int32)
    expected = ref.gru4rec_output_loss(hidden, table, samples, loss, 0.5, 0.1)
    got = backend.gru4rec_output_loss(hidden, table, samples, loss, 0.5, 0.1, 2)
    assert_allclose(got[0], expected[0], rtol=1e-10)
    assert_allclose(got[1], expected[1], **tolerance(np.float64))
    assert_allclose(got[2], expected[2], **tolerance(np.float64))


def epoch_problem(L, embedding, index_dtype=np.int32, dtype=np.float64, n_items=30, B=4, H=6):
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 7, 40)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    items = rng.integers(0, n_items, offsets[-1]).astype(index_dtype)
    schedule = session_parallel_schedule(items, offsets, B)
    prob, alias = alias_table(np.bincount(items, minlength=n_items) ** 0.75 + 1e-3, index_dtype)
    params = GRU4RecParams.init(n_items, H, L, embedding, dtype, np.random.default_rng(5))
    hidden = np.zeros((L, B, H), dtype)
    return schedule, prob, alias, params, hidden


def run_epochs(backend, problem, spec, n_threads=2, n_epochs=2):
    schedule, prob, alias, params, hidden = problem
    params = GRU4RecParams(params.emb.copy(), params.gru.copy(), params.out.copy(),
                           {k: v.copy() for k, v in params.state.items()})
    hidden = hidden.copy()
    check_gru4rec_epoch(schedule.inputs, schedule.targets, schedule.reset, hidden, params.emb,
                        params.gru, params.out, prob, alias, spec)
    losses = []
    for epoch in range(n_epochs):
        total, n_events = backend.gru4rec_train_epoch(
            schedule.inputs, schedule.targets, schedule.reset, hidden, params.emb,
            params.state["emb_s1"], params.state["emb_s2"], params.gru, params.state["gru_s1"],
            params.state["gru_s2"], params.out, params.state["out_s1"], params.state["out_s2"],
            prob, alias, spec._replace(epoch=epoch, step0=epoch * 1000), n_threads)
        losses.append(total)
        assert n_events == (schedule.n_steps // spec.bptt) * spec.bptt * hidden.shape[1]
    return losses, params, hidden


EPOCH_CASES = [
    # L, embedding, loss, method, momentum, bptt, dropout_embed, dropout_hidden
    (1, 5, "cross-entropy", OPT_ADAGRAD, 0.0, 1, 0.0, 0.0),
    (1, 0, "bpr-max", OPT_ADAGRAD, 0.3, 1, 0.0, 0.2),
    (2, 5, "top1-max", OPT_ADAM, 0.0, 3, 0.2, 0.3),
    (2, 0, "cross-entropy", OPT_ADAM, 0.0, 2, 0.0, 0.0),
]


def spec_of(case):
    L, embedding, loss, method, momentum, bptt, d_embed, d_hidden = case
    return GRU4RecSpec(embedding > 0, LOSS_CODES[loss], 1.0, 5, d_embed, d_hidden, bptt, method,
                       0.05, momentum, 0.9, 0.999, 1e-6, 0, 42, 0)


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("case", EPOCH_CASES)
def test_train_epoch_matches_reference(name, case):
    """Sample for sample: same negatives, dropout masks and update order as the reference."""
    backend = backend_or_skip(name, "gru4rec_train_epoch")
    problem = epoch_problem(case[0], case[1])
    spec = spec_of(case)
    expected = run_epochs(_probe("numpy"), problem, spec)
    got = run_epochs(backend, problem, spec)
    assert_allclose(got[0], expected[0], rtol=1e-10)
    for e, g in ((expected[1].emb, got[1].emb), (expected[1].gru, got[1].gru),
                 (expected[1].out, got[1].out), (expected[2], got[2])):
        assert_allclose(g, e, rtol=1e-9, atol=1e-11)
    for key in expected[1].state:
        assert_allclose(got[1].state[key], expected[1].state[key], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", COMPILED)
def test_train_epoch_independent_of_thread_count(name):
    backend = backend_or_skip(name, "gru4rec_train_epoch")
    problem = epoch_problem(1, 5)
    spec = spec_of(EPOCH_CASES[0])
    one = run_epochs(backend, problem, spec, n_threads=1)
    two = run_epochs(backend, problem, spec, n_threads=2)
    assert one[0] == two[0]
    assert np.array_equal(one[1].out, two[1].out) and np.array_equal(one[1].gru, two[1].gru)


def test_float32_epoch_agrees_with_reference():
    # Numba float32 is left to the model tests (a second full compile of the epoch kernel).
    backends = [_probe(n) for n in ("numpy", "cython") if _probe(n).available]
    problem = epoch_problem(1, 5, dtype=np.float32)
    spec = spec_of(EPOCH_CASES[0])
    results = [run_epochs(b, problem, spec, n_epochs=1) for b in backends]
    for other in results[1:]:
        assert_allclose(other[0], results[0][0], rtol=1e-4)
        assert_allclose(other[1].out, results[0][1].out, rtol=1e-3, atol=1e-5)


def test_epoch_contract_rejects_bad_input():
    schedule, prob, alias, params, hidden = epoch_problem(1, 5)
    spec = spec_of(EPOCH_CASES[0])
    bad = schedule.inputs.copy()
    bad[0, 0] = 10_000
    with pytest.raises(ContractError, match="out of range"):
        check_gru4rec_epoch(bad, schedule.targets, schedule.reset, hidden, params.emb,
                            params.gru, params.out, prob, alias, spec)
    with pytest.raises(ContractError, match="gru_params"):
        check_gru4rec_epoch(schedule.inputs, schedule.targets, schedule.reset, hidden,
                            params.emb, params.gru[:-1], params.out, prob, alias, spec)
    with pytest.raises(ContractError, match="dtype"):
        check_gru4rec_epoch(schedule.inputs, schedule.targets, schedule.reset,
                            hidden.astype(np.float32), params.emb, params.gru, params.out,
                            prob, alias, spec)


def test_session_parallel_schedule_fills_slots_in_order():
    # sessions (items): [0 1 2] [3 4] [5] [6 7 8 9] [10 11]; the length-1 session is skipped
    items = np.arange(12, dtype=np.int32)
    offsets = np.array([0, 3, 5, 6, 10, 12])
    s = session_parallel_schedule(items, offsets, 2)
    # slot 0: [0 1 2] at steps 0-1, then [10 11] at step 2, then dry at step 3;
    # slot 1: [3 4] at step 0, then [6 7 8 9] at steps 1-3 (cut at 3 steps)
    assert s.n_steps == 3
    assert s.inputs.tolist() == [[0, 3], [1, 6], [10, 7]]
    assert s.targets.tolist() == [[1, 4], [2, 7], [11, 8]]
    assert s.reset.tolist() == [[1, 1], [0, 1], [1, 0]]


def test_alias_table_reproduces_the_distribution():
    rng = np.random.default_rng(6)
    weights = rng.random(37) ** 3
    prob, alias = alias_table(weights)
    recovered = prob.copy()
    np.add.at(recovered, alias, 1.0 - prob)
    assert_allclose(recovered / len(weights), weights / weights.sum(), atol=1e-12)
    draws = sample_negatives(prob, alias, 200_000, 7, rng_streams(0).negatives, 0)
    freq = np.bincount(draws, minlength=37) / draws.size
    assert_allclose(freq, weights / weights.sum(), atol=4e-3)


def test_numba_exp_mirror_is_accurate():
    pytest.importorskip("numba")
    from numba import njit

    from fastrec.backends.numba.gru_scalar import gru_exp, gru_sigmoid, gru_tanh

    @njit
    def apply(x, out_exp, out_sig, out_tanh):
        for i in range(x.shape[0]):
            out_exp[i] = gru_exp(x[i])
            out_sig[i] = gru_sigmoid(x[i])
            out_tanh[i] = gru_tanh(x[i])

    x = np.linspace(-80, 80, 20001).astype(np.float32)
    e, s, t = (np.empty_like(x) for _ in range(3))
    apply(x, e, s, t)
    assert e.dtype == np.float32
    assert_allclose(e, np.exp(x.astype(np.float64)), rtol=5e-7)
    assert_allclose(s, 1 / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6, atol=1e-7)
    assert_allclose(t, np.tanh(x.astype(np.float64)), atol=3e-7)
