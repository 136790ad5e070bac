"""Epoch loop helpers shared by the iterative models: learning-rate schedules, divergence
detection with rollback, early stopping and the progress bar."""

from __future__ import annotations

import math

import numpy as np
from tqdm.auto import tqdm

LR_SCHEDULES = ("constant", "inverse", "exponential")


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


class DivergenceError(FloatingPointError):
    """Training diverged; the message names the parameter to lower. The model keeps the last
    good state."""


def diverged(loss: float, reference: float) -> bool:
    """A loss that is not finite, or grew more than tenfold over ``reference``, diverged."""
    return not math.isfinite(loss) or loss > 10.0 * reference


class EarlyStopping:
    """Stop after ``patience`` epochs without a relative improvement of ``tol`` on a
    lower-is-better metric; remembers the best epoch so the caller can restore it."""

    def __init__(self, patience: int, tol: float):
        self.patience, self.tol = patience, tol
        self.best, self.best_epoch, self.bad_epochs = math.inf, -1, 0

    def update(self, value: float, epoch: int) -> tuple[bool, bool]:
        """Returns ``(improved, stop)``."""
        if value < self.best * (1.0 - self.tol) or self.best_epoch < 0:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True, False
        self.bad_epochs += 1
        return False, self.bad_epochs >= self.patience


def progress(total: int, verbose: bool, desc: str):
    return tqdm(total=total, disable=not verbose, desc=desc, unit="epoch", leave=False)


def snapshot(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in arrays.items()}


def restore(arrays: dict[str, np.ndarray], saved: dict[str, np.ndarray]) -> None:
    """Copy a :func:`snapshot` back into the live arrays, in place."""
    for name, value in saved.items():
        arrays[name][...] = value
