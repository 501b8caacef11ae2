"""HyPO and the offline trainers (alignjax.hypo)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import hypo, rlhf
from alignjax.data import bandits
from alignjax.metrics import coverage as cov
from alignjax.policies import tabular


def _problem(x=2, n=5, k_in=5, seed=0, population=True):
    b = bandits.linear_bandit(jax.random.key(seed), x, n, 3)
    s = bandits.support_mask(jax.random.key(seed + 1), x, n, k_in)
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.3)
    pairs = (bandits.population_pairs(b.rewards, lr, s) if population
             else bandits.sample_pairs(jax.random.key(3), b.rewards, lr, s, 64))
    return b, s, rlhf.Problem(jnp.arange(x), lr, pairs, b.features)


def _run(trainer, pol, prob, hp, steps=50):
    def go(key):
        st = trainer.init(pol.init(key), prob, hp, key)

        def body(s, k):
            return trainer.update(s, prob, hp, k)[0], None
        return jax.lax.scan(body, st, jax.random.split(key, steps))[0].params
    return jax.jit(go)(jax.random.key(0))


@pytest.mark.parametrize("mode,opt", [("exact", "adam"), ("sampled", "sgd"),
                                      pytest.param("sampled", "adam", marks=pytest.mark.slow)])
def test_hypo_with_lam_zero_is_dpo(mode, opt):
    _, _, prob = _problem(k_in=3, population=False)
    pol = tabular(2, 5, init_logits=prob.log_pi_ref)
    hp = {"beta": jnp.float32(0.2), "learning_rate": jnp.float32(0.05), "lam": jnp.float32(0.0)}
    a = _run(hypo.TRAINERS.get("hypo")(pol, mode=mode, num_samples=3, optimizer=opt), pol, prob, hp)
    b = _run(hypo.TRAINERS.get("dpo")(pol, optimizer=opt), pol, prob, hp)
    # identical graphs agree exactly; with Adam in sampled mode the two programs round the
    # (zero-sum) tabular gradient differently and Adam rescales that residue (see scaled_optimizer)
    tol = 1e-3 if (mode, opt) == ("sampled", "adam") else 1e-6
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    assert float(jnp.abs(a - prob.log_pi_ref).max()) > 0.02  # training moved the policy
    # and lam > 0 changes the result
    c = _run(hypo.TRAINERS.get("hypo")(pol, mode=mode, num_samples=3, optimizer=opt), pol, prob,
             {**hp, "lam": jnp.float32(1.0)})
    assert float(jnp.abs(c - b).max()) > 1e-3


def test_dpo_global_coverage_reaches_closed_form():
    b, _, prob = _problem(k_in=5)
    pol = tabular(2, 5, init_logits=prob.log_pi_ref)
    hp = {"beta": jnp.float32(0.5), "learning_rate": jnp.float32(0.05)}
    params = _run(hypo.TRAINERS.get("dpo")(pol), pol, prob, hp, steps=2000)
    target = jnp.exp(cov.optimal_policy(prob.log_pi_ref, b.rewards, 0.5))
    np.testing.assert_allclose(jnp.exp(pol.log_probs(params, prob.prompts)), target, atol=0.01)


def test_sampled_kl_gradient_is_unbiased():
    k1, k2 = jax.random.split(jax.random.key(4))
    params = jax.random.normal(k1, (2, 4))
    log_ref = jax.nn.log_softmax(jax.random.normal(k2, (2, 4)))
    pol = tabular(2, 4)
    f = lambda p, key, mode: hypo.kl_penalty(pol.log_probs(p, jnp.arange(2)), log_ref, key,  # noqa: E731
                                              mode=mode, num_samples=4)
    exact = jax.grad(f)(params, None, "exact")
    est = jax.jit(jax.vmap(lambda k: jax.grad(f)(params, k, "sampled")))(jax.random.split(jax.random.key(5), 20000))
    mean, se = est.mean(0), est.std(0) / np.sqrt(est.shape[0])
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-4)
    assert float(jnp.abs(exact).max()) > 0.05


def test_registry_is_uniform():
    kinds = {e.name: e.meta["kind"] for e in rlhf.TRAINERS}
    assert kinds == {"dpo": "offline", "ipo": "offline", "hypo": "hybrid", "rlhf": "online"}
    with pytest.raises(ValueError, match="nope"):
        hypo.hybrid(tabular(2, 3), loss="nope")
    with pytest.raises(ValueError, match="unknown trainer"):
        rlhf.TRAINERS.get("ppo")
