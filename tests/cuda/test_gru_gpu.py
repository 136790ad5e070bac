"""The CUDA GRU4Rec kernels and GRU4Rec(backend="cuda") on a real device (marked ``gpu``;
skipped with the reason where there is none; the fitted model stays on the device), plus what
needs no device: the clear error of an unavailable backend and the contract checks that run
before any CuPy call."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastrec.backends._contract import LOSS_CODES, ContractError
from fastrec.backends.reference import gru as ref
from tests.cuda.gru_problems import (
    EPOCH_CASES,
    copy_state,
    epoch_problem,
    epoch_spec,
    gru_problem,
    loss_problem,
    run_epoch,
)
from tests.tolerances import tolerance

CUDA_KERNELS = ("gru_forward", "gru_backward", "gru4rec_output_loss", "gru4rec_train_epoch")


def test_contract_errors_need_no_device():
    from fastrec.backends.cuda import gru4rec_output_loss, gru_forward

    args, _ = gru_problem(2, 1)
    with pytest.raises(ContractError, match="h0 must have shape"):
        gru_forward(args[0], args[1][:, :2].copy(), *args[2:])
    hidden, table, samples = loss_problem()
    with pytest.raises(ContractError, match="out_table must have shape"):
        gru4rec_output_loss(hidden, table[:, :3].copy(), samples, 0, 0.0, 1.0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,L", [(1, 1), (4, 2)])
def test_forward_backward_match_reference(cuda_backend, T, L, dtype):
    import cupy

    args, d_top = gru_problem(T, L, dtype, B=37, D=11, H=40)
    expected = ref.gru_forward(*args)
    got = cuda_backend.gru_forward(*args)
    for e, g in zip(expected, got, strict=True):
        assert isinstance(g, np.ndarray) and g.dtype == dtype
        assert_allclose(g, e, **tolerance(dtype, "device"))
    expected_grads = ref.gru_backward(*args, *expected, d_top)
    on_device = [cupy.asarray(a) for a in (*args, *expected, d_top)]
    got_grads = cuda_backend.gru_backward(*on_device)
    for e, g in zip(expected_grads, got_grads, strict=True):
        assert isinstance(g, cupy.ndarray)
        assert_allclose(g.get(), e, **tolerance(dtype, "device"))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", tuple(LOSS_CODES.values()))
def test_output_loss_matches_reference(cuda_backend, loss, dtype):
    hidden, table, samples = loss_problem(dtype, N=50, H=24, n_items=300, K=700)
    expected = ref.gru4rec_output_loss(hidden, table, samples, loss, 0.5, 0.02)
    got = cuda_backend.gru4rec_output_loss(hidden, table, samples, loss, 0.5, 0.02)
    for e, g in zip(expected, got, strict=True):
        assert_allclose(g, e, **tolerance(dtype, "device"))


@pytest.mark.gpu
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("case", EPOCH_CASES)
def test_train_epoch_matches_reference_and_repeats(cuda_backend, case, index_dtype):
    problem = epoch_problem(case[0], case[1], index_dtype, n_items=40, B=8, H=16,
                            n_sessions=60)
    spec = epoch_spec(case, n_sample=16)
    schedule, prob, alias = problem[:3]
    expected = run_epoch(problem, spec)
    runs = []
    for _ in range(2):
        arrays = copy_state(problem)
        total, n_events = cuda_backend.gru4rec_train_epoch(
            schedule.inputs, schedule.targets, schedule.reset, *arrays, prob, alias, spec, 1)
        runs.append((total, n_events, arrays))
    assert runs[0][1] == expected[1] > 0
    assert_allclose(runs[0][0], expected[0], rtol=1e-9)
    for g, e in zip(runs[0][2], expected[2], strict=True):
        assert_allclose(g, e, rtol=1e-8, atol=1e-10)
    assert runs[1][0] == runs[0][0]  # no atomics: bit-for-bit repeatable
    for g, e in zip(runs[1][2], runs[0][2], strict=True):
        assert np.array_equal(g, e)


@pytest.mark.gpu
def test_train_epoch_in_place_on_device_arrays(cuda_backend):
    import cupy

    case = EPOCH_CASES[2]
    problem = epoch_problem(case[0], case[1], dtype=np.float32)
    spec = epoch_spec(case)
    schedule, prob, alias = problem[:3]
    expected = run_epoch(problem, spec)
    arrays = [cupy.asarray(a) for a in copy_state(problem)]
    total, n_events = cuda_backend.gru4rec_train_epoch(
        *(cupy.asarray(a) for a in (schedule.inputs, schedule.targets, schedule.reset)),
        *arrays, cupy.asarray(prob), cupy.asarray(alias), spec, 1)
    assert n_events == expected[1]
    assert_allclose(total, expected[0], rtol=1e-4)
    for g, e in zip(arrays, expected[2], strict=True):
        assert_allclose(g.get(), e, rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
def test_estimator_trains_on_the_device(cuda_backend):
    from fastrec import GRU4Rec
    from fastrec.data import synthetic_sessions

    frame = synthetic_sessions(n_sessions=400, n_items=40, random_state=0)
    train, test = frame[frame.session_id < 340], frame[frame.session_id >= 340]
    params = dict(hidden_size=24, n_sample=16, batch_size=16, n_epochs=4, learning_rate=0.1,
                  random_state=0, dtype="float64")
    model = GRU4Rec(backend="cuda", **params).fit(train)
    assert model.backend_ == "cuda"
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.evaluate(test, k=20)["recall"] > 0.75
    cpu = GRU4Rec(backend="numpy", **{**params, "n_epochs": 1}).fit(train)
    one = GRU4Rec(backend="cuda", **{**params, "n_epochs": 1}).fit(train)
    assert_allclose(one.to_numpy().output_table_, cpu.output_table_, rtol=1e-7, atol=1e-9)
