"""Interaction data: the container with id maps, synthetic generators, loaders and splits."""

from fastrec.data.interactions import Interactions
from fastrec.data.loaders import DownloadError, download_movielens, load_csv, load_movielens
from fastrec.data.sessions import (
    Sessions,
    SessionSplit,
    load_diginetica,
    load_sasrec_sequences,
    split_last_days,
    split_last_item,
    synthetic_sessions,
)
from fastrec.data.splits import leave_last_out, random_split
from fastrec.data.synthetic import synthetic_ratings

__all__ = [
    "DownloadError",
    "Interactions",
    "SessionSplit",
    "Sessions",
    "download_movielens",
    "leave_last_out",
    "load_csv",
    "load_diginetica",
    "load_movielens",
    "load_sasrec_sequences",
    "random_split",
    "split_last_days",
    "split_last_item",
    "synthetic_ratings",
    "synthetic_sessions",
]
