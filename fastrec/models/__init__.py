"""Estimators: one class per algorithm; the backend is a parameter, never a different class."""

from fastrec.models.gru4rec import GRU4Rec
from fastrec.models.mf import MF

__all__ = ["GRU4Rec", "MF"]
