"""Deliberately broken (never registered in a normal run): NaN for ``delta > 1``, inside its declared
domain ``[0, 2]``. ``tests/test_fork_fixtures.py`` checks that the loss probes name it."""
import jax
import jax.numpy as jnp

from alignjax.domains import Domain
from alignjax.losses import margin
from alignjax.registry import LOSSES


@LOSSES.register("broken_nan_above_one", hparams={"delta": Domain(0.5, 0.0, 2.0)})
def broken_nan_above_one(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                         reference_rejected_logps, *, beta, delta):
    """``l = softplus(delta - beta h)``, plus NaN wherever ``delta > 1`` (the bug)."""
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return jax.nn.softplus(delta - beta * h) + jnp.where(delta > 1.0, jnp.nan, 0.0)
