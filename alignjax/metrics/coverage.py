"""Coverage metrics (Song et al. 2024). Filled in by the coverage issue."""

__all__: list[str] = []
