"""Evaluation metrics: ranking accuracy (Chen et al. 2024) and coverage (Song et al. 2024)."""

from alignjax.metrics.coverage import *  # noqa: F401,F403
from alignjax.metrics.ranking import *  # noqa: F401,F403
