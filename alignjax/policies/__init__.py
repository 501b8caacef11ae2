"""Policy families behind one interface (:class:`Policy`): tabular, log-linear, MLP.

(The token-level sequence policy lives in :mod:`alignjax.policies.sequence`.)
"""

from alignjax.policies.base import Policy, log_prob_of, sample
from alignjax.policies.loglinear import loglinear
from alignjax.policies.mlp import MLP, mlp
from alignjax.policies.tabular import tabular

__all__ = ["Policy", "sample", "log_prob_of", "tabular", "loglinear", "mlp", "MLP"]
