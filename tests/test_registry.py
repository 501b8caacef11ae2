"""Registry-wide tests: every registered entry meets its kind's common contract.

No test lists the entries: each iterates a registry (``LOSSES.names()``, ``for entry in
LOSSES``, every entry a component accepts), so a fork's new entry is covered the moment its
module registers it, and breaks no existing test. The contracts:

* losses (:func:`check_loss_contract`, :func:`check_loss_float32_range`): signature
  ``loss(pc, pr, rc, rr, *, beta, **entry.hparams)`` on arrays of per-pair sequence log-probs;
  the unreduced per-pair loss, same shape, float32, finite; jittable with ``beta`` and every
  extra hyperparameter *traced* (a Python branch on a hyperparameter fails here), jit ==
  no-jit; vmappable over the pairs and over swept hyperparameters; finite gradients that
  depend on the policy; values and gradients finite over the wide float32 range of
  ``tests/test_losses.py`` (log-probs in ``[-5000, 0]``, ``beta`` in ``[1e-4, 1e3]``) with the
  extra hyperparameters at every probe point of their declared domains
  (:func:`alignjax.domains.probe_points`: corners, interior points, joint corners);
* exact dynamics (:func:`check_exact_dynamic_contract`): init and two updates under jit and
  vmap over their declared hyperparameters, normalised and finite, no recompilation across
  hyperparameter values, bit-identical on 1 and 4 devices; and
  (:func:`check_exact_dynamic_probes`) ``PROBE_STEPS`` updates on small games at every probe
  point of the declared domains (one vmapped compile), finite and normalised at every step;
* experiments (:func:`check_experiment_runs`): two steps through the sweep runner with the
  defaults (tiny sizes) and with every entry each component accepts, validated first, metrics
  finite.

Each contract is shown to fail on a broken entry registered for the test and removed after
(the domain probes: on the broken fork fixtures, ``tests/test_fork_fixtures.py``). A failure
names the entry, the hyperparameter and its value.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax.experiment import Component, Experiment, Program
from alignjax.registry import DYNAMICS, EXPERIMENTS, LOSSES, SUITES, TRAINERS, Entry, Registry
from alignjax.sweep import make_grid, run_sweep

BATCH = (3, 4)


def _loss_inputs(shape=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(-4.0 * rng.random(shape) - 0.1, jnp.float32) for _ in range(4))


def _extra(entry, shape=BATCH):
    """Keyword arguments beyond the common signature that an entry's meta asks for."""
    if entry.meta.get("uses_lengths"):
        rng = np.random.default_rng(1)
        return {"chosen_lengths": jnp.asarray(rng.integers(1, 9, shape), jnp.float32),
                "rejected_lengths": jnp.asarray(rng.integers(1, 9, shape), jnp.float32)}
    return {}


def check_loss_contract(entry: Entry) -> None:
    """Assert the common loss contract for one registry entry (raises AssertionError)."""
    fn = entry.obj
    assert callable(fn), entry.name
    assert (fn.__doc__ or "").strip(), f"loss {entry.name!r} has no docstring"
    params = inspect.signature(fn).parameters
    assert "beta" in params and params["beta"].kind is inspect.Parameter.KEYWORD_ONLY, entry.name
    for k, v in entry.hparams.items():
        assert k in params, f"loss {entry.name!r}: default hparam {k!r} is not a parameter"
        assert isinstance(v, (int, float)) and np.isfinite(v), (entry.name, k, v)

    a = _loss_inputs()
    extra = _extra(entry)
    beta = jnp.float32(0.3)
    hp = {k: jnp.float32(v) for k, v in entry.hparams.items()}

    out = fn(*a, beta=beta, **hp, **extra)
    assert out.shape == BATCH, f"loss {entry.name!r} is not shape-preserving: {out.shape}"
    assert out.dtype == jnp.float32, (entry.name, out.dtype)
    assert bool(jnp.all(jnp.isfinite(out))), entry.name
    # Elementwise: no mixing across pairs (a reduced or batch-coupled loss fails here).
    first = fn(*(x[:1, :1] for x in a), beta=beta, **hp, **{k: v[:1, :1] for k, v in extra.items()})
    np.testing.assert_allclose(np.asarray(first), np.asarray(out[:1, :1]), rtol=1e-6, atol=1e-6)

    # Jittable with every continuous hyperparameter traced; jit == no-jit.
    jitted = jax.jit(lambda a, beta, hp, extra: fn(*a, beta=beta, **hp, **extra))(a, beta, hp, extra)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(out), rtol=1e-5, atol=1e-6)

    # vmap over the pair batch (per row) equals the batched call.
    rows = jax.vmap(lambda *z: fn(*z[:4], beta=beta, **hp, **dict(zip(extra, z[4:]))))(*a, *extra.values())
    np.testing.assert_allclose(np.asarray(rows), np.asarray(out), rtol=1e-5, atol=1e-6)

    # vmap over a sweep of (beta, hparams): each swept config equals its own call.
    betas = jnp.array([0.05, 0.3, 2.0], jnp.float32)
    hps = {k: jnp.asarray([v, v, 0.5 * v], jnp.float32) for k, v in entry.hparams.items()}
    swept = jax.vmap(lambda b, h: fn(*a, beta=b, **h, **extra))(betas, hps)
    assert swept.shape == (3, *BATCH)
    for i in range(3):
        one = fn(*a, beta=betas[i], **{k: v[i] for k, v in hps.items()}, **extra)
        np.testing.assert_allclose(np.asarray(swept[i]), np.asarray(one), rtol=1e-5, atol=1e-6)

    # Differentiable: finite gradients that depend on the policy's log-probs.
    def total(pc, pr, beta, hp):
        return jnp.sum(fn(pc, pr, a[2], a[3], beta=beta, **hp, **extra))

    g_pc, g_pr, g_beta, g_hp = jax.grad(total, argnums=(0, 1, 2, 3))(a[0], a[1], beta, hp)
    for g in (g_pc, g_pr, g_beta, *g_hp.values()):
        assert bool(jnp.all(jnp.isfinite(g))), entry.name
    assert g_pc.shape == BATCH and g_pr.shape == BATCH
    assert float(jnp.max(jnp.abs(g_pc)) + jnp.max(jnp.abs(g_pr))) > 0.0, f"loss {entry.name!r} ignores the policy"


# The range of tests/test_losses.py::test_float32_finite_values_and_gradients: four log-probs in
# [-5000, 0] (|margin| <= 1e4) and log10(beta) in [-4, 3]; the extra hyperparameters at every probe
# point of their declared domains (entry.probe_points(): corners, interior points and joint corners;
# a plain-float default is probed between 0 and the default, alignjax.domains). A loss that declares
# meta["min_log_ratio"] = m is tested where log pi - log pi_ref >= m on both responses.
LOGP_RANGE = (-5000.0, 0.0)
LOG10_BETA_RANGE = (-4.0, 3.0)


def check_loss_float32_range(entry: Entry, num_random: int = 512, seed: int = 0) -> None:
    """Assert finite float32 values and gradients (in every input, ``beta`` and every extra
    hyperparameter) over the wide range above: at every probe point of the entry's domains, every
    corner of the log-prob range (each log-prob 0, a float32 subnormal, -1 or -5000) with ``beta``
    at both ends; and ``num_random`` uniform draws (hyperparameters drawn in their probe range), in
    one call (losses are elementwise). A failure names the entry, the hyperparameters and their values."""
    from alignjax.domains import describe_point

    fn = entry.obj
    lo, hi = LOGP_RANGE
    edges = [0.0, -1e-45, -1.0, lo]
    corners = np.array(list(itertools.product(edges, repeat=4)))
    k = len(corners)
    points, varied = entry.probe_points()
    num_points = len(varied)
    rng = np.random.default_rng(seed)
    b_lo, b_hi = LOG10_BETA_RANGE
    logp = np.concatenate([np.tile(corners, (2 * num_points, 1)), rng.uniform(lo, hi, (num_random, 4))]).astype(np.float32)
    beta = np.concatenate([np.tile(np.repeat(10.0 ** np.array([b_lo, b_hi]), k), num_points),
                           10.0 ** rng.uniform(b_lo, b_hi, num_random)]).astype(np.float32)
    row_point = np.repeat(np.arange(num_points), 2 * k)
    drawn = {n: d.sample(rng, num_random) for n, d in entry.domains.items()}
    keep = np.all([c.holds(drawn) for c in entry.conditions], axis=0) if entry.conditions else True
    drawn = {n: np.where(keep, v, entry.domains[n].default) for n, v in drawn.items()}
    hp = {n: np.concatenate([points[n][row_point], drawn[n]]).astype(np.float32) for n in entry.hparams}
    extra = {}
    if entry.meta.get("uses_lengths"):
        extra = {n: rng.integers(1, 65, len(beta)).astype(np.float32) for n in ("chosen_lengths", "rejected_lengths")}
    floor = entry.meta.get("min_log_ratio")
    if floor is not None:  # a declared domain: log pi - log pi_ref >= floor on both responses
        logp[:, 2] = np.minimum(logp[:, 2], logp[:, 0] - floor)
        logp[:, 3] = np.minimum(logp[:, 3], logp[:, 1] - floor)
    args = tuple(jnp.asarray(logp[:, i]) for i in range(4))

    def total(pc, pr, rc, rr, beta, hp):
        return jnp.sum(fn(pc, pr, rc, rr, beta=beta, **hp, **extra))

    val = jax.jit(lambda a, beta, hp: fn(*a, beta=beta, **hp, **extra))(args, beta, hp)
    grads = jax.jit(jax.grad(total, argnums=(0, 1, 2, 3, 4, 5)))(*args, beta, hp)
    assert val.dtype == jnp.float32 and val.shape == beta.shape, (entry.name, val.dtype, val.shape)
    named = {"value": val, **dict(zip(("d/d pc", "d/d pr", "d/d rc", "d/d rr", "d/d beta"), grads[:5])),
             **{f"d/d {n}": g for n, g in grads[5].items()}}
    for what, x in named.items():
        bad = ~np.isfinite(np.asarray(x))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if i < len(row_point):
                where = describe_point(points, varied, int(row_point[i]))
            else:
                where = ", ".join(f"{n} = {float(v[i]):g}" for n, v in hp.items()) + " (a random draw)"
            raise AssertionError(f"loss {entry.name!r}: {what} = {np.asarray(x)[i]} at {where or 'its defaults'}; "
                                 f"beta = {beta[i]:g}, log-probs {logp[i].tolist()}")


def check_registered_loss(name: str) -> None:
    """Every loss check, for the entry registered as ``name``."""
    entry = LOSSES.entry(name)
    check_loss_contract(entry)
    check_loss_float32_range(entry)


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_loss_meets_the_contract(name):
    check_registered_loss(name)


def test_the_builtin_losses_are_registered():
    assert {"dpo", "ipo", "cdpo", "rdpo", "simpo", "rpo", "gamma_dpo"} <= set(LOSSES.names())


def test_a_loss_registered_by_a_fork_is_picked_up():
    name = "test_softplus_hinge"

    @LOSSES.register(name, hparams={"target": 1.0})
    def hinge(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
              *, beta, target):
        """Smooth hinge ``softplus(target - beta h)`` on the log-ratio margin ``h``."""
        h = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
        return jax.nn.softplus(target - beta * h)

    try:
        assert LOSSES.get(name) is hinge  # the decorator returns the function unchanged
        checked = []
        for entry in LOSSES:  # exactly what the parametrized test above does at collection
            check_loss_contract(entry)
            checked.append(entry.name)
        assert name in checked and checked == sorted(checked)
        assert LOSSES.entry(name).hparams == {"target": 1.0}
    finally:
        LOSSES._entries.pop(name, None)
    assert name not in LOSSES


def _reduced(pc, pr, rc, rr, *, beta):
    """Wrong: reduces over the batch."""
    return jnp.mean(-jax.nn.log_sigmoid(beta * ((pc - rc) - (pr - rr))))


def _python_branch(pc, pr, rc, rr, *, beta):
    """Wrong: a Python branch on a hyperparameter (cannot be traced, so cannot be swept)."""
    return (pc - pr) * (2.0 if beta > 1 else 1.0)


def _coupled(pc, pr, rc, rr, *, beta):
    """Wrong: subtracts the batch mean, so pairs interact."""
    h = (pc - rc) - (pr - rr)
    return -jax.nn.log_sigmoid(beta * (h - jnp.mean(h)))


def _no_policy(pc, pr, rc, rr, *, beta):
    """Wrong: ignores the policy."""
    return jnp.zeros_like(pc) * beta


@pytest.mark.parametrize("bad,error,match", [
    (_reduced, AssertionError, "not shape-preserving"),
    (_python_branch, jax.errors.TracerBoolConversionError, None),
    (_coupled, AssertionError, "Not equal to tolerance"),
    (_no_policy, AssertionError, "ignores the policy"),
], ids=lambda v: getattr(v, "__name__", ""))
def test_the_contract_check_rejects_broken_losses(bad, error, match):
    with pytest.raises(error, match=match):
        check_loss_contract(Entry(bad.__name__, bad))


def test_missing_hparam_default_is_rejected():
    def needs_tau(pc, pr, rc, rr, *, beta, tau):
        """Needs ``tau`` but its entry declares no default."""
        return tau * beta * (pc - pr)

    with pytest.raises(TypeError, match="tau"):
        check_loss_contract(Entry("needs_tau", needs_tau, {}))


def _overflows(pc, pr, rc, rr, *, beta):
    """Wrong in float32: ``exp(-beta h)`` overflows for ``beta h < -88`` (fine on small inputs)."""
    return jnp.exp(-beta * ((pc - rc) - (pr - rr)))


@pytest.mark.parametrize("bad,match", [(_reduced, "not shape-preserving"), (_overflows, "value = inf")],
                         ids=["reduces-over-the-batch", "overflows-in-float32"])
def test_a_registered_broken_loss_fails_the_registry_checks(bad, match):
    name = f"test_bad{bad.__name__}"
    LOSSES.register(name, bad)
    try:
        assert name in LOSSES.names()  # so the parametrized test above would run it
        with pytest.raises(AssertionError, match=match):
            check_registered_loss(name)
    finally:
        LOSSES._entries.pop(name)
    assert name not in LOSSES
    if bad is _overflows:  # only the wide-range check sees it
        check_loss_contract(Entry(name, bad))


# ----------------------------------------------------------------------------- registry behaviour
@pytest.mark.parametrize("registry", [LOSSES, DYNAMICS, EXPERIMENTS, SUITES], ids=lambda r: r.kind)
def test_unknown_name_raises_value_error_listing_known_names(registry):
    with pytest.raises(ValueError) as info:
        registry.get("surely_not_registered")
    msg = str(info.value)
    assert "surely_not_registered" in msg and "\n" not in msg
    for name in registry.names():
        assert name in msg
    with pytest.raises(ValueError):
        registry.entry("surely_not_registered")
    assert "surely_not_registered" not in registry


def test_duplicate_registration_raises_and_keeps_the_original():
    original = LOSSES.get("dpo")
    with pytest.raises(ValueError, match="dpo"):
        LOSSES.register("dpo", lambda *a, **k: None)
    with pytest.raises(ValueError, match="dpo"):
        LOSSES.register("dpo")(lambda *a, **k: None)
    assert LOSSES.get("dpo") is original


def test_fresh_registry_semantics():
    reg = Registry("widget")

    def f():
        """f."""

    def g():
        """g."""

    assert reg.register("b", f, hparams={"x": 1.0}, meta={"kind": "exact"}) is f
    defaults = {"y": 2.0}
    assert reg.register("a", hparams=defaults)(g) is g
    defaults["y"] = 99.0  # the registry keeps its own copy
    assert reg.entry("a").hparams == {"y": 2.0}
    assert reg.names() == ["a", "b"] and [e.name for e in reg] == ["a", "b"]
    assert reg.entry("b").meta == {"kind": "exact"} and reg.get("b") is f
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", f)
    reg.register("a", f, replace=True)
    assert reg.get("a") is f
    with pytest.raises(ValueError, match="unknown widget 'c'; known: a, b"):
        reg.get("c")


# ----------------------------------------------------------------------------- other registries
def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _exact_inputs(n=4, seed=0):
    from alignjax import prefs

    P = prefs.random_game(jax.random.key(seed), n)
    log_ref = jax.nn.log_softmax(jax.random.normal(jax.random.key(seed + 1), (n,)))
    return P, log_ref


def check_exact_dynamic_contract(entry: Entry) -> None:
    """Execute an exact dynamic: init and two updates under jit, under vmap over its declared
    hyperparameters (every one traced), with no retrace across values; raises AssertionError
    (or JAX's error for a Python branch on a traced hyperparameter)."""
    from alignjax.dynamics import check_hparams, exact_dynamics

    assert callable(entry.obj) and (entry.obj.__doc__ or "").strip(), f"{entry.name}: a documented factory"
    for k, v in entry.hparams.items():
        assert _is_number(v), f"dynamics {entry.name!r}: hparam {k!r} = {v!r} is not a finite number"
    check_hparams(entry.name, entry.hparams)  # the declared defaults satisfy the declared condition
    dyn = exact_dynamics(entry.name)
    assert callable(dyn.init) and callable(dyn.update), entry.name
    P, log_ref = _exact_inputs()
    traces = []

    def two_steps(hp):
        traces.append(1)
        s = dyn.init(log_ref, P, log_ref, hp)
        s = dyn.update(s, P, log_ref, hp)
        return dyn.update(s, P, log_ref, hp).log_pi

    hp0 = {k: jnp.float32(v) for k, v in entry.hparams.items()}
    eager = two_steps(hp0)
    jitted = jax.jit(two_steps)
    out = jitted(hp0)
    assert out.shape == log_ref.shape and bool(jnp.all(jnp.isfinite(out))), (entry.name, out)
    np.testing.assert_allclose(float(jax.nn.logsumexp(out)), 0.0, atol=1e-5, err_msg=f"{entry.name}: unnormalised")
    np.testing.assert_allclose(np.asarray(out), np.asarray(eager), rtol=1e-5, atol=1e-6)
    n_before = len(traces)
    jitted({k: v * 0.5 for k, v in hp0.items()})  # other values: the same compiled program
    assert len(traces) == n_before, f"{entry.name}: recompiled for new hyperparameter values"
    hps = {k: jnp.asarray([v, 0.5 * v, 0.25 * v], jnp.float32) for k, v in entry.hparams.items()}
    swept = jax.jit(jax.vmap(two_steps))(hps)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(swept[i]), np.asarray(jitted({k: v[i] for k, v in hps.items()})),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.nn.logsumexp(swept, axis=-1)), 0.0, atol=1e-5)


PROBE_STEPS = 300  # updates per probe point: a few hundred, where an unstable rule has blown up


def check_exact_dynamic_probes(entry: Entry, num_steps: int = PROBE_STEPS) -> None:
    """Run an exact dynamic ``num_steps`` updates from ``pi_ref`` on two small random games (random
    references), at every probe point of its declared domains (:meth:`~alignjax.registry.Entry.probe_points`:
    corners, interior points, joint corners projected onto its conditions), in one vmapped
    compile. Asserts at every step: ``log pi`` never NaN or ``+inf`` (``-inf``, probability 0, is
    allowed) and ``logsumexp(log pi) = 0`` (normalised). The AssertionError names the entry, the
    hyperparameters and their values, the step and the game."""
    from alignjax.domains import describe_point
    from alignjax.dynamics import exact_dynamics

    dyn = exact_dynamics(entry.name)
    points, varied = entry.probe_points()
    games = [_exact_inputs(4, seed) for seed in (0, 2)]
    P = jnp.stack([g[0] for g in games])
    log_ref = jnp.stack([g[1] for g in games])
    hp = {h: jnp.asarray(points[h], jnp.float32) for h in entry.hparams}

    def run(P, log_ref, hp):
        s = dyn.init(log_ref, P, log_ref, hp)

        def body(s, _):
            s = dyn.update(s, P, log_ref, hp)
            lp = s.log_pi
            norm = jax.nn.logsumexp(lp)
            return s, (jnp.any(jnp.isnan(lp) | (lp == jnp.inf)), ~(jnp.abs(norm) <= 1e-5))

        return jax.lax.scan(body, s, None, length=num_steps)[1]

    nonfinite, unnormalised = jax.jit(jax.vmap(jax.vmap(run, (None, None, 0)), (0, 0, None)))(P, log_ref, hp)
    for what, bad in (("log pi is NaN or +inf", nonfinite), ("pi is not normalised", unnormalised)):
        bad = np.asarray(bad)  # (games, points, steps)
        if bad.any():
            g, k, t = (int(i) for i in np.argwhere(bad)[0])
            raise AssertionError(f"dynamics {entry.name!r}: {what} after {t + 1} of {num_steps} updates at "
                                 f"{describe_point(points, varied, k)} (random game {g}, N = 4)")


def check_sampled_dynamic_probes(entry: Entry, num_steps: int = PROBE_STEPS) -> None:
    """Run a sampled (loss-driven) dynamic in its population mode on tabular logits, ``num_steps``
    updates on two small random games (random references), at every probe point of its declared
    domains (``learning_rate`` included), in one vmapped compile. Asserts the loss, the gradient norm
    and the logits stay finite at every step; the AssertionError names the entry, the point, the step
    and the game."""
    from alignjax.domains import describe_point
    from alignjax.policies import tabular

    n = 4
    dyn = DYNAMICS.get(entry.name)(tabular(1, n), mode="population")
    points, varied = entry.probe_points()
    games = [_exact_inputs(n, seed) for seed in (0, 2)]
    P = jnp.stack([g[0] for g in games])[:, None]          # (games, 1 prompt, N, N)
    log_ref = jnp.stack([g[1] for g in games])[:, None]    # (games, 1, N)
    hp = {h: jnp.asarray(points[h], jnp.float32) for h in entry.hparams}
    x = jnp.zeros((1,), jnp.int32)

    def run(P, log_ref, hp):
        def body(st, k):
            st, m = dyn.update(st, P, log_ref, x, hp, k)
            finite = jnp.isfinite(m["loss"]) & jnp.isfinite(m["grad_norm"])
            return st, ~(finite & jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(st.params)[0])))

        return jax.lax.scan(body, dyn.init(jax.random.key(0)), jax.random.split(jax.random.key(1), num_steps))[1]

    bad = np.asarray(jax.jit(jax.vmap(jax.vmap(run, (None, None, 0)), (0, 0, None)))(P, log_ref, hp))
    if bad.any():  # (games, points, steps)
        g, k, t = (int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(f"dynamics {entry.name!r}: the loss, its gradient or the parameters became non-finite "
                             f"after {t + 1} of {num_steps} updates at {describe_point(points, varied, k)} "
                             f"(random game {g}, N = {n}, tabular logits, population mode)")


@pytest.mark.parametrize("name", [e.name for e in DYNAMICS if e.meta.get("kind") == "sampled"])
def test_sampled_dynamic_stays_finite_over_its_domain(name):
    check_sampled_dynamic_probes(DYNAMICS.entry(name))


def check_trainer_probes(entry: Entry, num_steps: int = PROBE_STEPS) -> None:
    """Run a trainer (exact mode, tabular policy and reward on a 2-prompt x 4-response linear bandit with
    its population pairs, as the atlas builds it) ``num_steps`` updates at every probe point of its declared
    domains, in one vmapped compile; asserts the policy's log-probability table stays finite at every step.
    A trainer whose registry meta ``needs`` annotator ids gets two annotators (ids alternate over the pairs)."""
    from alignjax import rlhf
    from alignjax.data import bandits
    from alignjax.domains import describe_point
    from alignjax.maxmin import AnnotatedPairs
    from alignjax.policies import tabular
    from alignjax.reward_model import tabular_reward

    X, N = 2, 4
    b = bandits.linear_bandit(jax.random.key(0), X, N, 3)
    log_ref = bandits.reference_with_outside_mass(b.base_logits, jnp.ones((X, N), bool), 0.3)
    pairs = bandits.population_pairs(b.rewards, log_ref, jnp.ones((X, N), bool))
    annotated = "annotator" in (entry.meta.get("needs") or [])
    if annotated:
        pairs = AnnotatedPairs(*pairs, annotator=jnp.arange(pairs.x.shape[0]) % 2)
    problem = rlhf.Problem(jnp.arange(X), log_ref, pairs, b.features)
    policy = tabular(X, N)
    trainer = entry.obj(policy, reward_model=tabular_reward(X, N), mode="exact", num_samples=4, reward_steps=50,
                        **({"num_annotators": 2} if annotated else {}))
    points, varied = entry.probe_points()
    hp = {h: jnp.asarray(points[h], jnp.float32) for h in entry.hparams}

    def run(hp):
        return rlhf.run_trainer(trainer, policy, policy.init(jax.random.key(0)), problem, hp, jax.random.key(1),
                                num_steps=num_steps, log_every=1,
                                observe=lambda t: {"finite": jnp.all(jnp.isfinite(t))})[1]["finite"]

    ok = np.asarray(jax.jit(jax.vmap(run))(hp))  # (points, steps + 1)
    if not ok.all():
        k, t = (int(i) for i in np.argwhere(~ok)[0])
        raise AssertionError(f"trainer {entry.name!r}: the policy's log-probabilities became non-finite after {t} of "
                             f"{num_steps} updates at {describe_point(points, varied, k)} (linear bandit, X = {X}, "
                             f"N = {N}, tabular, exact mode)")


@pytest.mark.parametrize("name", [e.name for e in TRAINERS])
def test_trainer_stays_finite_over_its_domain(name):
    check_trainer_probes(TRAINERS.entry(name))


def _exact_names() -> list[str]:
    return [e.name for e in DYNAMICS if e.meta.get("kind") == "exact"]


@pytest.mark.parametrize("name", _exact_names())
def test_exact_dynamic_is_finite_and_normalised_over_its_domain(name):
    check_exact_dynamic_probes(DYNAMICS.entry(name))


@pytest.mark.parametrize("name", DYNAMICS.names())
def test_registered_dynamics_meet_the_contract(name):
    entry = DYNAMICS.entry(name)
    kind = entry.meta.get("kind")
    assert kind in ("exact", "sampled"), f"dynamics {name!r}: meta['kind'] = {kind!r}"
    if kind == "exact":
        check_exact_dynamic_contract(entry)
    else:  # a factory (policy, **options) -> (init, update); executed in tests/test_dynamics_sampled.py
        assert callable(entry.obj), name
        for k, v in entry.hparams.items():
            assert _is_number(v), f"dynamics {name!r}: hparam {k!r} = {v!r} is not a finite number"


def test_the_exact_dynamic_contract_can_fail():
    from alignjax.dynamics.base import ExactDynamics, ExactState

    def unnormalised():
        """Forgets the log-softmax."""
        return ExactDynamics(lambda lp0, P, lr, hp: ExactState(lp0, jnp.int32(0)),
                             lambda s, P, lr, hp: ExactState(s.log_pi + hp["eta"], s.t + 1))

    def branching():
        """Branches in Python on a hyperparameter."""
        def update(s, P, lr, hp):
            return ExactState(s.log_pi if hp["eta"] > 1 else jax.nn.log_softmax(2 * s.log_pi), s.t + 1)
        return ExactDynamics(lambda lp0, P, lr, hp: ExactState(lp0, jnp.int32(0)), update)

    for name, factory, err in (("bad-unnormalised", unnormalised, AssertionError),
                               ("bad-branch", branching, jax.errors.TracerBoolConversionError)):
        DYNAMICS.register(name, factory, hparams={"eta": 0.5}, meta={"kind": "exact"})
        try:
            with pytest.raises(err):
                check_exact_dynamic_contract(DYNAMICS.entry(name))
        finally:
            DYNAMICS._entries.pop(name)


def test_exact_dynamics_agree_on_one_and_four_devices():
    """simulate (the engine) gives bit-identical iterates on 1 and 4 devices for every exact dynamic."""
    import os
    import subprocess
    import sys

    script = (
        "import hashlib, importlib, sys, numpy as np, jax\n"
        "jax.config.update('jax_disable_most_optimizations', True)  # compile-bound: the same in both processes\n"
        "from alignjax import prefs\n"
        "from alignjax.dynamics import exact_names, simulate\n"
        "from alignjax.registry import DYNAMICS\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "if 'my-optimistic' not in DYNAMICS:  # issue 27's fork dynamic, a hyperparameter of its own, in the loop\n"
        "    importlib.import_module('fork_fixtures.my_optimistic')\n"
        "P = np.stack([np.asarray(prefs.random_game(jax.random.key(i), 4)) for i in range(3)])\n"
        "ref = np.full((3, 4), 0.25)\n"
        "for name in exact_names():\n"
        "    hp = {k: np.array([v, 0.5 * v])[:, None] for k, v in DYNAMICS.entry(name).hparams.items()}\n"
        "    out = np.asarray(simulate(name, P, ref, hparams=hp, num_steps=6, log_every=3))\n"
        "    assert np.isfinite(out).all() and np.allclose(out.sum(-1), 1, atol=1e-5), name  # finite, normalised\n"
        "    print(name, out.shape, hashlib.sha256(out.tobytes()).hexdigest())\n"
        "    one = np.asarray(simulate(name, P[0], ref[0], hparams=hp, num_steps=6, log_every=3))  # a shared game\n"
        "    print(name, one.shape, hashlib.sha256(one.tobytes()).hexdigest())\n")
    outs = []
    for devices in (1, 4):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout)
    assert outs[0] == outs[1] and outs[0].count("\n") >= 16 and "my-optimistic " in outs[0], outs


@pytest.mark.parametrize("name", EXPERIMENTS.names() or ["(none registered)"])
def test_registered_experiments_have_the_generic_shape(name):
    if name == "(none registered)":
        pytest.skip("no experiments registered")
    exp = EXPERIMENTS.get(name)
    assert callable(getattr(exp, "make_program", None)), name
    assert {"num_steps", "log_every"} <= set(exp.config), name
    for k, v in exp.hparams.items():
        assert _is_number(v), f"experiment {name!r}: hparam {k!r} = {v!r} is not a finite number"


# ----------------------------------------------------------------------------- experiments, executed
# Size settings shrunk wherever an experiment has them (setting names, not entry names), and a
# learning rate small enough for every loss (IPO's curvature differs from DPO's): two steps must
# stay finite with the defaults of every entry of every component.
TINY_CONFIG = {"num_prompts": 2, "num_responses": 4}
SMALL_HPARAMS = {"learning_rate": 1e-3}


def tiny_settings(exp: Experiment, choice: dict | None = None) -> tuple[dict, dict]:
    """The experiment's defaults with ``choice`` (component settings, e.g. ``{"loss": "ipo"}``),
    expanded (the chosen entries' settings added), at tiny sizes, for 2 steps logged at each."""
    config = {**exp.config, **(choice or {})}
    for k, v in TINY_CONFIG.items():
        if type(config.get(k)) is int and config[k] > v:
            config[k] = v
    config.update(num_steps=2, log_every=1)
    hparams = exp.hparams_for(config)
    for k, v in SMALL_HPARAMS.items():
        if k in hparams:
            hparams[k] = min(v, hparams[k])
    return config, hparams


@contextlib.contextmanager
def cheap_compiles():
    """XLA's backend optimisations off while compiling a two-step run (compile-bound: it cuts
    the compile time ~2x); the in-memory caches, whose keys ignore the flag, are cleared on the
    way out so that no later test reuses a program compiled here."""
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
        jax.clear_caches()


def check_experiment_runs(exp: Experiment, choice: dict | None = None) -> None:
    """Validate, then run two steps of ``exp`` (with ``choice``) through the sweep runner:
    one compile, every metric observed at steps 0, 1, 2 and finite."""
    config, hparams = tiny_settings(exp, choice)
    what = f"experiment {exp.name!r} with {choice or 'its defaults'}"
    grid = make_grid(hparams)
    exp.check(config, grid.hparams)  # the defaults pass the experiment's own validation
    with cheap_compiles():
        result = run_sweep(exp.make_program(config), grid, num_steps=2, log_every=1)
    assert result.metrics, f"{what}: no metric observed"
    assert list(result.steps) == [0, 1, 2] and result.num_compiles == {"run": 1}, (what, result.num_compiles)
    for k, v in result.metrics.items():
        assert v.shape[:3] == (1, 1, 3), (what, k, v.shape)
        assert np.all(np.isfinite(v)), f"{what}: metric {k!r} is not finite: {v.ravel()[:8].tolist()}"


def component_choices(exp: Experiment) -> list[dict]:
    """One ``{key: entry name}`` per entry each component accepts, other than the default."""
    return [{key: e.name} for key, component in exp.components.items()
            for e in component.entries() if e.name != exp.config[key]]


def check_experiment_contract(exp: Experiment) -> list:
    """:func:`check_experiment_runs` with the defaults and with every component choice."""
    checked = [None, *component_choices(exp)]
    for choice in checked:
        check_experiment_runs(exp, choice)
    return checked


def _experiment_cases():
    cases = []
    for entry in EXPERIMENTS:
        cases.append(pytest.param(entry.name, None, id=entry.name))
        cases += [pytest.param(entry.name, c, id=f"{entry.name}-" + ",".join(f"{k}={v}" for k, v in c.items()))
                  for c in component_choices(entry.obj)]
    return cases


@pytest.mark.parametrize("name,choice", _experiment_cases())
def test_registered_experiment_runs_two_steps(name, choice):
    check_experiment_runs(EXPERIMENTS.get(name), choice)


def test_every_component_entry_is_a_case():
    """Each experiment's components contribute every accepted entry (checked against the registries)."""
    cases = {(p.values[0], tuple(sorted((p.values[1] or {}).items()))) for p in _experiment_cases()}
    for entry in EXPERIMENTS:
        exp = entry.obj
        assert (exp.name, ()) in cases
        for key, component in exp.components.items():
            for e in component.registry:
                accepted = component.where is None or component.where(e)
                default = e.name == exp.config[key]
                assert ((exp.name, ((key, e.name),)) in cases) == (accepted and not default), (exp.name, key, e.name)


def _counter_program(rule):
    """A scalar that ``rule`` updates; observed as is."""
    def init(hp, key):
        return {"x": jnp.zeros(()) + hp["beta"]}

    def step(state, hp):
        return {"x": rule(state["x"], hp["beta"])}

    def observe(state, hp):
        return {"x": state["x"]}

    return Program(init, step, observe)


def test_the_experiment_contract_can_fail():
    """A registered experiment whose step gives NaN fails; so does an experiment whose default
    runs but one entry of its component does not (the contract tries every entry)."""
    rules = Registry("rule")
    rules.register("halve", lambda x, beta: 0.5 * x)
    rules.register("log-of-negative", lambda x, beta: jnp.log(-beta) + x)  # NaN for beta > 0
    bad = {
        "test-nan-step": Experiment("test-nan-step", "step returns NaN", {"num_steps": 4, "log_every": 2},
                                     {"beta": 0.1}, lambda c: _counter_program(lambda x, b: x * jnp.nan)),
        "test-bad-component": Experiment("test-bad-component", "one rule gives NaN",
                                          {"rule": "halve", "num_steps": 4, "log_every": 2}, {"beta": 0.1},
                                          lambda c: _counter_program(rules.get(c["rule"])),
                                          components={"rule": Component(rules)}),
    }
    for name, exp in bad.items():
        EXPERIMENTS.register(name, exp)
    try:
        ids = [p.id for p in _experiment_cases()]
        assert {"test-nan-step", "test-bad-component", "test-bad-component-rule=log-of-negative"} <= set(ids)
        with pytest.raises(AssertionError, match="'x' is not finite"):
            check_experiment_contract(EXPERIMENTS.get("test-nan-step"))
        check_experiment_runs(EXPERIMENTS.get("test-bad-component"))  # its default is fine...
        with pytest.raises(AssertionError, match="'rule': 'log-of-negative'"):  # ...one entry is not
            check_experiment_contract(EXPERIMENTS.get("test-bad-component"))
    finally:
        for name in bad:
            EXPERIMENTS._entries.pop(name)
    assert not set(bad) & set(EXPERIMENTS.names())


@pytest.mark.parametrize("name", SUITES.names() or ["(none registered)"])
def test_registered_suites_are_callable(name):
    if name == "(none registered)":
        pytest.skip("no suites registered")
    assert callable(SUITES.get(name)), name


def test_entry_names_follow_one_rule_per_kind():
    """Losses and game losses are snake_case, every other kind kebab-case (``alignjax.registry.NAMING``):
    every registered name follows its registry's rule, and a name that breaks it is refused at registration."""
    import re

    from alignjax.registry import GAME_LOSSES, NAMING, TRAINERS

    rules = {LOSSES: "snake_case", GAME_LOSSES: "snake_case", DYNAMICS: "kebab-case", TRAINERS: "kebab-case",
             EXPERIMENTS: "kebab-case", SUITES: "kebab-case"}
    for reg, rule in rules.items():
        assert reg.naming == rule
        for name in reg.names():
            assert re.fullmatch(NAMING[rule][0], name), (reg.kind, name)
    for reg, bad in ((LOSSES, "my-loss"), (LOSSES, "MyLoss"), (LOSSES, "_private"), (DYNAMICS, "my_dynamic"),
                     (TRAINERS, "my-trainer-"), (EXPERIMENTS, "my--experiment"), (GAME_LOSSES, "2nd_loss")):
        with pytest.raises(ValueError, match=re.escape(f"{reg.kind} name {bad!r} breaks the naming rule")):
            reg.register(bad, lambda *a, **k: None)
        assert bad not in reg
    Registry("widget").register("Any Name_at-all", lambda: None)  # a registry without a rule


def test_metadata_is_declared_fields_checked_at_registration():
    """Issue 24: no free-form metadata. Each kind's fields are declared (META_FIELDS); registration refuses
    an unknown key (the documented-but-absent ``needs_lengths`` of old) or a value of another type, in one line."""
    from alignjax.registry import META_FIELDS

    for reg in (LOSSES, DYNAMICS, TRAINERS, SUITES, EXPERIMENTS):
        for e in reg:
            assert set(e.meta) <= set(META_FIELDS[reg.kind]), (reg.kind, e.name, sorted(e.meta))
    with pytest.raises(ValueError, match=r"loss 'tmp_loss': unknown metadata field 'needs_lengths'; a loss declares"):
        LOSSES.register("tmp_loss", lambda *a, **k: 0.0, meta={"needs_lengths": True})
    with pytest.raises(ValueError, match=r"trainer 'tmp-trainer': metadata 'kind' must be 'offline' or 'online' or "):
        TRAINERS.register("tmp-trainer", lambda *a, **k: None, meta={"kind": "semi"})
    with pytest.raises(ValueError, match=r"metadata 'uses_lengths' must be bool; got 1"):
        LOSSES.register("tmp_loss", lambda *a, **k: 0.0, meta={"uses_lengths": 1})
    assert "tmp_loss" not in LOSSES and "tmp-trainer" not in TRAINERS
    fork = Registry("my-kind")  # a fork's own registry kind: its metadata is its own business
    fork.register("x", object(), meta={"anything": 1})


def test_the_docs_table_lists_every_metadata_field_of_every_kind():
    from pathlib import Path

    from alignjax.registry import META_FIELDS

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    table = text[text.index("## Spec fields of every kind"):text.index("## Names")]
    rows = {(r.split("|")[1].split("(")[0].strip(), r.split("|")[2].strip().strip("`"))
            for r in table.splitlines() if r.startswith("| ") and "`" in r.split("|")[2]}
    assert rows == {(k, f) for k, fields in META_FIELDS.items() for f in fields}
