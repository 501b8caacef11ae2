"""Issue 27's fork file, verbatim: optimistic mirror descent with its own hyperparameter ``lam``."""
import jax
import jax.numpy as jnp

from alignjax.dynamics.base import ExactDynamics, ExactState, payoff
from alignjax.registry import DYNAMICS


@DYNAMICS.register("my-optimistic", hparams={"beta": 0.1, "eta": 0.4, "lam": 0.5}, meta={"kind": "exact"})
def my_optimistic() -> ExactDynamics:
    """Optimistic mirror descent: payoff (1 + lam) A pi_t - lam A pi_{t-1}."""
    def init(log_pi0, P, log_pi_ref, hp):
        lp = jax.nn.log_softmax(jnp.asarray(log_pi0), axis=-1)
        return ExactState(lp, jnp.zeros(lp.shape[:-1], jnp.int32), payoff(P, lp))
    def update(s, P, log_pi_ref, hp):
        beta, eta, lam = (jnp.asarray(hp[k])[..., None] for k in ("beta", "eta", "lam"))
        pay = payoff(P, s.log_pi)
        g = (1.0 + lam) * pay - lam * s.extra
        new = jax.nn.log_softmax((1.0 - eta * beta) * s.log_pi + eta * beta * log_pi_ref + eta * g, axis=-1)
        return ExactState(new, s.t + 1, pay)
    return ExactDynamics(init, update)
