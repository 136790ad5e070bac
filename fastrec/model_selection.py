"""scikit-learn's model selection tools on fastrec models: splitters that split interactions
the way each family is evaluated, and scorers in the field's metrics.

Every fastrec estimator is a scikit-learn estimator (``get_params``/``set_params``,
``__sklearn_tags__``, ``clone``), so ``GridSearchCV``, ``RandomizedSearchCV``,
``cross_validate`` and ``Pipeline`` take them. Pass the interactions as a pandas DataFrame (one
row per rating, interaction or click): scikit-learn indexes its rows to make the folds::

    from sklearn.model_selection import GridSearchCV
    from fastrec.model_selection import RatingSplit, rmse_scorer

    search = GridSearchCV(fastrec.MF(n_epochs=20), {"n_factors": [16, 32, 64]},
                          cv=RatingSplit(n_splits=3, random_state=0), scoring=rmse_scorer)
    search.fit(ratings_frame)

| family | splitter | scorer |
| --- | --- | --- |
| MF, NMF(mode="observed") | :class:`RatingSplit` (random ratings) | :data:`rmse_scorer` |
| GMF, MLP, NeuMF | :class:`LeaveLastOut` (each user's latest) | :func:`hit_rate_scorer` |
| GRU4Rec | :class:`SessionSplit` (the latest sessions) | :func:`recall_scorer` |
| NMF(mode="full") | scikit-learn's ``KFold`` over rows | the model's ``score`` |

scikit-learn is only needed by the code that calls it; this module imports none of it.
"""

from __future__ import annotations

import numpy as np

from fastrec.data.interactions import Interactions
from fastrec.data.sessions import _SESSION_COLUMNS, _TIME_COLUMNS, Sessions, _pick


def _check_splits(n_splits) -> int:
    if not isinstance(n_splits, (int, np.integer)) or isinstance(n_splits, bool) or n_splits < 1:
        raise ValueError(f"n_splits must be an integer >= 1, got {n_splits!r}")
    return int(n_splits)


class RatingSplit:
    """Random held-out ratings, ``n_splits`` independent draws of ``test_size`` of the rows
    (the protocol of rating prediction: Surprise's and the Netflix Prize's)."""

    def __init__(self, n_splits: int = 3, test_size: float = 0.2, random_state=None):
        self.n_splits = n_splits
        self.test_size = test_size
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return _check_splits(self.n_splits)

    def split(self, X, y=None, groups=None):
        n = len(X)
        if not 0 < float(self.test_size) < 1:
            raise ValueError(f"test_size must be in (0, 1), got {self.test_size!r}")
        n_test = max(1, int(round(float(self.test_size) * n)))
        rng = np.random.default_rng(self.random_state)
        for _ in range(self.get_n_splits()):
            order = rng.permutation(n)
            yield np.sort(order[n_test:]), np.sort(order[:n_test])


class LeaveLastOut:
    """Each user's latest interaction is held out (by timestamp when the frame has one, else
    the last row): the NCF protocol. One split; users with a single interaction stay in
    training."""

    n_splits = 1

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return 1

    def split(self, X, y=None, groups=None):
        data = Interactions.from_any(X)
        order = np.arange(data.nnz)
        if data.timestamps is not None:
            order = np.lexsort((order, data.timestamps))
        users = data.users[order]
        last = np.zeros(data.nnz, bool)
        # the last occurrence of each user in time order
        _, first_in_reverse = np.unique(users[::-1], return_index=True)
        last[order[data.nnz - 1 - first_in_reverse]] = True
        counts = np.bincount(data.users, minlength=data.n_users)
        last &= counts[data.users] > 1
        yield np.flatnonzero(~last), np.flatnonzero(last)


class SessionSplit:
    """The latest ``test_size`` of the sessions (by their first timestamp when the frame has
    one, else by order of appearance) are held out whole: GRU4Rec's protocol. One split.

    ``split`` of a DataFrame yields row indices; of :class:`fastrec.data.Sessions`, session
    indices (for ``Sessions.subset``)."""

    n_splits = 1

    def __init__(self, test_size: float = 0.2):
        self.test_size = test_size

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return 1

    def split(self, X, y=None, groups=None):
        if not 0 < float(self.test_size) < 1:
            raise ValueError(f"test_size must be in (0, 1), got {self.test_size!r}")
        if isinstance(X, Sessions):
            sessions = np.arange(X.n_sessions)
            keys, first = sessions, X.offsets[:-1]
            start = X.start_times if X.start_times is not None else first
        else:
            session_col = _pick(X, _SESSION_COLUMNS, "session")
            time_col = _pick(X, _TIME_COLUMNS, "timestamp", required=False)
            sessions = np.asarray(X[session_col])
            keys, first = np.unique(sessions, return_index=True)
            start = np.asarray(X[time_col])[first] if time_col is not None else first
        ranked = keys[np.lexsort((first, start))]
        n_test = max(1, int(round(float(self.test_size) * keys.shape[0])))
        test = np.isin(sessions, ranked[-n_test:])
        yield np.flatnonzero(~test), np.flatnonzero(test)


def rmse_scorer(estimator, X, y=None) -> float:
    """Negative RMSE of a rating model on held-out ratings (higher is better)."""
    return float(estimator.score(X))


def hit_rate_scorer(k: int = 10):
    """HR@k of held-out pairs under the NCF protocol (each ranked among the model's
    ``n_eval_negatives`` sampled items), for GMF, MLP and NeuMF."""

    def score(estimator, X, y=None) -> float:
        saved = estimator.eval_k
        estimator.eval_k = k
        try:
            return float(estimator.score(X))
        finally:
            estimator.eval_k = saved

    score.__name__ = f"hit_rate_at_{k}"
    return score


def recall_scorer(k: int = 20):
    """Recall@k of the next click on held-out sessions, for GRU4Rec."""

    def score(estimator, X, y=None) -> float:
        return float(estimator.evaluate(X, k=k)["recall"])

    score.__name__ = f"recall_at_{k}"
    return score


def mrr_scorer(k: int = 20):
    """MRR@k of the next click on held-out sessions, for GRU4Rec."""

    def score(estimator, X, y=None) -> float:
        return float(estimator.evaluate(X, k=k)["mrr"])

    score.__name__ = f"mrr_at_{k}"
    return score
