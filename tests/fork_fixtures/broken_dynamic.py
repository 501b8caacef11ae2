"""Deliberately broken (never registered in a normal run): issue 27's optimistic rule with a 0/0 at
``lam = 0``, inside its (inferred) probe range ``[0, 0.5]``. ``tests/test_fork_fixtures.py`` checks
that the dynamic probes name it."""
import jax
import jax.numpy as jnp

from alignjax.dynamics.base import ExactDynamics, ExactState, payoff
from alignjax.registry import DYNAMICS


@DYNAMICS.register("broken-optimistic", hparams={"beta": 0.1, "eta": 0.4, "lam": 0.5}, meta={"kind": "exact"})
def broken_optimistic() -> ExactDynamics:
    """Optimistic mirror descent whose payoff is scaled by ``lam / lam`` (the bug: NaN at ``lam = 0``)."""
    def init(log_pi0, P, log_pi_ref, hp):
        lp = jax.nn.log_softmax(jnp.asarray(log_pi0), axis=-1)
        return ExactState(lp, jnp.zeros(lp.shape[:-1], jnp.int32), payoff(P, lp))

    def update(s, P, log_pi_ref, hp):
        beta, eta, lam = (jnp.asarray(hp[k])[..., None] for k in ("beta", "eta", "lam"))
        pay = payoff(P, s.log_pi)
        g = ((1.0 + lam) * pay - lam * s.extra) * (lam / lam)
        new = jax.nn.log_softmax((1.0 - eta * beta) * s.log_pi + eta * beta * log_pi_ref + eta * g, axis=-1)
        return ExactState(new, s.t + 1, pay)

    return ExactDynamics(init, update)
