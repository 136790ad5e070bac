"""fastrec.dask.MF against the local fastrec.MF: bit for bit, from every kind of Dask input, on
one and two worker processes; worker loss; bad input; to_local() through save/load."""

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")

import fastrec  # noqa: E402
import fastrec.dask  # noqa: E402
from tests.conftest import backend_or_skip  # noqa: E402


@pytest.fixture(scope="module")
def ratings():
    """Ratings with string user ids and integer item ids, in no particular order."""
    rng = np.random.default_rng(7)
    n = 6000
    pairs = rng.choice(400 * 150, n, replace=False)  # distinct: repeats are an input error
    users = np.array([f"u{x}" for x in pairs // 150])
    items = pairs % 150 * 3 + 1
    values = rng.integers(1, 11, n) / 2.0
    return pd.DataFrame({"userId": users, "movieId": items, "rating": values})


def _local(frame, **params):
    triple = (frame["userId"].to_numpy(), frame["movieId"].to_numpy(), frame["rating"].to_numpy())
    return fastrec.MF(backend="cython", **params).fit(triple)


def _assert_same(local, model):
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "user_ids_",
                 "item_ids_"):
        a, b = getattr(local, name), getattr(model, name)
        assert a.dtype == b.dtype, name
        assert np.array_equal(a, b), name
    assert local.global_mean_ == model.global_mean_
    assert local.loss_curve_ == model.loss_curve_


@pytest.mark.parametrize("n_blocks", [2, 4, 8])
@pytest.mark.parametrize("n_workers", [1, 2])
def test_bitwise_equal_to_local(request, ratings, n_blocks, n_workers):
    backend_or_skip("cython", "sgd_epoch")
    cluster_client = request.getfixturevalue("one_worker" if n_workers == 1 else "client")
    params = dict(n_factors=12, n_epochs=2, n_blocks=n_blocks, random_state=3)
    ddf = dd.from_pandas(ratings, npartitions=3)
    model = fastrec.dask.MF(backend="cython", client=cluster_client, **params).fit(ddf)
    assert model.n_blocks_ == n_blocks
    _assert_same(_local(ratings, **params), model.to_local())


def test_padded_rank_float64_unbiased_and_array_input(client):
    """k=100 (rows padded to 112), float64, no biases, COO triples as a Dask array."""
    backend_or_skip("cython", "sgd_epoch")
    rng = np.random.default_rng(1)
    pairs = rng.choice(90 * 60, 3000, replace=False)
    triples = np.column_stack([pairs // 60, pairs % 60, rng.normal(3.0, 1.0, 3000)])
    params = dict(n_factors=100, n_epochs=2, n_blocks=4, dtype="float64", biased=False,
                  random_state=5, learning_rate=0.01)
    model = fastrec.dask.MF(backend="cython", client=client, **params).fit(
        da.from_array(triples, chunks=(700, 3)))
    local = fastrec.MF(backend="cython", **params).fit(
        (triples[:, 0], triples[:, 1], triples[:, 2]))
    _assert_same(local, model.to_local())


def test_parquet_input_and_save_load_round_trip(client, ratings, tmp_path):
    backend_or_skip("cython", "sgd_epoch")
    parts = [ratings.iloc[a:a + 1500] for a in range(0, len(ratings), 1500)]
    for p, part in enumerate(parts):
        part.to_parquet(tmp_path / f"part-{p}.parquet")
    ddf = dd.read_parquet(str(tmp_path / "part-*.parquet"))
    params = dict(n_factors=8, n_epochs=2, n_blocks=2, random_state=11)
    local_model = fastrec.dask.MF(backend="cython", client=client, **params).fit(ddf).to_local()
    reference = _local(ratings, **params)
    _assert_same(reference, local_model)
    loaded = fastrec.MF.load(local_model.save(tmp_path / "model.npz"))
    users, items = ratings["userId"].to_numpy()[:20], ratings["movieId"].to_numpy()[:20]
    assert np.array_equal(loaded.predict(users, items), reference.predict(users, items))
    assert (loaded.seen_ != reference.seen_).nnz == 0
    assert np.array_equal(loaded.recommend(users[:3], n=5)[0],
                          reference.recommend(users[:3], n=5)[0])


def _record_debug_lines(dask_worker):
    """Collect the worker's fastrec debug lines in ``dask_worker.fastrec_lines``."""
    import logging

    lines = dask_worker.fastrec_lines = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("fastrec")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    dask_worker.fastrec_handler = handler


def _recorded_debug_lines(dask_worker):
    import logging

    logger = logging.getLogger("fastrec")
    logger.removeHandler(dask_worker.fastrec_handler)
    logger.setLevel(logging.NOTSET)
    return dask_worker.fastrec_lines


def test_task_names_show_the_schedule(client, ratings):
    """The dashboard's task groups name the epochs and the worker: one task per worker for
    all the epochs, on that worker (one per epoch with callbacks, which may stop the fit after
    any epoch: stopped after the second of three, it equals the local fit stopped there); the
    workers' debug log names each block's stratum."""
    from distributed import get_task_stream
    from distributed.utils import key_split_group

    def sgd_tasks(stream):
        return sorted((key_split_group(t["key"]), t["worker"]) for t in stream.data
                      if key_split_group(t["key"]).startswith("fastrec-sgd"))

    workers = sorted(client.nthreads())
    ddf = dd.from_pandas(ratings, npartitions=2)
    params = dict(n_factors=4, n_blocks=4, random_state=0)
    client.run(_record_debug_lines)
    with get_task_stream(client=client) as stream:
        model = fastrec.dask.MF(n_epochs=2, client=client, **params).fit(ddf)
    lines = [line for lines in client.run(_recorded_debug_lines).values() for line in lines]
    assert sgd_tasks(stream) == [(f"fastrec-sgd-epochs-1-to-2-worker-{w}", workers[w])
                                 for w in (0, 1)]
    strata = sorted(line.split(": ")[0].split(" ", 2)[2] for line in lines if " stratum " in line)
    assert len({line.split()[1] for line in lines}) == 1  # one fit
    assert strata == sorted(f"epoch {e} stratum {s}" for e in (1, 2) for s in range(4)
                            for _ in range(4))
    assert model.n_epochs_ == 2

    def stop_after_two(epoch, metrics):
        return epoch == 2

    with get_task_stream(client=client) as stream:
        model = fastrec.dask.MF(n_epochs=3, callbacks=[stop_after_two], client=client,
                                **params).fit(ddf)
    assert sgd_tasks(stream) == [(f"fastrec-sgd-epoch-{e}-worker-{w}", workers[w])
                                 for e in (1, 2) for w in (0, 1)]
    _assert_same(_local(ratings, n_epochs=3, callbacks=[stop_after_two], **params),
                 model.to_local())


def test_divergence_raises_and_keeps_the_estimator(client, ratings):
    """A learning rate that blows up ends the fit with the local error, during the epochs (the
    one task per worker stops), and leaves the estimator unfitted."""
    from fastrec.exceptions import DivergenceError

    params = dict(n_factors=4, n_blocks=2, random_state=0, learning_rate=50.0, n_epochs=50)
    message = r"diverged in epoch 1 .*learning_rate=50.0 \(lr_bias=50.0\) is too large"
    with pytest.raises(DivergenceError, match=message):
        _local(ratings, **params)
    model = fastrec.dask.MF(client=client, **params)
    with pytest.raises(DivergenceError, match=message):
        model.fit(dd.from_pandas(ratings, npartitions=2))
    assert not hasattr(model, "user_factors_")


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, np.nan]}), "NaN or inf"),
    (pd.DataFrame({"user": [1, 2], "thing": [1, 2], "rating": [1.0, 2.0]}), "no item column"),
    (pd.DataFrame({"user": [1.0, np.nan], "item": [1, 2], "rating": [1.0, 2.0]}),
     r"user ids: missing id nan at row 1"),
    (pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": ["a", "b"]}), "numeric"),
])
def test_bad_input_raises_the_local_error(client, frame, message):
    with pytest.raises(ValueError, match=message):
        fastrec.MF().fit(frame)
    with pytest.raises(ValueError, match=message):
        fastrec.dask.MF(client=client).fit(dd.from_pandas(frame, npartitions=1))


@pytest.mark.parametrize("npartitions", [1, 2])
def test_repeated_pair_raises_before_any_epoch(client, npartitions):
    """The local error, with global entries, wherever the repeat is (same partition or not),
    raised before any SGD task runs."""
    from distributed import get_task_stream

    frame = pd.DataFrame({"user": [1, 2, 3, 2, 1], "item": [1, 2, 3, 2, 1],
                          "rating": [1.0, 2.0, 3.0, 4.0, 5.0]})
    message = (r"duplicate \(user, item\) pair \(2, 2\) at entry 3 \(first at entry 1\): 2 "
               "repeated pairs in the data; pass duplicates=")
    with pytest.raises(ValueError, match=message):
        fastrec.MF().fit(frame)
    with get_task_stream(client=client) as stream, pytest.raises(ValueError, match=message):
        fastrec.dask.MF(client=client).fit(dd.from_pandas(frame, npartitions=npartitions))
    assert not [t for t in stream.data if t["key"][0].startswith("fastrec-sgd")]


@pytest.mark.parametrize("policy", ["mean", "last", "sum"])
def test_repeated_pairs_merged_as_locally(client, ratings, policy):
    """Repeats spread over partitions (and within them) are merged as the local estimator
    merges them: the same model bit for bit (half-integer ratings: the sums are exact)."""
    backend_or_skip("cython", "sgd_epoch")
    rng = np.random.default_rng(5)
    again = ratings.sample(400, random_state=1).assign(rating=rng.integers(1, 11, 400) / 2.0)
    frame = pd.concat([ratings, again, again.iloc[:50]]).sample(frac=1.0, random_state=2)
    frame = frame.reset_index(drop=True)  # from_pandas orders partitions by the index
    params = dict(n_factors=6, n_epochs=1, n_blocks=2, random_state=4, duplicates=policy)
    model = fastrec.dask.MF(backend="cython", client=client, **params).fit(
        dd.from_pandas(frame, npartitions=3))
    _assert_same(_local(frame, **params), model.to_local())
    with pytest.raises(ValueError, match="duplicates must be one of"):
        fastrec.dask.MF(client=client, duplicates="first").fit(dd.from_pandas(frame, 2))


def test_bad_parameters_and_types(client, ratings):
    ddf = dd.from_pandas(ratings, npartitions=1)
    with pytest.raises(ValueError, match="n_factors"):
        fastrec.dask.MF(n_factors=0, client=client).fit(ddf)
    with pytest.raises(ValueError, match="learning_rate"):
        fastrec.dask.MF(learning_rate=-1.0, client=client).fit(ddf)
    with pytest.raises(TypeError, match="dask.dataframe.DataFrame"):
        fastrec.dask.MF(client=client).fit(ratings)
    empty = dd.from_pandas(ratings.iloc[:0], npartitions=1)
    with pytest.raises(ValueError, match="empty"):
        fastrec.dask.MF(client=client).fit(empty)
    # the local parameters are all accepted; early stopping (on a held-out split) is refused
    assert fastrec.dask.MF(validation_fraction=0.2, n_iter_no_change=5).validation_fraction == 0.2
    for model in (fastrec.dask.MF(early_stopping=True, client=client),
                  fastrec.dask.NMF(early_stopping=True, client=client)):
        with pytest.raises(ValueError, match="early_stopping=True is not available in "
                           "fastrec.dask.*validation_fraction and n_iter_no_change are"):
            model.fit(ddf)


def test_killed_worker_gives_an_error_naming_it(client, ratings):
    """SIGKILL a worker process mid-fit: the fit ends with WorkerLostError naming it (its row
    blocks are gone), and the estimator is left unfitted rather than wrong."""
    client.wait_for_workers(2)
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    model = fastrec.dask.MF(n_factors=4, n_epochs=400, n_blocks=2, client=client,
                            random_state=0)

    def kill_when_training():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = client.run_on_scheduler(
                lambda dask_scheduler: list(dask_scheduler.task_groups))
            if any(str(n).startswith("fastrec-sgd-epoch") for n in names):
                os.kill(pids[victim], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_training)
    killer.start()
    try:
        with pytest.raises(fastrec.dask.WorkerLostError, match=victim):
            model.fit(dd.from_pandas(ratings, npartitions=2))
    finally:
        killer.join()
    assert not hasattr(model, "user_factors_")
    client.wait_for_workers(2, timeout=60)


def test_row_blocks_lost_without_the_worker_leaving(client, ratings):
    """A worker that keeps its address but loses the row blocks it holds in memory (say it
    restarted on a fixed port) ends the fit with WorkerLostError naming it, never silently."""
    def forget_all():
        from fastrec.dask import _mf

        _mf._RESIDENT.clear()

    def wipe(epoch, metrics):
        client.run(forget_all)

    model = fastrec.dask.MF(n_factors=4, n_epochs=3, n_blocks=2, client=client, random_state=0,
                            callbacks=[wipe])
    with pytest.raises(fastrec.dask.WorkerLostError, match=r"worker tcp://\S+ lost row block"):
        model.fit(dd.from_pandas(ratings, npartitions=2))
    assert not hasattr(model, "user_factors_")
