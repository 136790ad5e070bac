"""The errors fastrec raises on purpose (all importable from ``fastrec``)."""

from __future__ import annotations


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit`` (scikit-learn's class of the same name derives from
    the same two bases, so code catching either keeps working)."""


class DivergenceError(FloatingPointError):
    """Training diverged. The message names the cause (a learning rate too large for the data,
    or input values so large that their squares overflow); the model keeps the last good epoch
    of the fit that diverged."""


class ModelFileError(ValueError):
    """The file is not a fastrec model this version can read, or its arrays are inconsistent."""
