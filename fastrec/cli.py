"""Command line: ``fastrec info | demo | fit | recommend | serve`` (also ``python -m fastrec``)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback

import numpy as np


def _cmd_info(args) -> int:
    import fastrec

    print(f"fastrec {fastrec.__version__}")
    fastrec.show_backends()
    return 0


def _cmd_demo(args) -> int:
    from fastrec import MF
    from fastrec.backends import auto_choice, available_backends
    from fastrec.data import synthetic_ratings
    from fastrec.data.splits import random_split

    data = synthetic_ratings(n_users=args.users, n_items=args.items, n_ratings=args.ratings,
                             seed=args.seed)
    train, test = random_split(data.interactions, test_size=0.2, random_state=args.seed)
    print(f"synthetic ratings: {data.interactions.n_users} users x {data.interactions.n_items} "
          f"items, {train.nnz} train / {test.nnz} test ratings, rank-8 signal, "
          f"noise floor RMSE {data.noise_floor:.3f}")
    chosen, passed_over = auto_choice(("sgd_epoch",))
    print(f"backend auto -> {chosen}" + "".join(
        f"\n  not {name}: {why}" for name, why in passed_over.items()))
    backends = [b for b in available_backends(("sgd_epoch",)) if b != "numpy"]
    print(f"\n{'backend':8s} {'test RMSE':>10s} {'fit s':>7s} {'M updates/s':>12s}")
    for name in backends:
        model = MF(backend=name, n_epochs=args.epochs, random_state=args.seed)
        if name == "numba":  # compile once outside the timing (first call JIT)
            MF(backend=name, n_epochs=1, random_state=0).fit(test)
        start = time.perf_counter()
        model.fit(train)
        elapsed = time.perf_counter() - start
        rmse = -model.score(test)
        rate = train.nnz * model.n_epochs_ / elapsed / 1e6
        print(f"{name:8s} {rmse:10.4f} {elapsed:7.2f} {rate:12.1f}")
    item_ids, _ = model.recommend([0], n=5)
    print(f"\ntop-5 for user 0 ({backends[-1]}): {item_ids[0].tolist()}")
    return 0


def _read_ratings(path: str, header: bool, sep: str | None):
    from fastrec.data.loaders import load_csv, load_movielens

    if header or sep is not None:
        return load_csv(path, user_col=0, item_col=1, rating_col=2, sep=sep or ",",
                        header=header)
    try:
        return load_movielens(path)
    except ValueError:
        return load_csv(path, user_col=0, item_col=1, rating_col=2)


def _cmd_fit(args) -> int:
    from fastrec import MF

    data = _read_ratings(args.ratings, args.header, args.sep)
    model = MF(n_factors=args.factors, n_epochs=args.epochs, learning_rate=args.lr,
               reg=args.reg, backend=args.backend, n_threads=args.threads,
               random_state=args.seed, verbose=args.verbose)
    model.fit(data)
    path = model.save(args.out)
    print(f"fitted MF on {data.nnz} ratings ({data.n_users} users, {data.n_items} items) with "
          f"{model.backend_} in {model.fit_time_:.2f}s; final train RMSE "
          f"{model.loss_curve_[-1]:.4f}; saved to {path}")
    return 0


def _cmd_recommend(args) -> int:
    from fastrec import MF

    model = MF.load(args.model)
    users = np.array([_as_id(u, model.user_ids_) for u in args.users])
    items, scores = model.recommend(users, n=args.n, filter_seen=not args.include_seen)
    for user, row, score_row in zip(args.users, items, scores, strict=True):
        pairs = ", ".join(f"{i} ({s:.2f})"
                          for i, s in zip(row.tolist(), score_row.tolist(), strict=True))
        print(f"{user}: {pairs}")
    return 0


def _cmd_serve(args) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"the service needs Starlette and uvicorn ({exc}): "
                           "pip install 'fastrec[serve]'") from exc
    from fastrec.serve import serve

    serve(args.model, host=args.host, port=args.port,
          log_level="info" if args.verbose else "warning")
    return 0


def _as_id(text: str, ids: np.ndarray):
    return int(text) if ids.dtype.kind in "iuf" else text


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported on one line (exit 2) like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastrec", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log progress; on an error also print the traceback")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("info", help="backends: availability, versions, threads, reasons")

    demo = sub.add_parser("demo", help="fit MF on built-in synthetic ratings on every backend")
    demo.add_argument("--users", type=int, default=10_000, help="synthetic users (default 10000)")
    demo.add_argument("--items", type=int, default=2_000, help="synthetic items (default 2000)")
    demo.add_argument("--ratings", type=int, default=500_000,
                      help="synthetic ratings (default 500000)")
    demo.add_argument("--epochs", type=int, default=30, help="SGD epochs (default 30)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    fit = sub.add_parser("fit", help="fit MF on a ratings file (MovieLens formats or CSV)")
    fit.add_argument("ratings", help="u.data, ratings.dat, ratings.csv or a user,item,rating "
                                     "file (columns by position)")
    fit.add_argument("--out", required=True, help="model file to write (.npz)")
    fit.add_argument("--header", action="store_true",
                     help="the first line of the file holds column names")
    fit.add_argument("--sep", default=None,
                     help="field separator of a user,item,rating file (default ',')")
    fit.add_argument("--factors", type=int, default=32, help="latent factors k (default 32)")
    fit.add_argument("--epochs", type=int, default=20, help="SGD epochs (default 20)")
    fit.add_argument("--lr", type=float, default=0.02, help="learning rate (default 0.02)")
    fit.add_argument("--reg", type=float, default=0.05,
                     help="L2 regularisation of factors and biases (default 0.05)")
    fit.add_argument("--backend", default="auto",
                     help="auto, cython, numba, cuda or numpy (default auto)")
    fit.add_argument("--threads", type=int, default=None,
                     help="threads (default: the cores this process may use)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    rec = sub.add_parser("recommend", help="top-N items for users of a saved MF model")
    rec.add_argument("model", help="model file written by 'fastrec fit'")
    rec.add_argument("users", nargs="+", help="user ids as in the ratings file")
    rec.add_argument("-n", type=int, default=10, help="items per user (default 10)")
    rec.add_argument("--include-seen", action="store_true", help="do not filter rated items")

    srv = sub.add_parser("serve", help="serve a saved model over HTTP (needs fastrec[serve])",
                         description="Endpoints /recommend, /predict, /similar, /next, /healthz "
                                     "and /admin/reload (also SIGHUP): see fastrec.serve.")
    srv.add_argument("model", help="model file written by save() or 'fastrec fit'")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    known = (ValueError, TypeError, OSError, RuntimeError, LookupError)
    return text if isinstance(exc, known) else f"{type(exc).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run a command; every error is one line on stderr and exit status 2 (``-v`` adds the
    traceback)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    handlers = {"info": _cmd_info, "demo": _cmd_demo, "fit": _cmd_fit,
                "recommend": _cmd_recommend, "serve": _cmd_serve}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print(f"fastrec {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line reports, never dumps, errors
        if args.verbose:
            traceback.print_exc()
        print(f"fastrec {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
