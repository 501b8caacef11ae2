"""Exact tabular (full-information) game dynamics. Filled in by the nash-games issue."""
