"""Every model with ``backend="cuda"`` end to end (and SVD++'s epoch on host arguments), one
body per test run on each array module (the ``cuda_run`` fixture): the emulator, where CuPy is
replaced by host stand-ins (:class:`tests.cuda.helpers.DeviceArray`) and NVRTC by the
CUDA-semantics emulator, and real CuPy on a device (skipped with the reason where there is
none). Each model body checks that the fitted arrays stay on the device and equal a CPU fit
with the same seed (float64, at the tolerance table's entry for where they were computed,
widened for many passes), that scoring runs on the device and returns host values, and that
``to_numpy()``, ``to("cpu")`` and save/load give host arrays."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from fastrec.backends import get_backend


def _recording(cuda_run, monkeypatch, kernel: str) -> list[dict]:
    """Replace the cuda backend's ``kernel`` by a wrapper that records, per call, the type of
    every array argument (host or device; the NCF layer widths are read on the host)."""
    calls = []
    original = get_backend("cuda").kernels[kernel]

    def recording(*args, **kwargs):
        bound = inspect.signature(original).bind(*args, **kwargs).arguments
        calls.append({name: type(value) for name, value in bound.items()
                      if isinstance(value, (np.ndarray, cuda_run.array_type))
                      and name != "layers"})
        return original(*args, **kwargs)

    monkeypatch.setitem(get_backend("cuda").kernels, kernel, recording)
    return calls


def _all_on_device(cuda_run, calls) -> bool:
    return all(kind is cuda_run.array_type for kinds in calls for kind in kinds.values())


def test_mf(cuda_run, monkeypatch, tmp_path):
    """MF: the epochs get device arrays only; predict, score and recommend run on the device
    and return host values; CPU-only methods say what to do."""
    from fastrec import MF
    from fastrec.data import synthetic_ratings

    calls = _recording(cuda_run, monkeypatch, "sgd_epoch")
    data = synthetic_ratings(40, 30, 500, seed=1).interactions
    ratings = (data.user_ids[data.users], data.item_ids[data.items], data.values)
    params = dict(n_factors=8, n_epochs=3, n_blocks=4, random_state=0, dtype="float64")
    gpu = MF(backend="cuda", **params).fit(ratings, validation_data=ratings)
    cpu = MF(backend="numpy", **params).fit(ratings, validation_data=ratings)
    close = cuda_run.tolerance(np.float64, scale=10)
    assert gpu.device_ == "cuda" and cuda_run.on_device(gpu.user_factors_)
    assert len(calls) == 3 and _all_on_device(cuda_run, calls)
    host = gpu.to_numpy()
    assert host.device_ == "cpu" and gpu.device_ == "cuda"
    assert type(host.user_factors_) is np.ndarray
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        assert_allclose(getattr(host, name), getattr(cpu, name), **close, err_msg=name)
    assert_allclose(gpu.validation_curve_, cpu.validation_curve_, rtol=close["rtol"])
    pred = gpu.predict(ratings[0][:20], ratings[1][:20])
    assert type(pred) is np.ndarray
    assert_allclose(pred, cpu.predict(ratings[0][:20], ratings[1][:20]), **close)
    assert gpu.score(ratings) == pytest.approx(cpu.score(ratings), rel=close["rtol"])
    (got_ids, got), (want_ids, want) = (m.recommend(ratings[0][:2]) for m in (gpu, cpu))
    assert type(got) is np.ndarray  # top-n on the device, host results
    assert_allclose(got, want, **close)
    assert_array_equal(got_ids, want_ids)
    with pytest.raises(RuntimeError, match="to\\('cpu'\\)"):
        gpu.fold_in(ratings[1][:2], [4.0, 3.0])
    loaded = MF.load(gpu.save(tmp_path / "gpu.npz"))
    assert type(loaded.user_factors_) is np.ndarray
    assert_array_equal(loaded.user_factors_, host.user_factors_)
    assert gpu.to("cpu").device_ == "cpu" and type(gpu.user_factors_) is np.ndarray
    assert gpu.recommend(ratings[0][:2])[0].shape == (2, 10)
    assert gpu.to("cuda").device_ == "cuda" and cuda_run.on_device(gpu.user_factors_)


def test_svdpp(cuda_run, monkeypatch):
    """SVD++ (layout moved to the device once, implicit sums by the device sparse module): the
    Cython model bit for bit (neither contracts FMAs; float64, so flush-to-zero cannot
    matter)."""
    from fastrec import SVDpp
    from fastrec.data import synthetic_ratings
    from tests.conftest import backend_or_skip

    backend_or_skip("cython", "svdpp_epoch")
    calls = _recording(cuda_run, monkeypatch, "svdpp_epoch")
    data = synthetic_ratings(n_users=40, n_items=25, n_ratings=300, seed=2).interactions
    params = dict(n_factors=5, n_epochs=2, dtype="float64", random_state=0, n_blocks=3)
    expected = SVDpp(backend="cython", **params).fit(data, validation_data=data)
    got = SVDpp(backend="cuda", **params).fit(data, validation_data=data)
    assert got.backend_ == "cuda" and got.device_ == "cuda"
    assert len(calls) == 2 and _all_on_device(cuda_run, calls)
    host = got.to_numpy()
    for name in ("user_factors_", "item_factors_", "implicit_factors_", "user_bias_"):
        assert cuda_run.on_device(getattr(got, name)), name
        assert_array_equal(getattr(host, name), getattr(expected, name), err_msg=name)
    assert_allclose(got.validation_curve_, expected.validation_curve_, rtol=1e-12)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_svdpp_epoch_on_host_arrays(cuda_run, index_dtype):
    """The public ``svdpp_epoch`` on numpy arguments (copied to the device and back): the
    Cython kernel's bits."""
    from tests.conftest import backend_or_skip
    from tests.svdpp.problems import make_svdpp_problem, run_epoch

    cython = backend_or_skip("cython", "svdpp_epoch").svdpp_epoch
    data, state, scalars = make_svdpp_problem(n_users=60, n_items=40, nnz=800, k=33,
                                              n_blocks=4, index_dtype=index_dtype,
                                              implicit="more")
    sse_cpu, expected = run_epoch(cython, data, state, scalars)
    sse, got = run_epoch(get_backend("cuda").svdpp_epoch, data, state, scalars)
    for name in expected:
        assert type(got[name]) is np.ndarray
        assert_array_equal(got[name], expected[name], err_msg=name)
    assert sse == pytest.approx(sse_cpu, rel=1e-13)


def test_gru4rec(cuda_run, monkeypatch, tmp_path):
    """GRU4Rec on device input: every epoch gets device arrays only (schedule, sampling table,
    weights, optimiser state); the model equals the numpy backend's (same seed, samples and
    update order); recommend_next (state carried between calls) and evaluate run on the device
    and return host values."""
    from fastrec import GRU4Rec
    from fastrec.data import synthetic_sessions

    calls = _recording(cuda_run, monkeypatch, "gru4rec_train_epoch")
    frame = synthetic_sessions(n_sessions=24, n_items=10, random_state=0)
    train, test = frame[frame.session_id < 20], frame[frame.session_id >= 20]
    columns = tuple(train[c].to_numpy() for c in ("session_id", "item_id", "timestamp"))
    params = dict(hidden_size=8, n_layers=2, embedding_size=6, n_sample=4, batch_size=4,
                  bptt=2, n_epochs=2, learning_rate=0.05, dropout_hidden=0.1, random_state=0,
                  dtype="float64", early_stopping=False)
    gpu = GRU4Rec(backend="cuda", **params).fit(tuple(cuda_run.asarray(c) for c in columns))
    cpu = GRU4Rec(backend="numpy", **params).fit(columns)
    close = cuda_run.tolerance(np.float64, scale=10)
    assert gpu.backend_ == "cuda" and gpu.device_ == "cuda"
    assert len(calls) == 2 and _all_on_device(cuda_run, calls)
    names = ("input_embedding_", "gru_weights_", "output_table_")
    assert all(cuda_run.on_device(getattr(gpu, name)) for name in names)
    assert type(gpu.item_ids_) is np.ndarray
    assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=close["rtol"])
    host = gpu.to_numpy()
    assert host.device_ == "cpu" and gpu.device_ == "cuda"
    for name in names:
        assert type(getattr(host, name)) is np.ndarray
        assert_allclose(getattr(host, name), getattr(cpu, name), **close, err_msg=name)
    clicks = train.item_id.to_numpy()[:2]
    ids, scores, state = gpu.recommend_next(clicks[:1], n=5)
    ids, scores, state = gpu.recommend_next(clicks[1:], n=5, state=state)
    assert all(type(a) is np.ndarray for a in (ids, scores, state))
    expected = cpu.recommend_next(clicks, n=5)
    assert_array_equal(ids, expected[0])
    assert_allclose(scores, expected[1], **close)
    assert_allclose(state, expected[2], **close)
    evaluation, expected = gpu.evaluate(test, k=3), cpu.evaluate(test, k=3)
    assert evaluation["n_events"] == expected["n_events"]
    assert evaluation["recall"] == pytest.approx(expected["recall"], rel=1e-12)
    assert evaluation["mrr"] == pytest.approx(expected["mrr"], rel=close["rtol"])
    loaded = GRU4Rec.load(gpu.save(tmp_path / "gpu.npz"))
    assert loaded.device_ == "cpu" and type(loaded.output_table_) is np.ndarray
    assert_array_equal(loaded.output_table_, host.output_table_)
    assert gpu.to("cpu").device_ == "cpu" and type(gpu.gru_weights_) is np.ndarray
    assert_array_equal(gpu.recommend_next(clicks, n=5)[0], ids)
    assert gpu.to("cuda").device_ == "cuda" and type(gpu.item_ids_) is np.ndarray


@pytest.mark.parametrize("mode, beta_loss, biased", [
    ("full", "frobenius", False),
    ("full", "kullback-leibler", False),
    ("observed", "frobenius", True),
    ("observed", "kullback-leibler", False),
])
def test_nmf(cuda_run, tmp_path, mode, beta_loss, biased):
    """NMF fitted on device input: X and the factors go to the device once; transform,
    inverse_transform, fold_in, predict and score (observed mode), recommend and similar_items
    run on the device, each array result where its input is."""
    from fastrec import NMF
    from tests.cuda.nmf_helpers import make_nmf_problem

    csr, _, _, _, _ = make_nmf_problem(seed=4, n_rows=20, n_cols=15, density=0.4)
    x = sp.csr_matrix((csr[2], csr[1], csr[0]), shape=(20, 15))
    coo = x.tocoo()
    host_input = (x.toarray(),) if mode == "full" else (coo.row, coo.col, coo.data)
    device_input = tuple(cuda_run.asarray(a) for a in host_input)
    params = dict(n_components=3, mode=mode, beta_loss=beta_loss, biased=biased, max_iter=10,
                  tol=1e-9, init="random", random_state=0, dtype="float64", alpha_W=0.01)
    gpu, cpu = NMF(backend="cuda", **params), NMF(backend="numpy", **params)
    w_gpu = gpu.fit_transform(device_input[0] if mode == "full" else device_input)
    w_cpu = cpu.fit_transform(host_input[0] if mode == "full" else host_input)
    close = cuda_run.tolerance(np.float64, scale=10)
    assert gpu.backend_ == "cuda" and gpu.device_ == "cuda"
    assert cuda_run.on_device(w_gpu)
    host = gpu.to_numpy()
    assert_allclose(w_gpu.get(), w_cpu, **close)
    for name in ("user_factors_", "item_factors_", "components_", "user_bias_", "item_bias_"):
        assert cuda_run.on_device(getattr(gpu, name)), name
        assert_allclose(getattr(host, name), getattr(cpu, name), **close, err_msg=name)
    assert gpu.reconstruction_err_ == pytest.approx(cpu.reconstruction_err_, rel=close["rtol"])
    assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=close["rtol"])
    assert gpu.n_iter_ == cpu.n_iter_

    new_rows = sp.random(4, gpu.n_items_, density=0.5, random_state=1, format="csr") * 4
    for rows in (new_rows, cuda_run.asarray(new_rows.toarray())):
        got = gpu.transform(rows)
        assert cuda_run.on_device(got) == cuda_run.on_device(rows)
        assert_allclose(got if type(got) is np.ndarray else got.get(), cpu.transform(new_rows),
                        **close)
    w_host = np.asarray(w_cpu[:3])
    for w in (w_host, cuda_run.asarray(w_host)):
        got = gpu.inverse_transform(w)
        assert cuda_run.on_device(got) == cuda_run.on_device(w)
        assert_allclose(got if type(got) is np.ndarray else got.get(),
                        cpu.inverse_transform(w_host), **close)
    (bias, factors), (cpu_bias, cpu_factors) = (m.fold_in([1, 4], [2.0, 3.5]) for m in (gpu, cpu))
    assert type(factors) is np.ndarray
    assert_allclose(factors, cpu_factors, **close)
    assert bias == pytest.approx(cpu_bias, abs=close["atol"])

    users, items = gpu.user_ids_[np.arange(10) % 6], gpu.item_ids_[np.arange(10) % 7]
    if mode == "observed":  # full mode is scikit-learn's transformer: no pairwise predict
        pred = gpu.predict(users, items)
        assert type(pred) is np.ndarray
        assert_allclose(pred, cpu.predict(users, items), **close)
        ratings = (coo.row, coo.col, coo.data)
        assert gpu.score(ratings) == pytest.approx(cpu.score(ratings), rel=close["rtol"])
    for method, args in (("recommend", (users[:2],)), ("similar_items", (items[:2],))):
        (got_ids, got), (want_ids, want) = (getattr(m, method)(*args) for m in (gpu, cpu))
        assert type(got) is np.ndarray  # scored and selected on the device, returned on host
        assert_allclose(got, want, **close)
        assert_array_equal(got_ids, want_ids)
    with pytest.raises(RuntimeError, match="to\\('cpu'\\)"):
        gpu.recommend_from_ratings([1, 4], [2.0, 3.5])
    assert host.device_ == "cpu" and gpu.device_ == "cuda"
    assert type(host.components_) is np.ndarray and type(host.user_factors_) is np.ndarray
    loaded = NMF.load(gpu.save(tmp_path / "gpu.npz"))
    assert loaded.device_ == "cpu"
    assert_array_equal(loaded.components_, host.components_)
    assert_array_equal(loaded.user_factors_, host.user_factors_)
    assert gpu.to("cpu").device_ == "cpu"


@pytest.mark.parametrize("cls_name", ["GMF", "MLP", "NeuMF"])
def test_ncf(cuda_run, monkeypatch, tmp_path, cls_name):
    """GMF, MLP and NeuMF on device input: every epoch gets device arrays only (data, weights,
    optimiser state, the sample order); the model equals the reference backend's (the same
    sample order and negatives); validation, predict and recommend run on the device and
    return numpy."""
    import fastrec
    from fastrec.evaluation import leave_last_out
    from tests.ncf._data import clustered_implicit

    calls = _recording(cuda_run, monkeypatch, "ncf_train_epoch")
    train, test = leave_last_out(clustered_implicit(n_users=12, n_items=16, per_user=4, seed=1))
    cls = getattr(fastrec, cls_name)
    kw = dict(n_epochs=2, batch_size=32, learning_rate=0.01, random_state=0, dtype="float64",
              n_negatives=2, n_eval_negatives=5)
    if cls_name != "GMF":
        kw["layers"] = (8, 4)
    if cls_name == "MLP":
        kw["loss"] = "squared"  # validation by RMSE rather than the sampled ranking
    ids = (train.user_ids[train.users], train.item_ids[train.items])
    gpu = cls(backend="cuda", **kw).fit(tuple(cuda_run.asarray(a) for a in ids),
                                        validation_data=test)
    cpu = cls(backend="numpy", **kw).fit(ids, validation_data=test)
    close = cuda_run.tolerance(np.float64, scale=10)
    assert gpu.backend_ == "cuda" and gpu.device_ == "cuda"
    assert len(calls) == 2 and _all_on_device(cuda_run, calls), calls[0]
    for name in ("user_embeddings_", "item_embeddings_", "dense_"):
        assert cuda_run.on_device(getattr(gpu, name)), name
    assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=close["rtol"])
    assert_allclose(gpu.validation_curve_, cpu.validation_curve_, rtol=close["rtol"])
    host = gpu.to_numpy()
    assert host.device_ == "cpu" and gpu.device_ == "cuda"
    for name in ("user_embeddings_", "item_embeddings_", "dense_"):
        assert type(getattr(host, name)) is np.ndarray
        assert_allclose(getattr(host, name), getattr(cpu, name), **close, err_msg=name)
    users, items = ids[0][:5], ids[1][:5]
    pred = gpu.predict(users, items)
    assert type(pred) is np.ndarray
    assert_allclose(pred, cpu.predict(users, items), **close)
    top, scores = gpu.recommend(users[:2], n=3)
    assert type(top) is np.ndarray and type(scores) is np.ndarray
    assert_array_equal(top, cpu.recommend(users[:2], n=3)[0])
    loaded = cls.load(gpu.save(tmp_path / "gpu.npz"))
    assert loaded.device_ == "cpu" and type(loaded.dense_) is np.ndarray
    assert_array_equal(loaded.dense_, host.dense_)
    assert_allclose(loaded.predict(users, items), pred, **close)
    assert gpu.to("cpu").device_ == "cpu" and type(gpu.dense_) is np.ndarray
    assert_allclose(gpu.predict(users, items), pred, **close)
    assert gpu.to("cuda").device_ == "cuda" and cuda_run.on_device(gpu.dense_)
    assert type(gpu.layers_) is np.ndarray and type(gpu.item_ids_) is np.ndarray
    assert_allclose(gpu.predict(users, items), pred, **close)
