"""Interaction data: the container with id maps, synthetic generators, loaders and splits."""

from fastrec.data.interactions import Interactions
from fastrec.data.sessions import (
    Sessions,
    SessionSplit,
    load_diginetica,
    load_sasrec_sequences,
    split_last_days,
    split_last_item,
    synthetic_sessions,
)
from fastrec.data.synthetic import synthetic_ratings

__all__ = [
    "Interactions",
    "SessionSplit",
    "Sessions",
    "load_diginetica",
    "load_sasrec_sequences",
    "split_last_days",
    "split_last_item",
    "synthetic_ratings",
    "synthetic_sessions",
]
