"""Interaction data: the container with id maps, synthetic generators, loaders and splits."""

from fastrec.data.interactions import Interactions
from fastrec.data.synthetic import synthetic_ratings

__all__ = ["Interactions", "synthetic_ratings"]
