"""Preference-game dynamics: exact tabular updates and sampled (loss-driven) algorithms."""

from alignjax.dynamics import exact, sampled  # noqa: F401  (importing registers the algorithms)
