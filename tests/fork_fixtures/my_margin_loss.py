"""A fork's loss with a hyperparameter of its own, declared by a plain float (domain inferred)."""
import jax

from alignjax.losses import margin
from alignjax.registry import LOSSES


@LOSSES.register("my_margin_dpo", hparams={"delta": 0.5})
def my_margin_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                  *, beta, delta):
    """DPO with a target margin: ``l = -log sigmoid(beta h - delta)``, ``h`` the log-ratio margin
    ``log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)``; inputs ``(...)``, returns ``(...)``, unreduced.
    ``delta = 0`` is DPO."""
    h = margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)
    return -jax.nn.log_sigmoid(beta * h - delta)
