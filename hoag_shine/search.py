"""Grid and random search (they live in :mod:`hoag_shine.outer`; kept importable here)."""

from .outer.search import grid_search, random_search, search

__all__ = ["grid_search", "random_search", "search"]
