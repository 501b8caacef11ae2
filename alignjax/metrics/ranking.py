"""Ranking-accuracy metrics (Chen et al. 2024). Filled in by the ranking-accuracy issue."""

__all__: list[str] = []
