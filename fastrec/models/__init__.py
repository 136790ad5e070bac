"""Estimators: one class per algorithm; the backend is a parameter, never a different class."""

from fastrec.models.mf import MF
from fastrec.models.ncf import GMF, MLP, NeuMF

__all__ = ["GMF", "MF", "MLP", "NeuMF"]
