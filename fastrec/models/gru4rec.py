"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018): session-based next-item
recommendation with a GRU trained on session-parallel mini-batches and sampled negatives.

With ``backend="cuda"`` the epoch schedule, the sampling table, the weights and the optimiser
state go to the GPU once and stay there for the whole fit; the fitted arrays stay on the GPU
afterwards (``device_``, ``to("cpu")``, ``to_numpy()``), ``recommend_next`` and ``evaluate`` run
the GRU and the scoring there and return host values, and ``save`` writes host arrays.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd

from fastrec._algorithms.fit_loop import Trainer
from fastrec._algorithms.gru4rec import GRU4RecParams, alias_table, session_parallel_schedule
from fastrec._algorithms.gru_forward import gru_step
from fastrec._algorithms.topn import top_n
from fastrec._array import array_module, host_data, to_host
from fastrec.backends._contract import (
    LOSS_CODES,
    OPTIMIZER_CODES,
    GRU4RecSpec,
    check_gru4rec_epoch,
    gru_layout,
)
from fastrec.data.sessions import Sessions, index_of
from fastrec.model_selection import SessionSplit
from fastrec.models._base import (
    Estimator,
    check_dtype,
    check_positive,
    item_ids_padded,
    padding_id,
    store_params,
)

log = logging.getLogger("fastrec")

_KERNEL = "gru4rec_train_epoch"
_EVAL_BATCH = 512  # sessions advanced together during evaluation


class GRU4Rec(Estimator):
    """Session-based recommender: a GRU reads a session's clicks and scores every item as the
    next click.

    Parameters
    ----------
    hidden_size : int, GRU units per layer (``H``).
    n_layers : int, stacked GRU layers (all of size ``hidden_size``).
    embedding_size : int, item embedding fed to the GRU; 0 means none (GRU4Rec's one-hot input:
        the first layer's input weights are a per-item table).
    loss : "cross-entropy", "bpr-max" or "top1-max" (GRU4Rec v2 losses over the sampled items).
    n_sample : int, extra negatives per mini-batch, shared by its rows, drawn with probability
        proportional to ``support ** sample_alpha``; the batch's other targets are negatives too.
    sample_alpha : float in [0, 1].
    bpreg : float, BPR-max score regularisation.
    batch_size : int, parallel sessions per mini-batch.
    bptt : int, steps of backpropagation through time per update (GRU4Rec uses 1).
    n_epochs : int.
    optimizer : "adagrad" (GRU4Rec's default) or "adam".
    learning_rate : float.
    momentum : float, Adagrad momentum (GRU4Rec's).
    eps : float or None, optimizer epsilon (default 1e-6 for Adagrad, 1e-8 for Adam).
    dropout_embed, dropout_hidden : float in [0, 1), dropout of the input embedding and of the
        last layer's output (between stacked layers nothing is dropped).
    dtype, backend, n_threads, random_state, verbose : as every fastrec estimator. The same
        seed gives the same model on a backend; backends agree to rounding (same samples).
    early_stopping, n_iter_no_change, tol : stop when Recall@eval_k on the validation
        sessions stops improving and keep the best epoch's weights. The validation sessions
        are ``fit``'s ``validation_data``, or without it the latest ``validation_fraction`` of
        the sessions (by first timestamp), held out of training.
    validation_fraction : float in (0, 1), share of the sessions held out for early stopping
        when ``fit`` gets no ``validation_data`` (unused otherwise).
    eval_k : cut-off of the validation Recall.
    callbacks : list of ``callback(epoch, metrics)`` called after each epoch; a truthy return
        value stops the fit.

    The defaults (BPR-max loss, one-hot input, batch 64, early stopping on the latest 10% of
    the sessions, 10 epochs at most) were chosen on validation data carved from the training
    part of the DIGINETICA sample (``benchmarks/results/tuning_gru4rec.md``, made by
    ``benchmarks/tune_defaults.py gru4rec``): BPR-max scores 0.237 validation Recall@20
    against 0.144 for cross-entropy at the same settings, and every configuration peaked at
    epoch 4-9 of 10.

    Fitted attributes: ``item_ids_`` (original id of each item index), ``n_items_``,
    ``input_embedding_`` T[n_items, D], ``gru_weights_`` T[P] (flat, see
    ``fastrec.backends._contract.gru_layout``), ``output_table_`` T[n_items, H+1] (output item
    vectors with the bias in the last column), ``loss_curve_`` (mean training loss per epoch),
    ``validation_curve_`` (Recall@eval_k per epoch with validation data), ``n_epochs_``,
    ``backend_``, ``fit_time_`` (s), ``timings_``, ``events_per_second_`` (training events per
    second in the epoch kernels).
    """

    _ARRAYS = ("item_ids_", "input_embedding_", "gru_weights_", "output_table_")
    _METADATA = (*Estimator._METADATA, "events_per_second_")

    def __init__(self, hidden_size: int = 100, n_layers: int = 1, embedding_size: int = 0,
                 loss: str = "bpr-max", n_sample: int = 2048, sample_alpha: float = 0.5,
                 bpreg: float = 1.0, batch_size: int = 64, bptt: int = 1, n_epochs: int = 10,
                 optimizer: str = "adagrad", learning_rate: float = 0.05, momentum: float = 0.0,
                 eps: float | None = None, dropout_embed: float = 0.0,
                 dropout_hidden: float = 0.0, dtype="float32", backend: str = "auto",
                 n_threads: int | None = None, random_state: int | None = None,
                 early_stopping: bool = True, validation_fraction: float = 0.1,
                 n_iter_no_change: int = 3, tol: float = 1e-4, eval_k: int = 20,
                 callbacks=None, verbose: bool = False):
        store_params(self, locals())

    # -- parameters -------------------------------------------------------------------------
    def _validate_params(self) -> np.dtype:
        for name in ("hidden_size", "n_layers", "batch_size", "bptt", "n_epochs"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("embedding_size", self.embedding_size, integer=True, allow_zero=True)
        check_positive("n_sample", self.n_sample, integer=True, allow_zero=True)
        check_positive("learning_rate", self.learning_rate)
        check_positive("bpreg", self.bpreg, allow_zero=True)
        check_positive("momentum", self.momentum, allow_zero=True)
        if self.eps is not None:
            check_positive("eps", self.eps)
        if self.loss not in LOSS_CODES:
            raise ValueError(f"loss must be one of {tuple(LOSS_CODES)}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZER_CODES:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZER_CODES)}, "
                             f"got {self.optimizer!r}")
        if self.optimizer == "adam" and self.momentum > 0:
            raise ValueError("momentum applies to adagrad only")
        if not 0.0 <= float(self.sample_alpha) <= 1.0:
            raise ValueError(f"sample_alpha must be in [0, 1], got {self.sample_alpha}")
        for name in ("dropout_embed", "dropout_hidden"):
            check_positive(name, getattr(self, name), allow_zero=True)
            if getattr(self, name) >= 1.0:
                raise ValueError(f"{name} must be < 1, got {getattr(self, name)}")
        if self.embedding_size == 0 and self.dropout_embed > 0:
            raise ValueError("dropout_embed needs an embedding (embedding_size > 0)")
        return check_dtype(self.dtype)

    def _spec(self, epoch: int, step0: int, seed: int) -> GRU4RecSpec:
        adam = self.optimizer == "adam"
        return GRU4RecSpec(
            embedded=self.embedding_size > 0, loss=LOSS_CODES[self.loss],
            bpreg=float(self.bpreg), n_sample=int(self.n_sample),
            dropout_embed=float(self.dropout_embed), dropout_hidden=float(self.dropout_hidden),
            bptt=int(self.bptt), method=OPTIMIZER_CODES[self.optimizer],
            lr=float(self.learning_rate), momentum=float(self.momentum), beta1=0.9,
            beta2=0.999, eps=float(self.eps if self.eps is not None else (1e-8 if adam else 1e-6)),
            step0=int(step0), seed=int(seed), epoch=int(epoch))

    # -- data -------------------------------------------------------------------------------
    @staticmethod
    def _sessions(X, item_ids=None, unknown="raise") -> Sessions:
        if isinstance(X, Sessions):
            if item_ids is not None and not np.array_equal(X.item_ids, item_ids):
                raise ValueError("these Sessions use another item index than the model")
            return X
        if isinstance(X, pd.DataFrame):
            return Sessions.from_frame(X, item_ids=item_ids, unknown=unknown)
        if isinstance(X, tuple) and len(X) in (2, 3):
            return Sessions.from_arrays(*X, item_ids=item_ids, unknown=unknown)
        raise TypeError("sessions must be a DataFrame (session id, item id[, timestamp]), a "
                        "(session_ids, item_ids[, timestamps]) tuple or fastrec Sessions")

    def fit(self, X, validation_data=None):
        """Train on sessions.

        X : DataFrame with session id, item id and (optional) timestamp columns, a
            ``(session_ids, item_ids[, timestamps])`` tuple (numpy or CuPy arrays: with
            ``backend="cuda"`` CuPy events are grouped and laid out on the device, only the
            per-session offsets and the id maps come to the host; other backends copy them to
            the host once), or :class:`fastrec.data.Sessions`.
            Events are sorted by session and time; sessions are taken in order of their first
            event (GRU4Rec's time order). Sessions with one event have nothing to predict and
            are skipped.
        validation_data : held-out sessions (the same kinds), scored after each epoch with
            :meth:`evaluate` (Recall@eval_k); needed by ``early_stopping``.
        Returns self. A fit that raises leaves a previously fitted model as it was, except
        :class:`fastrec.DivergenceError`, after which the model holds the last good epoch.
        """
        self._transaction(type(self)._fit, X, validation_data)
        return self

    def _fit(self, X, validation_data) -> None:
        dtype = self._validate_params()
        X, validation_data = self._holdout(X, validation_data)
        backend = self._resolve_backend((_KERNEL,))
        place = self._placement(backend)
        data = self._sessions(place.inputs(X))
        n_threads = self._n_threads()
        usable = int(np.sum(data.lengths >= 2))
        if usable == 0:
            raise ValueError("no session has two or more events: nothing to learn from")
        if data.n_sessions > usable:
            log.info("skipping %d sessions of one event", data.n_sessions - usable)
        if usable < self.batch_size:
            raise ValueError(f"batch_size={self.batch_size} exceeds the {usable} sessions with "
                             "two or more events; lower batch_size")
        order = None
        if data.start_times is not None:
            order = np.argsort(data.start_times, kind="stable")
        schedule = session_parallel_schedule(data.items, data.offsets, int(self.batch_size),
                                             order)
        if schedule.n_steps < self.bptt:
            raise ValueError(f"the sessions give {schedule.n_steps} mini-batches, fewer than "
                             f"bptt={self.bptt}; lower batch_size or bptt")
        validation = None
        if validation_data is not None:
            validation = self._sessions(host_data(validation_data), item_ids=data.item_ids,
                                        unknown="drop")
        rng = np.random.default_rng(self.random_state)
        seed = int(rng.integers(0, 2**63 - 1))
        support = to_host(array_module(data.items).bincount(
            data.items, minlength=data.n_items)).astype(np.float64)
        prob, alias = alias_table(support ** float(self.sample_alpha), data.items.dtype)
        params = GRU4RecParams.init(data.n_items, int(self.hidden_size), int(self.n_layers),
                                    int(self.embedding_size), dtype, rng)
        hidden = np.zeros((int(self.n_layers), int(self.batch_size), int(self.hidden_size)),
                          dtype)
        check_gru4rec_epoch(schedule.inputs, schedule.targets, schedule.reset, hidden,
                            params.emb, params.gru, params.out, prob, alias, self._spec(0, 0, 0))
        # On CUDA everything the epochs read or update goes to the device once; the fitted
        # arrays stay there.
        move = place.move
        schedule_arrays = tuple(move(a) for a in (schedule.inputs, schedule.targets,
                                                  schedule.reset))
        hidden, prob, alias = move(hidden), move(prob), move(alias)
        params = GRU4RecParams(move(params.emb), move(params.gru), move(params.out),
                               {name: move(a) for name, a in params.state.items()})
        self.item_ids_ = data.item_ids
        self.n_items_ = data.n_items
        self.input_embedding_, self.gru_weights_, self.output_table_ = (params.emb, params.gru,
                                                                        params.out)
        self.backend_ = backend.name  # validation scores the model while it trains
        trainer = _GRU4RecTrainer(self, backend, schedule_arrays, hidden, params, prob, alias,
                                  seed, validation, n_threads)
        def finish():
            self.events_per_second_ = (trainer.events / trainer.kernel_seconds
                                       if trainer.kernel_seconds > 0 else float("nan"))

        self._train(trainer, int(self.n_epochs), backend.name, finish)

    _HOLDOUT = "sessions"

    def _split_off(self, X, fraction: float) -> tuple[Sessions, Sessions]:
        """The latest ``fraction`` of the sessions of ``X`` and the others, with one item
        index (the validation part's items are known to the model, if untrained)."""
        data = self._sessions(X)
        fit_sessions, held = next(SessionSplit(test_size=fraction).split(data))
        if fit_sessions.size == 0:
            raise ValueError(f"validation_fraction={fraction} of {data.n_sessions} sessions "
                             "leaves no training session: pass validation_data")
        return data.subset(fit_sessions), data.subset(held)

    # -- inference ------------------------------------------------------------------------------
    def _weights(self):
        H = int(self.hidden_size)
        D = self.input_embedding_.shape[1]
        return gru_layout(int(self.n_layers), H, D, self.embedding_size > 0).views(
            self.gru_weights_)

    def init_state(self, n_sessions: int | None = None) -> np.ndarray:
        """Zero hidden state: T[n_layers, hidden_size] (or [n_layers, n_sessions, hidden]), a
        numpy array whatever the model's device."""
        self._check_fitted()
        shape = (int(self.n_layers), int(self.hidden_size)) if n_sessions is None else (
            int(self.n_layers), int(n_sessions), int(self.hidden_size))
        return np.zeros(shape, self.gru_weights_.dtype)

    def _advance(self, items: np.ndarray, hidden):
        """One click per session: items I[B], hidden T[L, B, H] -> new hidden T[L, B, H], on
        the weights' device (host inputs are copied there)."""
        xp = array_module(self.gru_weights_)
        items, hidden = xp.asarray(items), xp.asarray(hidden)
        w = self._weights()
        x = self.input_embedding_[items]
        A0 = (x @ w.wx0 if self.embedding_size > 0 else x) + w.b[0]
        return gru_step(A0, hidden, w.wx_rest, w.wh, w.b)

    def _scores(self, top):
        """All items' scores for hidden states T[B, H]: T[B, n_items], on the weights'
        device."""
        top = array_module(self.output_table_).asarray(top)
        return top @ self.output_table_[:, :-1].T + self.output_table_[:, -1]

    def recommend_next(self, session_items, n: int = 20, state: np.ndarray | None = None,
                       unknown: str = "skip"):
        """Top-``n`` next items for a live session.

        session_items : the session's new clicks (original item ids), oldest first; may be empty
            when ``state`` already holds the session.
        state : hidden state from a previous call (None starts a new session). Feeding clicks
            one call at a time gives the same result as feeding them together.
        unknown : "skip" ignores items unseen in training (logged), "raise" refuses them.
        Returns ``(item_ids [n], scores [n], state)`` as numpy arrays (for a model on the GPU
        the GRU and the scoring run there, the top-n selection on the host); pass ``state``
        back with the next click.
        """
        self._check_fitted()
        check_positive("n", n, integer=True)
        if unknown not in ("skip", "raise"):
            raise ValueError("unknown must be 'skip' or 'raise'")
        clicks = np.atleast_1d(np.asarray(session_items))
        if state is None:
            state = self.init_state()
        state = np.asarray(to_host(state), dtype=self.gru_weights_.dtype)
        if state.shape != (int(self.n_layers), int(self.hidden_size)):
            raise ValueError(f"state must have shape {(self.n_layers, self.hidden_size)}, "
                             f"got {state.shape}")
        index = index_of(self.item_ids_, clicks) if clicks.size else np.zeros(0, np.int64)
        if (index < 0).any():
            if unknown == "raise":
                raise ValueError(f"items unseen in training: {clicks[index < 0][:5].tolist()}")
            log.info("recommend_next: skipped %d unseen items", int((index < 0).sum()))
            index = index[index >= 0]
        if index.size == 0 and not state.any():
            raise ValueError("the session has no known item yet: nothing to condition on")
        hidden = state[:, None, :].copy()
        for item in index:
            hidden = self._advance(np.array([item]), hidden)
        vectors, bias = self._output_parts()
        best, scores = top_n(hidden[-1], vectors, bias, int(n), n_threads=1)
        return (item_ids_padded(self.item_ids_, to_host(best)[0]), to_host(scores)[0],
                to_host(hidden[:, 0]).copy())

    @property
    def padding_id_(self):
        """The id that pads top-N lists (score -inf), never a real item id; see
        ``MF.padding_id_``. ``recommend_next`` ranks every item, so it pads only where scores
        are not numbers."""
        return padding_id(self.item_ids_)

    def _output_parts(self):
        """The output table split into contiguous item vectors T[n_items, H] and biases
        T[n_items], made once per fitted table (the compiled top-n reads them per request)."""
        cache = self.__dict__.get("_output_cache")
        if cache is None or cache[0] is not self.output_table_:
            xp = array_module(self.output_table_)
            cache = (self.output_table_, xp.ascontiguousarray(self.output_table_[:, :-1]),
                     xp.ascontiguousarray(self.output_table_[:, -1]))
            self._output_cache = cache
        return cache[1], cache[2]

    def score(self, X, y=None) -> float:
        """Recall@eval_k of the next-item protocol on sessions ``X`` (higher is better, as
        scikit-learn's ``score``; see :meth:`evaluate`)."""
        return self.evaluate(X, k=int(self.eval_k))["recall"]

    def evaluate(self, sessions, k: int = 20, eval_from: str = "second") -> dict[str, float]:
        """GRU4Rec's next-item protocol: each target event is ranked among all items given the
        session's earlier events. Rank = number of items scoring at least the target's score
        (ties count against the model).

        sessions : test sessions (any ``fit`` input); events on unseen items are dropped, then
            sessions shorter than 2.
        eval_from : "second" scores every event after the first; "last" only each session's
            last event (leave-last-out).
        Returns ``{"recall": Recall@k, "mrr": MRR@k, "n_events": scored events}``. For a
        model on the GPU the GRU, the scores and the ranks are computed there (only the ranks
        come to the host).
        """
        self._check_fitted()
        check_positive("k", k, integer=True)
        if eval_from not in ("second", "last"):
            raise ValueError("eval_from must be 'second' or 'last'")
        data = self._sessions(host_data(sessions), item_ids=self.item_ids_, unknown="drop")
        keep = np.flatnonzero(data.lengths >= 2)
        data = data.subset(keep[np.argsort(-data.lengths[keep], kind="stable")])
        hits, rr, count = 0, 0.0, 0
        for b0 in range(0, data.n_sessions, _EVAL_BATCH):
            b1 = min(data.n_sessions, b0 + _EVAL_BATCH)
            starts, lengths = data.offsets[b0:b1], data.lengths[b0:b1]
            hidden = self.init_state(b1 - b0)
            for t in range(int(lengths[0]) - 1):
                active = int(np.sum(lengths > t + 1))  # sorted by length: a prefix is active
                hidden = hidden[:, :active]
                hidden = self._advance(data.items[starts[:active] + t], hidden)
                scored = np.arange(active) if eval_from == "second" else np.flatnonzero(
                    lengths[:active] == t + 2)
                if scored.size == 0:
                    continue
                scores = self._scores(hidden[-1][array_module(hidden).asarray(scored)])
                xp = array_module(scores)
                target = xp.asarray(data.items[starts[scored] + t + 1])
                target_scores = scores[xp.arange(scored.size), target]
                ranks = to_host(xp.sum(scores >= target_scores[:, None], axis=1))
                hits += int(np.sum(ranks <= k))
                rr += float(np.sum(np.where(ranks <= k, 1.0 / ranks, 0.0)))
                count += int(scored.size)
        if count == 0:
            raise ValueError("no test event to score (sessions too short or items unseen)")
        return {"recall": hits / count, "mrr": rr / count, "n_events": count}

    # -- files ----------------------------------------------------------------------------------
    def _set_sizes(self) -> None:
        self.n_items_ = self.item_ids_.shape[0]

    def _check_consistent(self) -> None:
        expected = gru_layout(int(self.n_layers), int(self.hidden_size),
                              self.input_embedding_.shape[1], self.embedding_size > 0).size
        if (self.output_table_.shape != (self.n_items_, self.hidden_size + 1)
                or self.input_embedding_.shape[0] != self.n_items_
                or self.gru_weights_.shape != (expected,)):
            raise ValueError("array shapes do not match the parameters")
        for name in ("input_embedding_", "gru_weights_", "output_table_"):
            value = getattr(self, name)
            if value.dtype != self.gru_weights_.dtype or value.dtype.kind != "f":
                raise ValueError(f"{name} has dtype {value.dtype}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or inf")


class _GRU4RecTrainer(Trainer):
    """One epoch of session-parallel mini-batches (``gru4rec_train_epoch``)."""

    def __init__(self, model: GRU4Rec, backend, schedule_arrays, hidden, params, prob, alias,
                 seed, validation, n_threads):
        self.model, self.backend, self.schedule_arrays = model, backend, schedule_arrays
        self.hidden, self.params, self.prob, self.alias = hidden, params, prob, alias
        self.seed, self.validation_sessions, self.n_threads = seed, validation, n_threads
        self.name = f"GRU4Rec[{backend.name}]"
        self.hint = (f"learning_rate={model.learning_rate} is too large for this data; lower "
                     "it")
        self.n_blocks = int(schedule_arrays[0].shape[0]) // int(model.bptt)
        self.kernel_seconds, self.events = 0.0, 0
        if model.loss == "cross-entropy":  # near-uniform scores over the batch's candidates
            self.baseline_loss = math.log(int(model.batch_size) + int(model.n_sample))

    def state(self) -> dict:
        p = self.params
        return {"emb": p.emb, "gru": p.gru, "out": p.out, **p.state}

    def run_epoch(self, epoch: int) -> float:
        p, state = self.params, self.params.state
        self.hidden[...] = 0
        tick = time.perf_counter()
        total, n_events = self.backend.gru4rec_train_epoch(
            *self.schedule_arrays, self.hidden, p.emb, state["emb_s1"], state["emb_s2"], p.gru,
            state["gru_s1"], state["gru_s2"], p.out, state["out_s1"], state["out_s2"],
            self.prob, self.alias, self.model._spec(epoch, epoch * self.n_blocks, self.seed),
            self.n_threads)
        self.kernel_seconds += time.perf_counter() - tick
        self.events += n_events
        return total / max(n_events, 1)

    def validation(self) -> tuple[float, str, bool] | None:
        if self.validation_sessions is None:
            return None
        k = int(self.model.eval_k)
        return self.model.evaluate(self.validation_sessions, k=k)["recall"], f"Recall@{k}", False
