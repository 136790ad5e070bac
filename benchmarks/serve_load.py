"""Load test of ``fastrec serve``: a real HTTP client on loopback against the real service.

    python benchmarks/serve_load.py [--seconds 30] [--connections 16] [--max-requests 200000]

Two runs, each bounded in time and in request count:

1. MF, 100k users x 20k items, k=32, ~50 seen items per user (factors drawn at random and
   written with ``MF.save``: serving cost does not depend on how the factors were fitted):
   ``POST /recommend`` for one random user, top-10, seen filtered.
2. GRU4Rec fitted briefly on synthetic sessions: ``POST /next`` for a random 3-click session.

``--connections`` client threads, each with its own keep-alive connection (``http.client``),
send requests back to back. Halfway through, a new model file is written over the served one
(``save``: temp file + rename) and the server gets ``SIGHUP``; the run checks that the
generation in ``/healthz`` went up and that no request failed. Reported: requests/s, p50 and
p99 latency, errors, and the generations seen. The client shares the machine with the server,
so the figures are a lower bound for the service alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import fastrec

ROOT = Path(__file__).resolve().parents[1]


def big_mf(path: Path, n_users: int, n_items: int, k: int, seed: int) -> Path:
    """An MF model file with random factors of the given size (a tiny fit supplies the fitted
    metadata; the arrays are then replaced)."""
    small = fastrec.synthetic_ratings(n_users=50, n_items=20, n_ratings=300, seed=0)
    model = fastrec.MF(n_factors=k, n_epochs=1, backend="numpy", random_state=0)
    model.fit(small.interactions)
    rng = np.random.default_rng(seed)
    model.user_factors_ = rng.normal(0, 0.3, (n_users, k)).astype(np.float32)
    model.item_factors_ = rng.normal(0, 0.3, (n_items, k)).astype(np.float32)
    model.user_bias_ = rng.normal(0, 0.1, n_users).astype(np.float32)
    model.item_bias_ = rng.normal(0, 0.1, n_items).astype(np.float32)
    model.user_ids_ = np.arange(n_users, dtype=np.int64)
    model.item_ids_ = np.arange(n_items, dtype=np.int64)
    model.n_users_, model.n_items_ = n_users, n_items
    counts = rng.poisson(50, n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    indices = rng.integers(0, n_items, indptr[-1]).astype(np.int32)
    seen = sp.csr_matrix((np.ones(indptr[-1], np.int8), indices, indptr), shape=(n_users, n_items))
    seen.sum_duplicates()
    model.seen_ = seen
    return model.save(path)


def gru_model(path: Path, seed: int) -> Path:
    sessions = fastrec.synthetic_sessions(n_sessions=3000, n_items=2000, random_state=seed)
    model = fastrec.GRU4Rec(hidden_size=64, n_epochs=1, batch_size=64, n_sample=256,
                            random_state=seed).fit(sessions)
    return model.save(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn, method, path, body=None):
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def wait_ready(port: int, process, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            status, body = request(conn, "GET", "/healthz")
            conn.close()
            if status == 200:
                return json.loads(body)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def run(model_path: Path, make_new_model, endpoint: str, make_body, seconds: float,
        connections: int, max_requests: int) -> dict:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server = subprocess.Popen([sys.executable, "-m", "fastrec", "serve", str(model_path),
                               "--port", str(port)], env=env)
    try:
        first = wait_ready(port, server)
        latencies, errors, lock = [], [], threading.Lock()
        stop = threading.Event()
        start = time.monotonic()

        def client(seed):
            rng = np.random.default_rng(seed)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine = []
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    status, body = request(conn, "POST", endpoint, make_body(rng))
                    if status != 200:
                        with lock:
                            errors.append(f"{status}: {body[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        errors.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                mine.append(time.perf_counter() - t0)
                with lock:
                    latencies.append(mine[-1])
                    if len(latencies) >= max_requests:
                        stop.set()
            conn.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(connections)]
        for t in threads:
            t.start()
        stop.wait(seconds / 2)
        swap_started = time.monotonic() - start
        make_new_model(model_path)  # atomic: temp file + rename
        server.send_signal(signal.SIGHUP)
        swapped = None
        while not stop.is_set() and swapped is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            status, body = request(conn, "GET", "/healthz")
            conn.close()
            if status == 200 and json.loads(body)["generation"] > first["generation"]:
                swapped = time.monotonic() - start
            else:
                time.sleep(0.1)
        stop.wait(max(0.0, seconds - (time.monotonic() - start)))
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        last = json.loads(request(conn, "GET", "/healthz")[1])
        conn.close()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    lat = np.array(latencies) * 1e3
    return {"endpoint": endpoint, "requests": len(lat), "seconds": round(elapsed, 1),
            "requests_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "errors": len(errors),
            "first_errors": errors[:3], "swap_at_s": round(swap_started, 1),
            "swapped_in_at_s": None if swapped is None else round(swapped, 1),
            "generations": [first["generation"], last["generation"]]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    args = parser.parse_args()
    print(f"cores {len(os.sched_getaffinity(0))}, load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        mf_path = big_mf(Path(tmp) / "mf.npz", args.users, args.items, 32, seed=0)
        mf = run(mf_path, lambda p: big_mf(p, args.users, args.items, 32, seed=1), "/recommend",
                 lambda rng: {"users": [int(rng.integers(args.users))], "n": 10},
                 args.seconds, args.connections, args.max_requests)
        print(json.dumps(mf))
        gru_path = gru_model(Path(tmp) / "gru.npz", seed=0)
        items = fastrec.GRU4Rec.load(gru_path).item_ids_
        gru = run(gru_path, lambda p: gru_model(p, seed=1), "/next",
                  lambda rng: {"session": rng.choice(items, 3).tolist(), "n": 20},
                  args.seconds, args.connections, args.max_requests)
        print(json.dumps(gru))


if __name__ == "__main__":
    main()
