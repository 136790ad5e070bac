"""The one training loop of every iterative estimator.

A model family supplies a small :class:`Trainer` (the live training arrays, one epoch on a
backend, a validation score); :func:`fit_epochs` owns everything around it: snapshots and
rollback on divergence, early stopping that keeps the best epoch's weights, user callbacks that
may stop the fit, the tqdm progress bar, log lines and the training clock. Estimators run it on
a scratch copy of themselves (see ``Estimator._transaction``), so a fit that raises leaves the
fitted model as it was.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from fastrec._array import array_module
from fastrec.exceptions import DivergenceError

log = logging.getLogger("fastrec")

LR_SCHEDULES = ("constant", "inverse", "exponential")

Callback = Callable[[int, dict], object]
"""``callback(epoch, metrics)`` after each epoch (``epoch`` counts from 1; ``metrics`` holds
``loss`` and, with validation data, ``validation``); a truthy return value stops the fit."""


def learning_rate_at(schedule: str, base: float, decay: float, epoch: int) -> float:
    """``constant``: base; ``inverse``: base / (1 + decay * epoch); ``exponential``:
    base * (1 - decay) ** epoch."""
    if schedule == "constant":
        return base
    if schedule == "inverse":
        return base / (1.0 + decay * epoch)
    if schedule == "exponential":
        return base * (1.0 - decay) ** epoch
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")


class Trainer:
    """What a family plugs into :func:`fit_epochs`.

    ``name``: shown in the progress bar and messages (e.g. ``"MF[cython]"``).
    ``loss_label``: what ``run_epoch`` returns (e.g. ``"train RMSE"``).
    ``hint``: what to change when training diverges for a reason other than the input's scale.
    ``baseline_loss``: the loss of the untrained model where the family knows it (e.g. ln 2 for
        a logistic loss at near-zero logits), so a first epoch that already explodes is caught.
    ``check_every``: epochs between snapshots and finiteness checks (1 for SGD-style training;
        NMF checks every 10 multiplicative updates, where copying the factors would cost a
        third of an update).
    """

    name = "model"
    loss_label = "loss"
    check_every = 1
    hint = "learning_rate is too large for this data; lower it"
    baseline_loss: float | None = None

    def state(self) -> dict:
        """The live arrays training updates in place (parameters and optimiser state)."""
        raise NotImplementedError

    def run_epoch(self, epoch: int) -> float | None:
        """Run epoch ``epoch`` (from 0); return its training loss, or None when the family does
        not measure it this epoch."""
        raise NotImplementedError

    def validation(self) -> tuple[float, str, bool] | None:
        """``(value, label, lower_is_better)`` of the validation metric, or None without
        validation data."""
        return None

    def input_scale(self) -> float | None:
        """Largest magnitude of the training targets (asked only after a divergence), to tell
        an input whose squares overflow from a learning rate that is too large."""
        return None

    def converged(self, epoch: int, loss: float | None) -> bool:
        """A family's own stopping test (NMF's relative-drop test); False by default."""
        return False


@dataclass
class History:
    """What the loop measured: the estimators copy it into their fitted attributes."""

    loss_curve: list = field(default_factory=list)
    validation_curve: list = field(default_factory=list)
    n_epochs: int = 0
    best_epoch: int | None = None
    train_seconds: float = 0.0


def fit_epochs(trainer: Trainer, n_epochs: int, *, early_stopping: bool = False,
               n_iter_no_change: int = 3, tol: float = 1e-4,
               callbacks: Iterable[Callback] | None = None, verbose: bool = False,
               history: History | None = None) -> History:
    """Train for at most ``n_epochs`` epochs.

    Divergence (a non-finite loss or state, or a loss ten times the lowest so far) restores the
    state of the last check before it and raises :class:`DivergenceError` naming the cause;
    ``history`` (if given) then holds the epochs that ran. With ``early_stopping`` the fit stops
    after ``n_iter_no_change`` epochs without a relative validation improvement of ``tol`` and
    the best epoch's state is restored.
    """
    history = History() if history is None else history
    callbacks = list(callbacks or ())
    stopper = _EarlyStopping(int(n_iter_no_change), float(tol))
    best_state, good = None, None
    lowest = math.inf if trainer.baseline_loss is None else float(trainer.baseline_loss)
    start = time.perf_counter()
    try:
        with tqdm(total=n_epochs, disable=not verbose, desc=trainer.name, unit="epoch",
                  leave=False) as bar:
            for epoch in range(n_epochs):
                if epoch % trainer.check_every == 0:
                    good = _snapshot(trainer.state())
                loss = trainer.run_epoch(epoch)
                window_end = (epoch + 1) % trainer.check_every == 0 or epoch == n_epochs - 1
                if loss is not None or window_end:
                    if loss is not None:
                        loss = float(loss)
                    cause = _divergence(loss, lowest, trainer.state())
                    if cause:
                        _restore(trainer.state(), good)
                        history.n_epochs = epoch - epoch % trainer.check_every
                        raise DivergenceError(_message(trainer, epoch, loss, cause))
                if loss is not None:
                    lowest = min(lowest, loss)
                    history.loss_curve.append(loss)
                history.n_epochs = epoch + 1
                metrics = {} if loss is None else {"loss": loss}
                stop = trainer.converged(epoch, loss)
                scored = trainer.validation()
                if scored is not None:
                    value, label, lower_is_better = scored
                    history.validation_curve.append(value)
                    metrics["validation"] = value
                    if early_stopping:
                        improved, patience_out = stopper.update(
                            value if lower_is_better else -value, epoch)
                        if improved:
                            best_state, history.best_epoch = _snapshot(trainer.state()), epoch
                        if patience_out:
                            log.info("%s: early stop after epoch %d (best %d, validation %s "
                                     "%.6g)", trainer.name, epoch + 1, stopper.best_epoch + 1,
                                     label, abs(stopper.best))
                            stop = True
                for callback in callbacks:
                    stop = bool(callback(epoch + 1, dict(metrics))) or stop
                text = ", ".join(f"{k} {v:.6g}" for k, v in metrics.items())
                if verbose and text:
                    log.info("%s epoch %d: %s", trainer.name, epoch + 1, text)
                bar.set_postfix_str(text)
                bar.update(1)
                if stop:
                    break
        if best_state is not None:
            _restore(trainer.state(), best_state)
    finally:
        history.train_seconds = time.perf_counter() - start
    return history


class _EarlyStopping:
    """Stop after ``patience`` epochs without a relative improvement of ``tol`` on a
    lower-is-better metric."""

    def __init__(self, patience: int, tol: float):
        self.patience, self.tol = patience, tol
        self.best, self.best_epoch, self.bad_epochs = math.inf, -1, 0

    def update(self, value: float, epoch: int) -> tuple[bool, bool]:
        """Returns ``(improved, stop)``."""
        threshold = self.best - self.tol * abs(self.best)
        if self.best_epoch < 0 or value < threshold:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True, False
        self.bad_epochs += 1
        return False, self.bad_epochs >= self.patience


def _divergence(loss: float | None, lowest: float, state: dict) -> str | None:
    if loss is not None and not math.isfinite(loss):
        return "non-finite loss"
    if loss is not None and loss > 10.0 * lowest and lowest > 0:
        return "exploding loss"
    for name, value in state.items():
        if not bool(array_module(value).isfinite(value).all()):
            return f"non-finite values in {name}"
    return None


def _message(trainer: Trainer, epoch: int, loss: float | None, cause: str) -> str:
    shown = "not measured" if loss is None else f"{loss:.3g}"
    where = f"{trainer.name} diverged in epoch {epoch + 1} ({cause}; {trainer.loss_label} {shown})"
    scale = trainer.input_scale()
    dtype = next(iter(trainer.state().values())).dtype
    if scale is not None and (not math.isfinite(scale)
                              or scale > math.sqrt(float(np.finfo(dtype).max)) * 1e-3):
        return (f"{where}: the input reaches {scale:.3g}, so its squares overflow {dtype}; "
                "rescale the input (or use dtype='float64'). The model keeps its state from "
                "before the divergence.")
    return f"{where}: {trainer.hint}. The model keeps its state from before the divergence."


def _snapshot(arrays: dict) -> dict:
    return {name: value.copy() for name, value in arrays.items()}


def _restore(arrays: dict, saved: dict | None) -> None:
    """Copy a snapshot back into the live arrays, in place."""
    for name, value in (saved or {}).items():
        arrays[name][...] = value
