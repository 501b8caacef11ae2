"""Policy families behind one interface (:class:`Policy`): tabular, log-linear, MLP, and a
token-level sequence policy (a tiny causal transformer, :func:`sequence_policy`)."""

from alignjax.policies.base import Policy, log_prob_of, sample, sample_from_logps
from alignjax.policies.loglinear import loglinear
from alignjax.policies.mlp import MLP, mlp
from alignjax.policies.sequence import EOS, SequencePolicy, response_mask, sequence_policy
from alignjax.policies.tabular import tabular

__all__ = ["Policy", "sample", "sample_from_logps", "log_prob_of", "tabular", "loglinear", "mlp", "MLP",
           "EOS", "SequencePolicy", "sequence_policy", "response_mask"]
