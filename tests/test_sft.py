"""Preference fine-tuning of a sequence policy (alignjax.sft): offline epochs and online IPO.

Exact checks on an enumerable policy (vocabulary 3, prompt length 1, response length 2: the
7 distinct responses EOS, a EOS, a b with a, b in {1, 2}), float64 parameters under x64:

* one step of each trainer is ``theta - lr * grad`` of a loss written here;
* the online-IPO update is unbiased for the exact expectation over ``y1, y2 ~ pi`` (enumerated);
* with ties (P = 1/2) online IPO stays at ``pi_ref`` and returns to it from a perturbed start;
* the offline trainer visits every pair exactly once per epoch (instrumented policy);
* each trainer is its one-update function (``sft_step``, ``preference_step``,
  ``online_ipo_step``) applied in a loop with the documented keys (the engine's program form).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignjax.policies.sequence import SequencePolicy, response_mask, sequence_policy
from alignjax.sft import (logged_step_keys, make_online_ipo_train, make_preference_train, make_sft_train,
                          online_ipo_step, preference_step, sft_step)

V, P, L = 3, 1, 2
POL = sequence_policy(V, P, L, dim=8, depth=1, heads=2)
YS = jnp.array([[0, 0], [1, 0], [2, 0], [1, 1], [1, 2], [2, 1], [2, 2]])   # every distinct response
MS = response_mask(YS)
PROMPTS = jnp.array([[1], [2]])
BETA = 0.7


@jax.jit
def _make_params(key, key2, perturb):
    p = jax.tree.map(lambda a: a.astype(jnp.float64), POL.init(key))
    leaves, tdef = jax.tree.flatten(p)
    ks = jax.random.split(key2, len(leaves))
    return jax.tree.unflatten(tdef, [a + perturb * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, ks)])


def _params(seed, perturb=0.0):
    """float64 parameters (call under x64): ``init(seed)`` plus ``perturb * N(0, 1)`` on every leaf."""
    return _make_params(jax.random.key(seed), jax.random.key(seed + 100), perturb)


def _flat(tree):
    return np.concatenate([np.asarray(a).ravel() for a in jax.tree.leaves(tree)])


def _floor(tree, atol):
    """Per-coordinate rounding floor: ``atol`` for float64 leaves, 1e-6 for the embedding table,
    whose lookup runs in float32 inside flax's ``nnx.Embed`` (its gradient is a float32
    scatter-add: a few ulps 2^-24 of O(0.1-1) terms, <= 1e-6)."""
    return np.concatenate([np.full(np.size(a), 1e-6 if "embed" in jax.tree_util.keystr(k) else atol)
                           for k, a in jax.tree_util.tree_leaves_with_path(tree)])


def _assert_tree_close(got, want, atol):
    g, w = _flat(got), _flat(want)
    bad = np.abs(g - w) > _floor(want, atol)
    assert not bad.any(), (np.flatnonzero(bad)[:5], np.abs(g - w).max())


def _pref(x, y1, m1, y2, m2):
    """Ground truth ``P(y1 > y2 | x) = sigmoid(#{tokens equal to the prompt token}(y1) - (same)(y2))``."""
    def score(y, m):  # in the default float dtype (float64 under x64; the masks are float32)
        return jnp.sum((y == x[..., :1]) * jnp.asarray(m, jnp.result_type(float)), axis=-1)
    return jax.nn.sigmoid(score(y1, m1) - score(y2, m2))


def _sgd(h):
    return optax.sgd(h["learning_rate"])


def _ipo_loss(q, ref, x, y1, m1, y2, m2, beta):
    """Online IPO loss written out: ``mean_b (h_b - (P_b - 1/2) / beta)^2``, h the log-ratio margin."""
    def ratio(y, m):
        return POL.sequence_logps(q, x, y, m)[0] - POL.sequence_logps(ref, x, y, m)[0]
    h = ratio(y1, m1) - ratio(y2, m2)
    return jnp.mean(jnp.square(h - (_pref(x, y1, m1, y2, m2) - 0.5) / beta))


def _expected_ipo_loss(q, ref, weights_params, beta):
    """``E_x E_{y1, y2 ~ pi_w(.|x)} (h - (P - 1/2)/beta)^2`` by enumeration (``pi_w`` frozen), x uniform."""
    def one(x):
        w = jax.lax.stop_gradient(jnp.exp(POL.sequence_logps(weights_params, x, YS, MS)[0]))
        h = POL.sequence_logps(q, x, YS, MS)[0] - POL.sequence_logps(ref, x, YS, MS)[0]
        xx = jnp.broadcast_to(x, (7, 7, P))
        target = (_pref(xx, YS[:, None], MS[:, None], YS[None], MS[None]) - 0.5) / beta   # (7, 7)
        return jnp.sum(w[:, None] * w[None] * jnp.square(h[:, None] - h[None] - target))
    return jnp.mean(jax.vmap(one)(PROMPTS))


def _kl(q, ref):
    """``mean_x KL(pi_q(.|x) || pi_ref(.|x))`` by enumeration."""
    def one(x):
        a, r = POL.sequence_logps(q, x, YS, MS)[0], POL.sequence_logps(ref, x, YS, MS)[0]
        return jnp.sum(jnp.exp(a) * (a - r))
    return jnp.mean(jax.vmap(one)(PROMPTS))


# ----------------------------------------------------------------------------- online IPO
def test_online_ipo_one_step_is_minus_lr_times_the_test_loss_gradient():
    """One SGD step on the samples the trainer draws, reproduced here exactly: the policy's sampler
    is wrapped to ignore its key (fixed key 42), so the responses are those of the *current*
    policy ``theta_0`` for ``[x; x]``. The B = 4 prompts x are drawn by the trainer from the 2
    prompts, so the expected step is computed for each of the 2^4 possible draws: one must match
    (several may, differing only on rows with ``y1 = y2``, whose loss and gradient are 0), and its
    informative rows must use both prompts (else the pairing of ``y2`` with its prompt is untested)."""
    b, lr = 4, 0.3
    fixed = POL._replace(sample=lambda params, prompts, key, temperature=1.0: POL.sample(params, prompts,
                                                                                          jax.random.key(42)))
    draws = jnp.array(np.indices((2,) * b).reshape(b, -1).T)                   # (16, B) prompt indices
    with jax.enable_x64(True):
        th0, ref = _params(0, 0.3), _params(1)
        train = make_online_ipo_train(fixed, _pref, _sgd, num_steps=1, batch_size=b, log_every=1)
        hp = {"beta": jnp.float64(BETA), "learning_rate": jnp.float64(lr)}

        def expected(th0, ref, draw):
            x = PROMPTS[draw]
            yy, mm = POL.sample(th0, jnp.concatenate([x, x]), jax.random.key(42))
            g = jax.grad(_ipo_loss)(th0, ref, x, yy[:b], mm[:b], yy[b:], mm[b:], hp["beta"])
            return jax.tree.map(lambda a, d: a - lr * d, th0, g), jnp.any(yy[:b] != yy[b:], axis=-1)

        @jax.jit
        def both(th0, ref):
            new, logged = train(th0, ref, hp, PROMPTS, (), jax.random.key(0))
            return new, logged, jax.vmap(expected, in_axes=(None, None, 0))(th0, ref, draws)

        new, logged, (wants, informative) = both(th0, ref)
        err = np.abs(_flat(new)[None] - np.concatenate([np.asarray(a).reshape(len(draws), -1)
                                                        for a in jax.tree.leaves(wants)], 1))
        # float64 through a tiny transformer, O(1) values: rounding ~1e-14; tolerance 1e-11
        match = np.flatnonzero(np.all(err <= _floor(th0, 1e-11)[None], axis=1))
        assert match.size >= 1, err.max(1).min()
        m = match[0]
        assert set(np.asarray(draws[m])[np.asarray(informative[m])].tolist()) == {0, 1}
        np.testing.assert_array_equal(_flat(jax.tree.map(lambda a: a[-1], logged["params"])), _flat(new))
        np.testing.assert_array_equal(_flat(jax.tree.map(lambda a: a[0], logged["params"])), _flat(th0))


def test_online_ipo_step_is_unbiased_for_the_enumerated_expectation():
    """Real sampler, 4000 keys, SGD lr = 1, one compile for two preference models (``mix`` scales
    ``P - 1/2``): the mean step is the gradient of the exact expected loss under the current
    policy (mix = 1), and with ties (mix = 0) it is ``4 grad KL(pi || pi_ref)``
    (``2 E (h1 - h2)(g1 - g2) = 4 Cov_pi(h, grad log pi) = 4 E_pi[h grad log pi]``), within 5 SE."""
    n = 4000
    with jax.enable_x64(True):
        th0, ref = _params(0, 0.3), _params(1)
        hp = {"beta": jnp.float64(BETA), "learning_rate": jnp.float64(1.0)}

        def one(mix, k):
            pref = lambda *a: 0.5 + mix * (_pref(*a) - 0.5)  # noqa: E731
            return make_online_ipo_train(POL, pref, _sgd, num_steps=1, batch_size=2, log_every=1)(
                th0, ref, hp, PROMPTS, (), k)[0]

        mixes = jnp.repeat(jnp.array([1.0, 0.0]), n)
        new = jax.jit(jax.vmap(one))(mixes, jax.random.split(jax.random.key(3), 2 * n))
        est = (_flat(th0)[None] - np.concatenate([np.asarray(a).reshape(2 * n, -1) for a in jax.tree.leaves(new)], 1))

        @jax.jit
        def oracles(th0, ref):
            return (jax.grad(_expected_ipo_loss)(th0, ref, th0, hp["beta"]), jax.grad(_kl)(th0, ref),
                    jax.grad(_expected_ipo_loss)(th0, ref, ref, hp["beta"]))

        exact, dkl, from_ref = (_flat(g) for g in oracles(th0, ref))
        # 5 SE per coordinate: false alarm 6e-7 each, < 1e-3 over the 2 x ~700 coordinates; the
        # rounding floor covers coordinates of ~zero variance
        floor = _floor(th0, 1e-12)
        for rows, want in ((slice(0, n), exact), (slice(n, 2 * n), 4 * dkl)):
            mean, se = est[rows].mean(0), est[rows].std(0) / np.sqrt(n)
            assert np.all(np.abs(mean - want) <= 5 * se + floor), np.max(np.abs(mean - want) / (se + 1e-300))
            assert np.any(np.abs(mean) > 5 * se + floor)          # power: the zero step is rejected
        # power: sampling from pi_ref instead of the current policy is rejected
        mean, se = est[:n].mean(0), est[:n].std(0) / np.sqrt(n)
        assert np.any(np.abs(mean - from_ref) > 5 * se + floor)


def test_online_ipo_with_ties_stays_at_and_returns_to_the_reference():
    """All preferences ties (P = 1/2): every sampled loss is ``(h1 - h2)^2``, one step is
    ``delta <- (I - (2 lr / B) sum_b v_b v_b^T) delta`` to first order in ``delta = theta - theta_ref``
    with ``v = grad log pi(y1) - grad log pi(y2)`` at pi_ref.

    * stable step: ``lr = 1 / max_{x, y1, y2} |v|^2`` (computed here by enumeration) makes that map
      non-expansive (eigenvalues in [0, 1]); a larger lr amplifies any deviation (with lr = 0.02
      float64 rounding grows to O(0.4) in 50 steps);
    * stays: from pi_ref, h = 0 up to rounding (~1e-15: policy and reference log-probs are the
      same float64 computation), the map cannot amplify it, so 400 steps move theta by
      <~ 400 lr 1e-13 << 1e-10 (tolerance);
    * returns: the sampled objective also has collapsed fixed points, ``pi_ref`` restricted to a
      subset S of the responses (h constant on S, so every sampled pair has h1 = h2), with
      ``KL = -log pi_ref(S|x) >= -log(1 - min_y pi_ref(y|x))`` at a collapsed prompt; ending below
      ``min_{x,y} -log(1 - pi_ref(y|x)) / X`` (and starting above it) proves the run went back
      to pi_ref, not to a collapsed fixed point.
    """
    tie = lambda x, y1, m1, y2, m2: jnp.full(x.shape[0], 0.5)  # noqa: E731
    with jax.enable_x64(True):
        ref, start = _params(1), _params(1, 0.05)

        @jax.jit
        def max_v2(q):
            jac = jax.vmap(lambda x: jax.jacobian(lambda p: POL.sequence_logps(p, x, YS, MS)[0])(q))(PROMPTS)
            j = jnp.concatenate([a.reshape(PROMPTS.shape[0], 7, -1) for a in jax.tree.leaves(jac)], -1)
            return jnp.max(jnp.sum(jnp.square(j[:, :, None] - j[:, None]), -1))

        lr = 1.0 / float(max_v2(ref))
        train = make_online_ipo_train(POL, tie, _sgd, num_steps=400, batch_size=8, log_every=400)
        hp = {"beta": jnp.float64(BETA), "learning_rate": jnp.float64(lr)}
        starts = jax.tree.map(lambda u, v: jnp.stack([u, v]), ref, start)
        final, _ = jax.jit(jax.vmap(lambda p: train(p, ref, hp, PROMPTS, (), jax.random.key(0))))(starts)
        _assert_tree_close(jax.tree.map(lambda a: a[0], final), ref, 1e-10)
        kl = jax.jit(_kl)
        kl0, kl_end = float(kl(start, ref)), float(kl(jax.tree.map(lambda a: a[1], final), ref))
        pi_ref = np.exp(np.asarray(jax.vmap(lambda x: POL.sequence_logps(ref, x, YS, MS)[0])(PROMPTS)))
    collapsed = float(np.min(-np.log1p(-pi_ref))) / PROMPTS.shape[0]
    assert kl0 > collapsed                       # the start is farther than any collapsed fixed point
    assert kl_end < collapsed, (kl_end, collapsed, kl0)


# ----------------------------------------------------------------------------- offline epochs
def _counter_policy():
    """An instrumented "policy": ``log pi(y|x) = params[x_0] * y_0``, one parameter per pair.

    With ``prompts[i] = i``, chosen ``y_0 = 1``, rejected ``y_0 = 0`` and the loss ``-pc * ref_c``
    (``ref_c = 1 + i``), one SGD step (lr 1) on the batch mean adds ``(1 + i) / B`` to ``params[i]``
    for every pair i in the batch: the parameters count the visits (exactly, B = 4 a power of 2),
    and the ``1 + i`` checks the reference log-probs are gathered with the same index.
    """
    def sequence_logps(params, prompts, responses, mask):
        return params[prompts[..., 0]] * responses[..., 0], jnp.sum(mask, axis=-1)
    return SequencePolicy(None, None, sequence_logps, None, None, V, 1, L)


@pytest.mark.parametrize("n", [12, 14])
def test_preference_train_visits_each_pair_once_per_epoch(n):
    b, epochs = 4, 3
    spe = n // b                                   # 3 minibatches per epoch; n = 14 drops 2 pairs per epoch
    data = {"prompts": jnp.arange(n)[:, None], "chosen": jnp.ones((n, L), jnp.int32),
            "rejected": jnp.zeros((n, L), jnp.int32), "chosen_mask": jnp.ones((n, L)),
            "rejected_mask": jnp.ones((n, L)), "ref_chosen": 1.0 + jnp.arange(n, dtype=jnp.float32),
            "ref_rejected": jnp.zeros(n)}
    loss = lambda pc, pr, rc, rr, nc, nr, h: -pc * rc  # noqa: E731
    train = make_preference_train(_counter_policy(), loss, _sgd, num_steps=spe * epochs, batch_size=b, log_every=1)
    final, logged = jax.jit(train)(jnp.zeros(n), {"learning_rate": jnp.float32(1.0)}, data, (data,), jax.random.key(0))
    counts = np.asarray(logged["params"]) * b / (1.0 + np.arange(n))     # (steps + 1, n) visits so far
    np.testing.assert_array_equal(counts[0], 0)
    np.testing.assert_array_equal(np.asarray(final), np.asarray(logged["params"][-1]))
    steps = np.diff(counts, axis=0)                                      # (steps, n)
    np.testing.assert_array_equal(steps.sum(1), b)                       # B distinct pairs per step
    assert set(np.unique(steps)) <= {0.0, 1.0}
    per_epoch = steps.reshape(epochs, spe, n).sum(1)
    if n % b == 0:
        np.testing.assert_array_equal(per_epoch, 1)                      # every pair exactly once
    else:
        assert set(np.unique(per_epoch)) <= {0.0, 1.0}                   # at most once ...
        np.testing.assert_array_equal(per_epoch.sum(1), spe * b)         # ... spe * B of them
    # a fresh permutation each epoch: the batch sequences differ (a repeat has probability
    # (4!)^3 / 12! < 3e-5 for n = 12, and is deterministic given the key anyway)
    order = [tuple(map(tuple, np.argsort(-steps[e * spe:(e + 1) * spe], axis=1)[:, :b])) for e in range(epochs)]
    assert len(set(order)) == epochs
    # the eval log-probs are those of the logged parameters
    np.testing.assert_array_equal(np.asarray(logged["logps"][0][0]), np.asarray(logged["params"]))
    np.testing.assert_array_equal(np.asarray(logged["logps"][0][1]), 0)


def test_preference_train_full_batch_steps_are_gradient_steps():
    """Batch = all pairs, so the permutation is irrelevant: two SGD steps of a loss that reads every
    argument (DPO on the margin, minus gamma times the length-normalised log-prob difference)
    equal two steps of ``-lr grad`` of the same loss written here (lengths from the masks)."""
    n, lr = 4, 0.5
    with jax.enable_x64(True):
        th0, ref = _params(0), _params(1)
        x = PROMPTS[jnp.array([0, 1, 1, 0])]
        yc, yr = YS[jnp.array([1, 3, 6, 4])], YS[jnp.array([0, 5, 2, 6])]
        mc, mr = response_mask(yc), response_mask(yr)
        rc, rr = POL.sequence_logps(ref, x, yc, mc)[0], POL.sequence_logps(ref, x, yr, mr)[0]
        data = {"prompts": x, "chosen": yc, "rejected": yr, "chosen_mask": mc, "rejected_mask": mr,
                "ref_chosen": rc, "ref_rejected": rr}
        hp = {"beta": jnp.float64(BETA), "gamma": jnp.float64(0.3), "learning_rate": jnp.float64(lr)}

        def loss(pc, pr, a, b, nc, nr, h):
            return -jax.nn.log_sigmoid(h["beta"] * ((pc - a) - (pr - b))) - h["gamma"] * (pc / nc - pr / nr)

        def written(q):
            lc = POL.sequence_logps(q, x, yc, mc)[0]
            lrj = POL.sequence_logps(q, x, yr, mr)[0]
            m = (lc - rc) - (lrj - rr)
            return jnp.mean(jnp.logaddexp(0.0, -BETA * m) - 0.3 * (lc / mc.sum(-1) - lrj / mr.sum(-1)))

        train = make_preference_train(POL, loss, _sgd, num_steps=2, batch_size=n, log_every=1)
        _, logged = jax.jit(train)(th0, hp, data, (data,), jax.random.key(0))

        @jax.jit
        def step(th):  # (next parameters, chosen log-probs at th)
            nxt = jax.tree.map(lambda a, g: a - lr * g, th, jax.grad(written)(th))
            return nxt, POL.sequence_logps(th, x, yc, mc)[0]

        th = th0
        for t in range(3):
            logged_t = jax.tree.map(lambda a: a[t], logged["params"])
            # float64, O(1) values: rounding ~1e-14 (1e-6 on the float32 embedding, see _floor)
            _assert_tree_close(logged_t, th, 1e-11)
            # the logged eval log-probs are those of the logged parameters (same float64 computation)
            np.testing.assert_allclose(np.asarray(logged["logps"][0][0][t]), np.asarray(step(logged_t)[1]),
                                       rtol=0, atol=1e-12)
            th = step(th)[0]


def test_preference_train_validates_sizes():
    with pytest.raises(ValueError, match="multiple"):
        make_preference_train(POL, None, _sgd, num_steps=5, batch_size=2, log_every=2)
    with pytest.raises(ValueError, match="multiple"):
        make_online_ipo_train(POL, _pref, _sgd, num_steps=5, batch_size=2, log_every=2)
    train = make_preference_train(_counter_policy(), None, _sgd, num_steps=2, batch_size=8, log_every=1)
    data = {"prompts": jnp.zeros((4, 1), jnp.int32)}
    with pytest.raises(ValueError, match="exceeds"):
        train(jnp.zeros(4), {"learning_rate": 1.0}, data, (), jax.random.key(0))


# ----------------------------------------------------------------------------- one-update form
def test_trainers_are_their_one_update_functions_in_a_loop():
    """Python loops of the one-update functions, with the keys the docstrings give, end where the
    scanned trainers do (float64; the same arithmetic, compiled separately: rounding ~1e-15)."""
    n, b, steps, every = 4, 2, 4, 2
    with jax.enable_x64(True):
        th0, ref = _params(0), _params(1)
        x = PROMPTS[jnp.arange(n) % 2]
        yc, yr = YS[jnp.arange(n) % 7], YS[(jnp.arange(n) + 3) % 7]
        data = {"prompts": x, "chosen": yc, "rejected": yr, "chosen_mask": response_mask(yc),
                "rejected_mask": response_mask(yr), "ref_chosen": POL.sequence_logps(ref, x, yc, response_mask(yc))[0],
                "ref_rejected": POL.sequence_logps(ref, x, yr, response_mask(yr))[0]}
        hp = {"beta": jnp.float64(BETA), "learning_rate": jnp.float64(0.1)}
        opt = _sgd(hp)
        key = jax.random.key(4)
        loss = lambda pc, pr, rc, rr, nc, nr, h: -jax.nn.log_sigmoid(h["beta"] * ((pc - rc) - (pr - rr)))  # noqa: E731

        @jax.jit
        def loops(th0, ref):
            p, o = th0, opt.init(th0)
            for k in jax.random.split(key, steps):
                p, o, _ = sft_step(POL, opt, p, o, x, yc, data["chosen_mask"], k, batch_size=b)
            sft = p
            p, o, perm_key = th0, opt.init(th0), jax.random.split(key)[0]
            for t in range(steps):
                p, o = preference_step(POL, loss, opt, p, o, jnp.int32(t), hp, data, perm_key, batch_size=b)
            pref = p
            p, o = th0, opt.init(th0)
            for k in logged_step_keys(key, steps, every):
                p, o = online_ipo_step(POL, _pref, opt, p, o, ref, hp, PROMPTS, k, batch_size=b)
            return sft, pref, p

        @jax.jit
        def trainers(th0, ref):
            sft = make_sft_train(POL, opt, num_steps=steps, batch_size=b)(th0, x, yc, data["chosen_mask"], key)[0]
            pref = make_preference_train(POL, loss, _sgd, num_steps=steps, batch_size=b, log_every=every)(
                th0, hp, data, (), key)[0]
            online = make_online_ipo_train(POL, _pref, _sgd, num_steps=steps, batch_size=b, log_every=every)(
                th0, ref, hp, PROMPTS, (), key)[0]
            return sft, pref, online

        for got, want in zip(loops(th0, ref), trainers(th0, ref)):
            _assert_tree_close(got, want, 1e-12)
            assert np.abs(_flat(got) - _flat(th0)).max() > 1e-3       # every loop moved the parameters


# ----------------------------------------------------------------------------- length buckets
def test_length_buckets_minimise_padded_slots():
    """The plan sorts by length and cuts the sorted order where the padded slots ``sum size * length``
    are least (brute force over every cut into at most ``k`` buckets); the same data, the same plan."""
    import itertools

    from alignjax.sft import length_buckets, response_lengths

    rng = np.random.default_rng(0)
    for _ in range(100):
        lens = rng.integers(1, 9, size=rng.integers(1, 12))
        mask = (np.arange(8)[None] < lens[:, None]).astype(np.float32)
        k = int(rng.integers(1, 4))
        plan = length_buckets(mask, k)
        np.testing.assert_array_equal(response_lengths(mask), lens)
        np.testing.assert_array_equal(lens[plan.order], np.sort(lens))
        assert sum(plan.sizes) == len(lens) and len(plan.sizes) <= k
        s, n = np.sort(lens), len(lens)
        best = min(sum((b[i + 1] - b[i]) * s[b[i + 1] - 1] for i in range(len(b) - 1))
                   for nb in range(1, k + 1) for c in itertools.combinations(range(1, n), nb - 1) for b in [(0, *c, n)])
        assert sum(a * b for a, b in zip(plan.sizes, plan.lengths)) == best
        again = length_buckets(mask, k)
        assert again.sizes == plan.sizes and again.lengths == plan.lengths
        np.testing.assert_array_equal(again.order, plan.order)


def test_bucketed_logps_are_the_full_length_logps():
    """Each bucket scored at its own length (the policy built for that many slots, on the same
    weights with the first ``P + l`` positions) gives the full-length policy's log-probs, in input order."""
    from alignjax.sft import bucketed_sequence_logps, length_buckets

    pol = sequence_policy(5, 2, 6, dim=8, depth=1, heads=2)
    params = pol.init(jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (24, 2), 1, 5)
    y = jax.random.randint(jax.random.key(2), (24, 6), 0, 3)     # EOS (0) often: lengths 1..6
    m = response_mask(y)
    plan = length_buckets(m, 3)
    assert len(plan.sizes) == 3 and plan.lengths[-1] == 6 and plan.lengths[0] < 6

    def at(length):
        short = sequence_policy(5, 2, length, dim=8, depth=1, heads=2)
        p = jax.tree_util.tree_map_with_path(lambda path, a: a[:2 + length] if path[0].key == "pos" else a, params)
        return lambda x, y, m: short.sequence_logps(p, x, y, m)[0]

    got = jax.jit(lambda x, y, m: bucketed_sequence_logps(at, x, y, m, plan))(x, y, m)
    np.testing.assert_allclose(got, pol.sequence_logps(params, x, y, m)[0], rtol=1e-6, atol=1e-6)


def test_chunked_steps_are_the_whole_minibatch_steps():
    """``chunk``: the SFT and offline updates (and the SFT loss) accumulated over chunks of the minibatch
    equal the whole-minibatch ones (float64: rounding; the float32 embedding gradient, see _floor)."""
    from alignjax.sft import chunked_value_and_grad

    n = 8
    with jax.enable_x64(True):
        th0, ref = _params(0, 0.3), _params(1)
        x = PROMPTS[jnp.arange(n) % 2]
        yc, yr = YS[jnp.arange(n) % 7], YS[(jnp.arange(n) + 3) % 7]
        mc, mr = response_mask(yc), response_mask(yr)
        data = {"prompts": x, "chosen": yc, "rejected": yr, "chosen_mask": mc, "rejected_mask": mr,
                "ref_chosen": POL.sequence_logps(ref, x, yc, mc)[0],
                "ref_rejected": POL.sequence_logps(ref, x, yr, mr)[0]}
        hp = {"beta": jnp.float64(BETA), "learning_rate": jnp.float64(0.1)}
        opt = _sgd(hp)
        loss = lambda pc, pr, rc, rr, nc, nr, h: -jax.nn.log_sigmoid(h["beta"] * ((pc - rc) - (pr - rr)))  # noqa: E731

        @jax.jit
        def steps(th0):
            out = {}
            for c in (n, 2, 4):                                      # chunk = n: one chunk of the whole batch
                p, _, sl = sft_step(POL, opt, th0, opt.init(th0), x, yc, mc, jax.random.key(3), batch_size=n, chunk=c)
                q, _ = preference_step(POL, loss, opt, th0, opt.init(th0), jnp.int32(0), hp, data, jax.random.key(4),
                                       batch_size=n, chunk=c)
                out[c] = (p, sl, q)
            p, _, sl = sft_step(POL, opt, th0, opt.init(th0), x, yc, mc, jax.random.key(3), batch_size=n)
            q, _ = preference_step(POL, loss, opt, th0, opt.init(th0), jnp.int32(0), hp, data, jax.random.key(4),
                                   batch_size=n)
            return out, (p, sl, q)

        out, whole = steps(th0)
        for c in (n, 2, 4):
            _assert_tree_close(out[c][0], whole[0], 1e-12)
            np.testing.assert_allclose(out[c][1], whole[1], rtol=1e-12)
            _assert_tree_close(out[c][2], whole[2], 1e-12)
        with pytest.raises(ValueError, match="chunks of 3"):
            chunked_value_and_grad(lambda p, i: jnp.sum(p * i), jnp.float64(1.0), jnp.arange(8), 3)
