"""The reference service (``fastrec serve``) through Starlette's TestClient: answers match the
model, malformed requests get a 4xx with a reason (never a 500), reloads swap the model
without failing a request."""

import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

import fastrec  # noqa: E402
from fastrec.serve import create_app, reload_on_sighup  # noqa: E402


@pytest.fixture(scope="module")
def ratings():
    return fastrec.synthetic_ratings(n_users=60, n_items=25, n_ratings=600, seed=0).interactions


@pytest.fixture(scope="module")
def mf_file(tmp_path_factory, ratings):
    path = tmp_path_factory.mktemp("serve") / "mf.npz"
    fastrec.MF(n_factors=4, n_epochs=3, backend="numpy", random_state=0).fit(ratings).save(path)
    return path


@pytest.fixture()
def client(mf_file, tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(mf_file.read_bytes())
    with TestClient(create_app(path), raise_server_exceptions=False) as c:
        yield c


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["model"] == "MF" and body["generation"] == 1
    assert body["n_items"] == 25 and set(body["endpoints"]) == {"recommend", "predict",
                                                                 "similar"}


def test_answers_match_the_model(client, mf_file):
    model = fastrec.MF.load(mf_file)
    users = model.user_ids_[:3].tolist()
    body = client.post("/recommend", json={"users": users, "n": 5}).json()
    items, scores = model.recommend(users, n=5)
    assert body["items"] == items.tolist()
    np.testing.assert_allclose(body["scores"], scores, rtol=1e-6)
    body = client.post("/predict", json={"users": users, "items": items[:, 0].tolist()}).json()
    np.testing.assert_allclose(body["predictions"], model.predict(users, items[:, 0]), rtol=1e-6)
    first = model.item_ids_[:2].tolist()
    body = client.post("/similar", json={"items": first, "n": 3}).json()
    assert body["items"] == model.similar_items(first, n=3)[0].tolist()


def test_short_rows_are_padded_with_null(client, mf_file):
    model = fastrec.MF.load(mf_file)
    user = int(model.user_ids_[0])
    n_seen = int(model.seen_[0].nnz)
    body = client.post("/recommend", json={"users": [user], "n": 25}).json()
    row = body["items"][0]
    assert len(row) == 25 and row.count(None) == n_seen
    assert row[25 - n_seen:] == [None] * n_seen and body["scores"][0][-1] is None


@pytest.mark.parametrize("path, payload, status, reason", [
    ("/recommend", b"{not json", 400, "not JSON"),
    ("/recommend", b"\xff\xfe", 400, "not JSON"),
    ("/recommend", b"[1, 2]", 400, "JSON object"),
    ("/recommend", b"{}", 400, "missing field 'users'"),
    ("/recommend", b'{"users": 3}', 400, "list of ids"),
    ("/recommend", b'{"users": []}', 400, "empty"),
    ("/recommend", b'{"users": [[1]]}', 400, "must hold ids"),
    ("/recommend", b'{"users": [1.5]}', 400, "must hold ids"),
    ("/recommend", b'{"users": [true]}', 400, "must hold ids"),
    ("/recommend", b'{"users": ["a"]}', 422, "must hold ids"),
    ("/recommend", b'{"users": [123456789]}', 422, ""),
    ("/recommend", b'{"users": [99999999999999999999999]}', 422, "64-bit"),
    ("/recommend", b'{"users": [0], "n": 0}', 422, "'n'"),
    ("/recommend", b'{"users": [0], "n": "5"}', 422, "'n'"),
    ("/recommend", b'{"users": [0], "n": 1e9}', 422, "'n'"),
    ("/recommend", b'{"users": [0], "n": 1000000000}', 422, "'n'"),
    ("/recommend", b'{"users": [0], "filter_seen": "no"}', 400, "true or false"),
    ("/predict", b'{"users": [0, 1], "items": [0]}', 400, "same length"),
    ("/similar", b'{"items": [-7]}', 422, ""),
    ("/next", b'{"session": [0]}', 404, "no /next"),
])
def test_malformed_requests_get_a_4xx_with_a_reason(client, path, payload, status, reason):
    response = client.post(path, content=payload)
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]


def test_unknown_routes_and_methods_are_4xx(client):
    assert client.get("/recommend").status_code == 405
    assert client.post("/nothing", json={}).status_code == 404


def test_admin_reload_swaps_and_a_bad_file_keeps_the_old_model(client, ratings):
    path = client.app.state.holder.path
    user = int(ratings.user_ids[0])
    before = client.post("/recommend", json={"users": [user]}).json()
    fastrec.MF(n_factors=4, n_epochs=3, backend="numpy", random_state=7).fit(ratings).save(path)
    reply = client.post("/admin/reload")
    assert reply.status_code == 200 and reply.json()["generation"] == 2
    after = client.post("/recommend", json={"users": [user]}).json()
    assert after != before
    path.write_bytes(b"truncated")
    reply = client.post("/admin/reload")
    assert reply.status_code == 409 and "still serving generation 2" in reply.json()["error"]
    assert client.post("/recommend", json={"users": [user]}).json() == after


def test_reloads_under_concurrent_requests_fail_none(client, ratings):
    user = int(ratings.user_ids[0])
    statuses, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            statuses.append(client.post("/recommend", json={"users": [user], "n": 3}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        assert client.post("/admin/reload").status_code == 200
    stop.set()
    for t in threads:
        t.join()
    assert statuses and set(statuses) == {200}
    assert client.get("/healthz").json()["generation"] == 6


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_reloads(client):
    holder = client.app.state.holder
    previous = reload_on_sighup(holder)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        deadline = time.monotonic() + 30
        while holder.generation == 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert holder.generation == 2


def test_gru4rec_next(tmp_path):
    sessions = fastrec.synthetic_sessions(n_sessions=40, n_items=15, random_state=0)
    model = fastrec.GRU4Rec(hidden_size=8, n_epochs=1, n_sample=0, batch_size=8,
                            backend="numpy", random_state=0, early_stopping=False).fit(sessions)
    path = model.save(tmp_path / "gru.npz")
    with TestClient(create_app(path), raise_server_exceptions=False) as client:
        session = model.item_ids_[:3].tolist()
        body = client.post("/next", json={"session": session, "n": 4}).json()
        assert body["items"] == model.recommend_next(session, n=4)[0].tolist()
        unknown = client.post("/next", json={"session": [10**6]})
        assert unknown.status_code == 422 and "unseen" in unknown.json()["error"]
        assert client.post("/recommend", json={"users": [0]}).status_code == 404
