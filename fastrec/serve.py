"""A reference HTTP service for a saved fastrec model: ``fastrec serve model.npz``.

Built on Starlette (ASGI) and served by uvicorn (``pip install "fastrec[serve]"``). Endpoints,
all JSON:

- ``GET /healthz``: ``{"status": "ok", "model": class, "path", "generation", ...}``.
- ``POST /recommend`` ``{"users": [id, ...], "n": 10, "filter_seen": true}`` (MF, SVDpp, NMF
  in observed mode, GMF/MLP/NeuMF): ``{"items": [[id, ...], ...], "scores": [[...], ...]}``. Rows
  with fewer than ``n`` eligible items are padded with ``null`` ids and scores.
- ``POST /predict`` ``{"users": [...], "items": [...]}`` (same models): ``{"predictions": [...]}``.
- ``POST /similar`` ``{"items": [...], "n": 10}`` (MF, SVDpp, NMF):
  ``{"items": [[...]], "scores": [[...]]}``.
- ``POST /next`` ``{"session": [item, ...], "n": 20}`` (GRU4Rec):
  ``{"items": [...], "scores": [...]}``.
- ``POST /admin/reload``: re-reads the model file (also on ``SIGHUP``). The new model is loaded
  aside and swapped in with one assignment once it is complete: requests already running finish
  on the old model, later ones use the new one, none is dropped. A file that does not load
  leaves the old model serving and answers 409 with the reason.

Malformed requests get a 4xx with ``{"error": reason}``: 400 for a body that is not the JSON
object the endpoint takes, 404 for an endpoint this model does not have, 422 for well-formed
requests the model refuses (unknown ids, ``n`` out of range). Model calls run in worker threads
(the kernels release the GIL), so slow requests do not block the event loop.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("fastrec.serve")

MAX_BATCH = 10_000  # ids per request
MAX_N = 10_000  # items per answer row

# Which endpoints each model class answers.
_ENDPOINTS = {
    "MF": ("recommend", "predict", "similar"),
    "NMF": ("recommend", "predict", "similar"),
    "SVDpp": ("recommend", "predict", "similar"),
    "GMF": ("recommend", "predict"),
    "MLP": ("recommend", "predict"),
    "NeuMF": ("recommend", "predict"),
    "GRU4Rec": ("next",),
}


class RequestError(Exception):
    """A request the service refuses, with the HTTP status and the reason sent back."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def load_model(path):
    """The model saved at ``path``, of whichever fastrec class the file holds."""
    import fastrec
    from fastrec import io

    model_class, _, _ = io.load_arrays(path)
    if model_class not in _ENDPOINTS:
        raise io.ModelFileError(f"{path} holds a {model_class}, which the service cannot serve")
    return getattr(fastrec, model_class).load(path)


class ModelHolder:
    """The model being served. ``model`` is replaced by a single assignment, so a request that
    read it keeps a complete model whatever reloads happen meanwhile."""

    def __init__(self, path):
        self.path = Path(path)
        self.model = load_model(self.path)
        self.generation = 1
        self.loaded_at = time.time()
        self._reload_lock = threading.Lock()

    def reload(self) -> None:
        """Load the file again and swap it in; on failure the old model stays (and it raises)."""
        with self._reload_lock:
            model = load_model(self.path)
            self.model = model
            self.generation += 1
            self.loaded_at = time.time()
        log.info("reloaded %s (generation %d)", self.path, self.generation)

    def describe(self) -> dict:
        model = self.model
        return {"status": "ok", "model": type(model).__name__, "path": str(self.path),
                "generation": self.generation, "loaded_at": self.loaded_at,
                "n_items": int(model.n_items_),
                "n_users": int(getattr(model, "n_users_", 0)),
                "endpoints": list(_ENDPOINTS[type(model).__name__])}


# -- request validation ---------------------------------------------------------------------
def _field(body: dict, name: str, default=None, required: bool = False):
    if name not in body:
        if required:
            raise RequestError(400, f"missing field {name!r}")
        return default
    return body[name]


def _ids(body: dict, name: str, id_array: np.ndarray, allow_empty: bool = False) -> np.ndarray:
    """A JSON list of ids as an array matching the model's id dtype; 400 for the wrong shape or
    types, 422 for ids the model does not know (checked by the model)."""
    values = _field(body, name, required=True)
    if not isinstance(values, list):
        raise RequestError(400, f"{name!r} must be a list of ids")
    if not values and not allow_empty:
        raise RequestError(400, f"{name!r} is empty")
    if len(values) > MAX_BATCH:
        raise RequestError(400, f"{name!r} has {len(values)} ids; at most {MAX_BATCH}")
    numeric = id_array.dtype.kind in "iuf"
    for value in values:
        ok = (isinstance(value, int) and not isinstance(value, bool)) if numeric else (
            isinstance(value, str))
        if not ok:
            kind = "integers" if numeric else "strings"
            wrong_kind = isinstance(value, (int, str)) and not isinstance(value, bool)
            raise RequestError(422 if wrong_kind else 400,
                               f"{name!r} must hold ids ({kind} for this model), got "
                               f"{json.dumps(value)[:40]}")
    if numeric:
        info = np.iinfo(np.int64)
        if any(not info.min <= v <= info.max for v in values):
            raise RequestError(422, f"{name!r} holds an id out of the 64-bit range")
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=str)


def _n(body: dict, default: int) -> int:
    n = _field(body, "n", default)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise RequestError(422, f"'n' must be an integer in [1, {MAX_N}], got "
                                f"{json.dumps(n)[:40]}")
    return n


def _flag(body: dict, name: str, default: bool) -> bool:
    value = _field(body, name, default)
    if not isinstance(value, bool):
        raise RequestError(400, f"{name!r} must be true or false")
    return value


def _json_ids(ids: np.ndarray, scores: np.ndarray) -> tuple[list, list]:
    """Ids and scores as JSON lists; padding (-inf score) and non-finite scores become null."""
    finite = np.isfinite(scores)
    out_ids = [[i if ok else None for i, ok in zip(row, keep, strict=True)]
               for row, keep in zip(ids.tolist(), finite.tolist(), strict=True)]
    out_scores = [[s if ok else None for s, ok in zip(row, keep, strict=True)]
                  for row, keep in zip(scores.tolist(), finite.tolist(), strict=True)]
    return out_ids, out_scores


# -- endpoints (synchronous: run in worker threads) -----------------------------------------
def _recommend(model, body: dict) -> dict:
    users = _ids(body, "users", model.user_ids_)
    items, scores = model.recommend(users, n=_n(body, 10),
                                    filter_seen=_flag(body, "filter_seen", True))
    items, scores = _json_ids(np.asarray(items), np.asarray(scores, dtype=np.float64))
    return {"items": items, "scores": scores}


def _predict(model, body: dict) -> dict:
    users = _ids(body, "users", model.user_ids_)
    items = _ids(body, "items", model.item_ids_)
    if users.shape != items.shape:
        raise RequestError(400, f"'users' and 'items' must have the same length, got "
                                f"{users.shape[0]} and {items.shape[0]}")
    predictions = np.asarray(model.predict(users, items), dtype=np.float64)
    return {"predictions": [p if math.isfinite(p) else None for p in predictions.tolist()]}


def _similar(model, body: dict) -> dict:
    items = _ids(body, "items", model.item_ids_)
    ids, scores = model.similar_items(items, n=_n(body, 10))
    ids, scores = _json_ids(np.asarray(ids), np.asarray(scores, dtype=np.float64))
    return {"items": ids, "scores": scores}


def _next(model, body: dict) -> dict:
    session = _ids(body, "session", model.item_ids_)
    ids, scores, _ = model.recommend_next(session, n=_n(body, 20), unknown="raise")
    ids, scores = _json_ids(np.asarray(ids)[None], np.asarray(scores, dtype=np.float64)[None])
    return {"items": ids[0], "scores": scores[0]}


_HANDLERS = {"recommend": _recommend, "predict": _predict, "similar": _similar, "next": _next}


def create_app(model_path):
    """The Starlette application serving the model at ``model_path`` (loaded now: a bad file
    fails here, not at the first request). ``app.state.holder`` is the :class:`ModelHolder`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    holder = ModelHolder(model_path)

    async def healthz(request):
        return JSONResponse(holder.describe())

    def endpoint(name):
        handler = _HANDLERS[name]

        async def run(request):
            model = holder.model  # one read: a concurrent reload cannot mix two models
            if name not in _ENDPOINTS[type(model).__name__]:
                return _error(404, f"a {type(model).__name__} model has no /{name}")
            try:
                body = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError) as exc:
                return _error(400, f"the body is not JSON: {exc}")
            if not isinstance(body, dict):
                return _error(400, "the body must be a JSON object")
            try:
                return JSONResponse(await run_in_threadpool(handler, model, body))
            except RequestError as exc:
                return _error(exc.status, exc.reason)
            except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
                # the model refused the request (unknown ids, bad values): the client's to fix
                return _error(422, " ".join(str(exc).split()) or type(exc).__name__)

        return run

    async def reload(request):
        try:
            await run_in_threadpool(holder.reload)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model serving
            return _error(409, f"reload failed, still serving generation {holder.generation}: "
                               f"{' '.join(str(exc).split())}")
        return JSONResponse(holder.describe())

    routes = [Route("/healthz", healthz, methods=["GET"]),
              Route("/admin/reload", reload, methods=["POST"]),
              *(Route(f"/{name}", endpoint(name), methods=["POST"]) for name in _HANDLERS)]
    app = Starlette(routes=routes)
    app.state.holder = holder
    return app


def _error(status: int, reason: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": reason}, status_code=status)


def reload_on_sighup(holder: ModelHolder):
    """Reload ``holder``'s file in a background thread on each SIGHUP (a failed reload is logged
    and the old model keeps serving). Call from the main thread; returns the previous handler."""

    def reload_logged():
        try:
            holder.reload()
        except Exception as exc:  # noqa: BLE001 - a bad file must not take the service down
            log.error("SIGHUP reload failed, still serving generation %d: %s",
                      holder.generation, exc)

    def on_sighup(signum, frame):
        threading.Thread(target=reload_logged, name="fastrec-reload", daemon=True).start()

    return signal.signal(signal.SIGHUP, on_sighup)


def serve(model_path, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"):
    """Serve ``model_path`` with uvicorn until interrupted; SIGHUP reloads the file (POSIX)."""
    import uvicorn

    app = create_app(model_path)  # a bad model file fails here, before the port is bound
    if hasattr(signal, "SIGHUP"):
        reload_on_sighup(app.state.holder)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
