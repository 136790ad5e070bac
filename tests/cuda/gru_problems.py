"""Small GRU4Rec problems and emulator plumbing shared by the emulated GRU tests and the
AddressSanitizer script (the launchers run with numpy as the array module, so matmul is numpy's
and every custom kernel is the real csrc/cuda/gru.cu built in the emulator)."""

from __future__ import annotations

import numpy as np

from fastrec._algorithms.gru4rec import GRU4RecParams, alias_table, session_parallel_schedule
from fastrec.backends._contract import LOSS_CODES, OPT_ADAGRAD, OPT_ADAM, GRU4RecSpec
from fastrec.backends.cuda import _loader
from fastrec.backends.cuda.gru import (
    kernel_expression,
    kernel_source,
    launch_output_loss,
    launch_train_epoch,
)
from fastrec.backends.reference import gru as ref


def gru_modules(emulator, asan=False):
    """``csrc/cuda/gru.cu`` and ``optim.cu`` (its optimizer steps) built in the emulator with the
    loader's options and names, by loader name."""
    return {name: emulator.EmulatedModule(_loader.kernel_path(name), _loader.compile_options(),
                                          _loader.NAME_EXPRESSIONS[name], asan=asan)
            for name in ("gru", "optim")}


def gru_kernels(modules, dtype, index_dtype=np.int32, order="forward", seed=0):
    def get_kernel(name):
        return modules[kernel_source(name)].get_function(
            kernel_expression(name, dtype, index_dtype), order=order, seed=seed)

    return get_kernel


def gru_problem(T, L, dtype=np.float64, B=3, D=4, H=5, seed=0):
    """(X, h0, reset, Wx0, Wx_rest, Wh, b), d_top; resets include step 0 and later steps."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(T, B, D)).astype(dtype)
    h0 = (0.5 * rng.normal(size=(L, B, H))).astype(dtype)
    reset = (rng.random((T, B)) < 0.3).astype(np.uint8)
    reset[0, 0] = 1
    Wx0 = (0.4 * rng.normal(size=(D, 3 * H))).astype(dtype)
    Wx_rest = (0.4 * rng.normal(size=(L - 1, H, 3 * H))).astype(dtype)
    Wh = (0.4 * rng.normal(size=(L, H, 3 * H))).astype(dtype)
    b = (0.1 * rng.normal(size=(L, 3 * H))).astype(dtype)
    d_top = rng.normal(size=(T, B, H)).astype(dtype)
    return (X, h0, reset, Wx0, Wx_rest, Wh, b), d_top


def loss_problem(dtype=np.float64, index_dtype=np.int32, N=4, H=5, n_items=9, K=6, seed=3):
    """hidden, out_table, samples (duplicates among targets and negatives)."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(N, H)).astype(dtype)
    table = (0.5 * rng.normal(size=(n_items, H + 1))).astype(dtype)
    samples = np.concatenate([rng.integers(0, n_items, N),
                              rng.integers(0, n_items, K)]).astype(index_dtype)
    return hidden, table, samples


def emulated_output_loss(get_kernel, hidden, table, samples, loss, bpreg, grad_scale):
    N, H = hidden.shape
    S = samples.shape[0]
    d_hidden = np.empty((1, N, H), hidden.dtype)
    d_rows = np.empty((1, S, H + 1), hidden.dtype)
    row_loss = np.empty(N)
    launch_output_loss(np, get_kernel, hidden[None], table, samples[None], loss, bpreg,
                       grad_scale, d_hidden, d_rows, row_loss)
    return float(row_loss.sum()), d_hidden[0], d_rows[0]


def epoch_problem(L, embedding, index_dtype=np.int32, dtype=np.float64, n_items=10, B=3, H=4,
                  n_sessions=9, seed=4):
    """A tiny session-parallel schedule with its alias table, parameters and hidden state."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 5, n_sessions)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    items = rng.integers(0, n_items, offsets[-1]).astype(index_dtype)
    schedule = session_parallel_schedule(items, offsets, B)
    prob, alias = alias_table(np.bincount(items, minlength=n_items) ** 0.75 + 1e-3, index_dtype)
    params = GRU4RecParams.init(n_items, H, L, embedding, dtype, np.random.default_rng(seed + 1))
    return schedule, prob, alias, params, np.zeros((L, B, H), dtype)


# L, embedding, loss, method, momentum, bptt, dropout_embed, dropout_hidden
EPOCH_CASES = (
    (1, 4, "cross-entropy", OPT_ADAGRAD, 0.0, 2, 0.0, 0.0),
    (1, 0, "bpr-max", OPT_ADAGRAD, 0.3, 1, 0.0, 0.2),
    (2, 3, "top1-max", OPT_ADAM, 0.0, 3, 0.2, 0.3),
)


def epoch_spec(case, n_sample=4):
    L, embedding, loss, method, momentum, bptt, d_embed, d_hidden = case
    return GRU4RecSpec(embedding > 0, LOSS_CODES[loss], 1.0, n_sample, d_embed, d_hidden, bptt,
                       method, 0.05, momentum, 0.9, 0.999, 1e-6, 3, 42, 1)


def copy_state(problem):
    schedule, prob, alias, params, hidden = problem
    state = {k: v.copy() for k, v in params.state.items()}
    return [hidden.copy(), params.emb.copy(), state["emb_s1"], state["emb_s2"],
            params.gru.copy(), state["gru_s1"], state["gru_s2"], params.out.copy(),
            state["out_s1"], state["out_s2"]]


def run_epoch(problem, spec, get_kernel=None):
    """One epoch on the emulator (get_kernel given) or the reference; returns (loss, n_events,
    the ten modified arrays)."""
    schedule, prob, alias = problem[:3]
    arrays = copy_state(problem)
    args = (schedule.inputs, schedule.targets, schedule.reset, *arrays, prob, alias, spec)
    if get_kernel is None:
        total, n_events = ref.gru4rec_train_epoch(*args)
    else:
        total, n_events = launch_train_epoch(np, get_kernel, *args)
    return float(total), int(n_events), arrays
