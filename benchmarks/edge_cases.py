"""Every misbehaviour the "safe to embed" issue lists, run and reported one line each: what the
installed fastrec does today. Run it on two checkouts to get a before/after table:

    PYTHONPATH=<old checkout> python benchmarks/edge_cases.py > before.txt
    PYTHONPATH=<new checkout> python benchmarks/edge_cases.py > after.txt
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import fastrec
from fastrec.data import synthetic_ratings, synthetic_sessions


def outcome(call) -> str:
    """What a call did: its result, or the exception's class and first line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - the outcome is what is reported
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:110]}"
    shown = "ok" if result is None else str(result)[:110]
    warned = [f"{w.category.__name__}" for w in caught if "max_iter" in str(w.message)
              or "iteration" in str(w.message)]
    return shown + (f" (warns {warned[0]})" if warned else "")


def main() -> None:
    data = synthetic_ratings(n_users=200, n_items=80, n_ratings=4_000, seed=0).interactions
    triples = (data.user_ids[data.users], data.item_ids[data.items], data.values)
    positive = (triples[0], triples[1], np.abs(triples[2]))
    sessions = synthetic_sessions(n_sessions=300, n_items=30, random_state=0)
    tmp = Path(tempfile.mkdtemp())
    rows = []

    def case(name, call):
        rows.append((name, outcome(call)))

    def refit_keeps(model, refit):
        before = {k: np.copy(v) for k, v in vars(model).items() if isinstance(v, np.ndarray)}
        try:
            refit(model)
        except Exception:  # noqa: BLE001 - the refit is meant to fail
            pass
        same = all(k in vars(model) and np.array_equal(vars(model)[k], v)
                   for k, v in before.items())
        return "old model kept bit for bit" if same else "old model CHANGED"

    def mf():
        return fastrec.MF(n_epochs=2, random_state=0).fit(triples)

    case("MF refit with bad validation_data", lambda: refit_keeps(
        mf(), lambda m: m.fit(triples, validation_data=(np.array([1]), np.array([2])))))
    case("MF refit early_stopping=True without validation", lambda: refit_keeps(
        mf(), lambda m: m.set_params(early_stopping=True).fit(triples)))
    case("GMF refit early_stopping=True without validation", lambda: refit_keeps(
        fastrec.GMF(n_epochs=1, random_state=0).fit(triples),
        lambda m: m.set_params(early_stopping=True).fit(triples)))

    def nmf_failed_refit():
        model = fastrec.NMF(8, mode="observed", max_iter=5, random_state=0).fit(positive)
        try:
            model.fit((np.array([1, 2]), np.array([1, 2]), np.array([1.0, 2.0])))
        except ValueError:
            pass
        return model.recommend(model.user_ids_[:1], n=3)[0].tolist()

    case("NMF failed refit, then recommend", nmf_failed_refit)

    def pad_minus_one():
        users = np.repeat(np.arange(4), 3)
        model = fastrec.MF(n_factors=2, n_epochs=1, random_state=0).fit(
            (users, np.tile([-1, 0, 1], 4), np.ones(12)))
        return model.recommend([0], n=5)[0].tolist()

    case("recommend padding when -1 is a real item id", pad_minus_one)
    case("GMF(learning_rate=1e6)", lambda: fastrec.GMF(learning_rate=1e6, n_epochs=3,
                                                       random_state=0).fit(triples).loss_curve_)
    case("GRU4Rec(learning_rate=1e6)", lambda: fastrec.GRU4Rec(
        hidden_size=16, learning_rate=1e6, n_epochs=3, batch_size=16, n_sample=16,
        random_state=0).fit(sessions).loss_curve_)
    case("NMF on input scaled by 1e30", lambda: fastrec.NMF(
        4, max_iter=30, random_state=0).fit(_matrix(positive) * 1e30).reconstruction_err_)
    case("MF on ratings scaled by 1e30", lambda: fastrec.MF(n_epochs=3, random_state=0).fit(
        (triples[0], triples[1], triples[2] * 1e30)))
    model = fastrec.MF(n_factors=4, n_epochs=2, random_state=0).fit(triples)
    case("MF recommend([u], n=10**9): result shape", lambda: _rss_guard(
        lambda: model.recommend(model.user_ids_[:1], n=10**9)[0].shape))
    gru = fastrec.GRU4Rec(hidden_size=8, n_epochs=1, batch_size=16, n_sample=8,
                          random_state=0).fit(sessions)
    case("GRU4Rec recommend_next(n=100) on 30 items: length", lambda: len(
        gru.recommend_next([sessions["item_id"].iloc[0]], n=100)[0]))
    case("MF recommend(n=100) on 80 items: width", lambda: model.recommend(
        model.user_ids_[:1], n=100)[0].shape[1])
    case("score() before fit", lambda: fastrec.MF().score(triples))
    case("fastrec.DivergenceError / NotFittedError / ModelFileError / BackendUnavailable",
         lambda: [hasattr(fastrec, n) for n in ("DivergenceError", "NotFittedError",
                                                 "ModelFileError", "BackendUnavailable")])
    path = model.save(tmp / "mf.npz")
    for what, edit in (("wrong bias length", lambda a: a.__setitem__(
            "user_bias_", a["user_bias_"][:-1])),
            ("wrong factor width", lambda a: a.__setitem__(
                "item_factors_", a["item_factors_"][:, :-1])),
            ("out-of-range seen_ index", lambda a: a.__setitem__(
                "seen_indices", a["seen_indices"] + 10**6))):
        case(f"load() of a file with {what}, then recommend", lambda edit=edit: _crafted(
            path, tmp, edit).recommend(model.user_ids_[:1], n=3)[0].tolist())
    loaded = fastrec.MF.load(path)
    case("loaded model has loss_curve_/backend_/fit_time_/n_epochs_", lambda: [
        hasattr(loaded, n) for n in ("loss_curve_", "backend_", "fit_time_", "n_epochs_")])
    model.save(tmp / "m")
    case('save("m") then load("m")', lambda: type(fastrec.MF.load(tmp / "m")).__name__)
    old = os.umask(0o022)
    try:
        written = model.save(tmp / "perm.npz")
    finally:
        os.umask(old)
    case("model file mode under umask 022", lambda: oct(written.stat().st_mode & 0o777))
    case("files left beside the models", lambda: sorted(p.name for p in tmp.iterdir()
                                                        if p.name.startswith(".")))
    case("NMF stopping at max_iter", lambda: fastrec.NMF(
        4, max_iter=5, tol=1e-9, random_state=0).fit(_matrix(positive)).n_iter_)
    lines = [f"{u},{i},{r:.2f}" for u, i, r in zip(*triples, strict=True)]
    plain, headed = tmp / "plain.csv", tmp / "headed.csv"
    plain.write_text("\n".join(lines))
    headed.write_text("user,item,rating\n" + "\n".join(lines))
    case("CLI: fastrec fit plain.csv --lr 5", lambda: _cli("fit", str(plain), "--lr", "5",
                                                           "--out", str(tmp / "c.npz")))
    case("CLI: fastrec fit headed.csv --header", lambda: _cli(
        "fit", str(headed), "--header", "--out", str(tmp / "d.npz")))
    case("CLI: fastrec info (no GPU), the cuda line", lambda: next(
        (line.strip() for line in _cli("info", raw=True).splitlines()
         if line.strip().startswith("cuda")), ""))
    width = max(len(name) for name, _ in rows)
    for name, result in rows:
        print(f"{name:<{width}} | {result}")


def _matrix(triples):
    import scipy.sparse as sp

    u = np.unique(triples[0], return_inverse=True)[1]
    i = np.unique(triples[1], return_inverse=True)[1]
    return sp.csr_matrix((triples[2], (u, i)))


def _crafted(path, tmp, edit):
    with np.load(path) as archive:
        arrays = dict(archive)
    edit(arrays)
    out = tmp / "crafted.npz"
    np.savez(out, **arrays)
    return fastrec.MF.load(out)


def _rss_guard(call):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, hard))
    try:
        return call()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _cli(*args, raw=False):
    run = subprocess.run([sys.executable, "-m", "fastrec", *args], capture_output=True,
                         text=True, timeout=120)
    if raw:
        return run.stdout + run.stderr
    lines = (run.stderr or run.stdout).strip().splitlines()
    return f"exit {run.returncode}, {len(lines)} line(s): {lines[-1][:90] if lines else ''}"


if __name__ == "__main__":
    main()
