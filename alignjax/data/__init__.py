"""Synthetic data generators (seeded, generated in code; no downloads).

Import the submodules directly, e.g. ``from alignjax.data import bandits``.
"""
