"""fastrec on a Dask cluster: ``fastrec.dask.MF`` (distributed stratified SGD) and
``fastrec.dask.NMF`` (map-reduce multiplicative updates), fitted from Dask collections without
collecting the ratings on the client. Needs the ``dask`` extra: ``pip install fastrec[dask]``.
"""

from fastrec.dask._data import WorkerLostError
from fastrec.dask._mf import MF
from fastrec.dask._nmf import NMF

__all__ = ["MF", "NMF", "WorkerLostError"]
