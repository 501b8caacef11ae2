"""Unbiasedness of the sampled SPPO, Bernoulli-INPO, SPO, online DPO, XPO and VPO steps, in the default run.

The mean of the stochastic tabular SGD step over a few thousand keys (one compiled ``vmap``)
must equal the exact population step, which is written here in float64 numpy from the losses'
definitions (not computed by the library). The anchor ``pi_t`` differs from the current policy
(``round_length=2``, second update of a round), so sampling from the wrong policy is visible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.prefs import random_game
from alignjax.policies import tabular
from alignjax.registry import DYNAMICS

N, B = 4, 2
HP = {"beta": 0.3, "eta": 0.7, "alpha": 0.4, "learning_rate": 1.0}
NAMES = ["sampled-sppo", "sampled-inpo", "sampled-spo", "sampled-online-dpo", "sampled-xpo", "sampled-vpo"]
NUM_KEYS, NUM_SAMPLES = 4000, 8


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _np_population_grad(name, theta, anchor, logp_ref, P, beta, eta, alpha):
    """d/d theta of the population loss (mean over the B prompts), tabular logits, float64.

    With w = pi_t (anchor), pi = softmax(theta), A = P @ w - 1/2 (so w @ A = 0 since w P w = 1/2):

    * SPPO, L = 2 sum_y w_y r_y^2 with r = log pi - log w - eta A:   dL/dlog pi = 4 w r.
    * INPO, L = sum_{y,y'} w_y w_y' [P (g - eta/2)^2 + (1-P) (g + eta/2)^2], g(y,y') = f_y - f_y',
      f = log pi - eta beta log pi_ref - (1 - eta beta) log w. dL/dg = w w' (2 g + eta (1 - 2P)); summing
      the two slots (g and 1 - 2P are antisymmetric): dL/df = 4 w (f - w @ f - eta A).

    The pair losses below use l(z) = -log sigmoid(z), l'(z) = -sigmoid(-z); for a pair (y, y') with label
    P the derivative of P l(beta h) + (1-P) l(-beta h) in h is beta (S - P), S = sigmoid(beta h), and
    S - P is antisymmetric; rho = pi_ref, the weights are taken at the current policy pi:

    * SPO (Swamy et al. 2024, arXiv 2401.04056, Alg. 1 with a KL-proximal soft policy iteration step):
      L = -sum_y pi_y (P @ pi - 1/2)_y + (1/eta) KL(pi || w), reward stop-gradient at pi:
      dL/dlog pi = -pi (P @ pi - 1/2) + pi (log pi - log w + 1)/eta.
    * Online DPO (Guo et al. 2024, arXiv 2402.04792, Alg. 1; DPO loss of Rafailov et al. 2023, Eq. 7 on
      pairs y, y' ~ pi labelled by P): L = sum pi_y pi_y' [P l(beta h) + (1-P) l(-beta h)],
      dL/dDelta = 2 beta pi ((S - P) @ pi).
    * XPO (Xie et al. 2024, arXiv 2405.21046, Alg. 1 line 6, pair (y ~ pi, yt ~ pi_ref), bonus
      alpha log pi(yt)): dL/dDelta = beta [pi ((S - P) @ rho) + rho ((S - P) @ pi)] + alpha rho.
    * VPO (Cen et al. 2024, arXiv 2405.19320, online: MLE - alpha J*(r), J* = -beta E_{pi_cal} log pi/pi_ref,
      pi_cal = pi_ref): online DPO's + alpha beta rho.
    Chain rule through log_softmax: grad_theta = G - pi * sum(G) for G = dL/dlog pi (= dL/dDelta).
    """
    pi, w = _softmax(theta), _softmax(anchor)
    logpi, logw = np.log(pi), np.log(w)
    A = np.einsum("bij,bj->bi", P, w) - 0.5
    rho = np.exp(logp_ref)
    delta = logpi - logp_ref
    SmP = _np_sigmoid(beta * (delta[:, :, None] - delta[:, None, :])) - P
    dpo = 2 * beta * pi * np.einsum("bij,bj->bi", SmP, pi)
    if name == "sampled-sppo":
        G = 4 * w * (logpi - logw - eta * A)
    elif name == "sampled-inpo":
        f = logpi - eta * beta * logp_ref - (1 - eta * beta) * logw
        G = 4 * w * (f - (w * f).sum(-1, keepdims=True) - eta * A)
    elif name == "sampled-spo":
        G = -pi * (np.einsum("bij,bj->bi", P, pi) - 0.5) + pi * (logpi - logw + 1.0) / eta
    elif name == "sampled-online-dpo":
        G = dpo
    elif name == "sampled-xpo":
        G = beta * (pi * np.einsum("bij,bj->bi", SmP, rho) + rho * np.einsum("bij,bj->bi", SmP, pi)) + alpha * rho
    elif name == "sampled-vpo":
        G = dpo + alpha * beta * rho
    else:
        raise ValueError(name)
    return (G - pi * G.sum(-1, keepdims=True)) / B


@pytest.mark.parametrize("name", NAMES)
def test_sampled_step_mean_equals_exact_population_step(name):
    rng = np.random.default_rng(1)
    P = np.stack([np.asarray(random_game(k, N), np.float64) for k in jax.random.split(jax.random.key(3), B)])
    logp_ref = np.log(_softmax(rng.normal(size=(B, N))))
    theta, anchor = rng.normal(size=(B, N)), rng.normal(size=(B, N))
    exact = -HP["learning_rate"] * _np_population_grad(name, theta, anchor, logp_ref, P, HP["beta"], HP["eta"],
                                                       HP["alpha"])

    factory = DYNAMICS.get(name)
    with jax.enable_x64(True):
        pol, x = tabular(B, N), jnp.arange(B)
        args = (jnp.asarray(P), jnp.asarray(logp_ref), x, HP)
        # second update of a round of 2: the anchor pi_t stays `anchor` while theta != anchor
        pop = factory(pol, mode="population", round_length=2)
        st0 = pop.init(jax.random.key(0), jnp.asarray(theta))._replace(anchor=jnp.asarray(anchor), step=jnp.int32(1))
        np.testing.assert_allclose(pop.update(st0, *args, jax.random.key(0))[0].params - theta, exact,
                                   rtol=0, atol=1e-12)  # float64, O(N^2) operations on O(1) numbers
        smp = factory(pol, mode="sampled", num_samples=NUM_SAMPLES, bernoulli=True, round_length=2)
        steps = jax.jit(jax.vmap(lambda k: smp.update(st0, *args, k)[0].params - st0.params))(
            jax.random.split(jax.random.key(7), NUM_KEYS))
        steps = np.asarray(steps)
    mean, se = steps.mean(0), steps.std(0, ddof=1) / np.sqrt(NUM_KEYS)
    # power: some coordinate has |exact| > 10 SE, so a zero-mean step (e.g. one sample used twice) would
    # show |mean - exact| > 10 SE - 5 SE (its own fluctuation) = 5 SE and fail
    assert np.all(se > 0) and np.max(np.abs(exact) / se) > 10
    # 5 SE: the mean of 4000 i.i.d. bounded steps is normal to a good approximation (CLT), and
    # P(|Z| > 5) = 5.7e-7 per coordinate (B N = 8 coordinates: family false-alarm rate ~5e-6); the SE
    # itself is estimated to 1/sqrt(2 * 4000) = 1.1% relative, which moves the bound by < 0.06 SE.
    np.testing.assert_array_less(np.abs(mean - exact), 5 * se)
