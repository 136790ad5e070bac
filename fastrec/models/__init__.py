"""Estimators: one class per algorithm; the backend is a parameter, never a different class."""

from fastrec.models.gru4rec import GRU4Rec
from fastrec.models.mf import MF
from fastrec.models.ncf import GMF, MLP, JointNeuMF, NeuMF
from fastrec.models.nmf import NMF
from fastrec.models.svdpp import SVDpp

__all__ = ["GMF", "GRU4Rec", "JointNeuMF", "MF", "MLP", "NMF", "NeuMF", "SVDpp"]
