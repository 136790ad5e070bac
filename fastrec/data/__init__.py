"""Interaction data: the container with id maps, synthetic generators, loaders and splits."""

from fastrec.data.interactions import Interactions
from fastrec.data.loaders import DownloadError, download_movielens, load_csv, load_movielens
from fastrec.data.splits import leave_last_out, random_split
from fastrec.data.synthetic import synthetic_ratings

__all__ = [
    "DownloadError",
    "Interactions",
    "download_movielens",
    "leave_last_out",
    "load_csv",
    "load_movielens",
    "random_split",
    "synthetic_ratings",
]
