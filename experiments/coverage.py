"""Suite "coverage": Song et al. 2024, "The Importance of Online Data: Understanding Preference
Fine-tuning via Coverage" (arXiv 2406.01462).

The paper's theorems are about the **suboptimality** ``J*_beta - J_beta(pi)`` of the returned
policy under the true reward, as a function of coverage: global coverage is necessary and
sufficient for offline contrastive methods (DPO, IPO), a partial (KL-ball) coverage suffices for
online RLHF, and HyPO (DPO plus a reverse-KL penalty on online, unlabelled samples) behaves like
the online method. The suite measures that quantity on seeded contextual bandits
(:mod:`alignjax.data.bandits`) with a **tabular** policy (the class in which the theory's
coverage coefficients are exact) and population (infinite-data) preference pairs, so that
coverage is the only thing that varies:

* stage ``suboptimality``: the data's support ``S`` is fixed; ``pi_ref`` puts mass ``eps`` on the
  unseen responses ``U`` (the data, its weights and every method's view of it do not change with
  ``eps``); ``eps -> 0`` sends the global coverage coefficient ``C_glo = max 1/pi_ref`` to infinity.
  DPO, IPO, RLHF (exact gradient and REINFORCE-LOO), HyPO (exact KL and RLOO KL) from the same
  start; plus DPO on global-coverage data. Claims ``offline-unbounded``, ``online-bounded``,
  ``hypo-with-online``, ``dpo-global``;
* stage ``nonuniqueness``: the theorem's argument: the DPO loss only sees log-ratio differences
  inside ``S``; the same DPO procedure run from ``pi_ref`` and from ``pi_ref`` tilted on ``U``
  ends at equal DPO loss and different ``J_beta``; under global coverage it does not;
* stage ``hypo-tradeoff``: HyPO's KL weight swept: reward vs reverse KL, against DPO and RLHF;
  claim ``hypo-improves-on-dpo``;
* stage ``cost``: what one update holds and draws, counted from the traced update (no timing);
* stage ``drift`` (out-of-data mass) and ``extrapolation`` (unseen best response), each with its
  mechanism (function approximation) and a tabular control.

Layout: settings -> stages (``stages/NAME.npz``, read back by ``--resume``) -> claims (functions of
the stage outputs) -> tables and plots -> :func:`reproduce`. Every training run goes through the
engine (:func:`alignjax.sweep.run_sweep` of :func:`trainer_program`); one compile per trainer and
stage. Thresholds are fixed in :data:`THRESHOLDS`, from theory, before any run.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from alignjax.data import bandits
from alignjax.experiment import Program
from alignjax.hypo import pair_loss  # also registers the dpo, ipo and hypo trainers
from alignjax.metrics import coverage as cov
from alignjax.policies import loglinear, tabular
from alignjax.policies.base import Policy
from alignjax.registry import SUITES
from alignjax.results import SuiteContext, claim, control, scale_name
from alignjax.reward_model import linear_reward, tabular_reward
from alignjax.rlhf import TRAINERS, Problem, check_hparams
from alignjax.sft import logged_step_keys
from alignjax.sweep import Grid, run_sweep

SOURCE = "Song et al. 2024 (arXiv 2406.01462)"
UNVERIFIED = ("The paper's full text was not reachable from here (only its abstract and opening); the "
              "section/theorem numbering is as we recall it and is unverified.")
METHODS = {  # name -> (trainer, mode): the suboptimality sweep's methods
    "dpo": ("dpo", "exact"), "ipo": ("ipo", "exact"),
    "rlhf-exact": ("rlhf", "exact"), "rlhf-rloo": ("rlhf", "sampled"),
    "hypo-exact": ("hypo", "exact"), "hypo-rloo": ("hypo", "sampled"),
}
OFFLINE, ONLINE, HYBRID = ("dpo", "ipo"), ("rlhf-exact", "rlhf-rloo"), ("hypo-exact", "hypo-rloo")
COST_ALGOS = ("dpo", "hypo", "rlhf")
EXT_ALGOS = ("dpo", "rlhf")
KEY_IMPL = "rbg"
"""PRNG implementation of the suite's keys: XLA's RBG generator compiles 2-3x faster than
threefry on CPU (the suite is compile-bound); statistically either is fine here."""


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl=KEY_IMPL)


THRESHOLDS = {
    # offline-unbounded: each tenfold loss of coverage must add at least this fraction of the
    # theory's increment beta * pi(U) * ln 10 (the unseen mass pi(U) held while pi_ref(U) shrinks
    # adds pi(U) ln 10 to KL(pi || pi_ref) per decade: log-sum inequality)
    "growth_fraction": 0.5,
    "global_gap": 1e-3,       # dpo-global: suboptimality under global coverage "= 0" (float32, finite steps)
    "equal_loss": 1e-6,       # non-uniqueness: "equal DPO loss" to float32 precision
    "different_j": 0.5,       # non-uniqueness: |J_beta difference| that counts as "very different" (reward std 1)
    "mass_rise": 0.05,        # dpo-drift: DPO's mass outside S must exceed pi_ref's by this
}


def settings(scale) -> dict:
    """Resolved sizes (static) and continuous defaults of the suite.

    ``scale``: ``"full"``, ``"quick"`` or ``"smoke"`` (see :class:`~alignjax.results.SuiteContext`);
    a bool means quick (True) or full (False). Quick and full use the same step budgets (exact
    tabular runs are cheap) and differ in seeds and coverage levels; smoke cuts the steps.
    """
    scale = scale_name(scale)
    quick = scale != "full"
    s = {
        # suboptimality sweep (tabular, population pairs on S)
        "sub_prompts": 4, "sub_responses": 8, "sub_support": 4, "sub_dim": 4, "beta": 1.0,
        "eps_exponents": [1, 3, 6, 9, 12] if quick else list(range(1, 13)),  # pi_ref(U) = 10**-e
        "seeds": 4 if quick else 8,
        "lam_over_beta": 0.1, "num_samples": 4, "learning_rate": 0.05, "reward_learning_rate": 0.1,
        "reward_steps": 500, "num_steps": 3000,
        # non-uniqueness (same data as the sweep's seeds)
        "nu_eps": 0.1, "nu_tilt": 4.0,
        # HyPO's KL weight (lam / beta); the trade-off stage runs at pi_ref(U) = 10**-tradeoff_exponent
        "lam_grid": [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0], "tradeoff_exponent": 6,
        # the other coverage axes (reported, not claimed): support size; data size at pi_ref(U) = axis_eps
        "axis_support": [2, 3, 4, 6, 8], "axis_pairs": [16, 64, 256, 1024, 4096], "axis_eps": 0.01,
        # drift: misspecified log-linear policy (function approximation), finite pairs
        "drift_prompts": 8, "drift_responses": 16, "drift_dim": 8, "drift_support": 3, "drift_mass": 0.5,
        "drift_pairs": 48, "drift_beta": 0.1, "drift_lr": 0.02, "drift_steps": 600, "tab_sgd_lr": 5.0,
        # extrapolation: realizable log-linear policy, best response never in the data
        "ext_prompts": 8, "ext_responses": 16, "ext_dim": 4, "ext_support": 6, "ext_pairs": 256,
        "ext_beta": 0.1, "ext_lr": 0.02, "ext_steps": 400,
    }
    if scale == "smoke":
        s.update(num_steps=200, reward_steps=100, drift_steps=100, ext_steps=100)
    return s


# ----------------------------------------------------------------------------------------
# problems
def tabular_bandits(cfg):
    """The sweep's ``seeds`` datasets, drawn once: ``(rewards, base_logits, features, ranks)`` stacked;
    the partial support of size ``k`` is ``ranks < k`` (:func:`alignjax.data.bandits.support_mask`).

    Drawn per seed and then indexed (not redrawn per row): with the RBG generator, the bits drawn
    under ``vmap`` depend on the batch, so equal keys at different rows would give different data.
    """
    X, N = cfg["sub_prompts"], cfg["sub_responses"]

    def one(key):
        kb, ks = jax.random.split(key)
        b = bandits.linear_bandit(kb, X, N, cfg["sub_dim"])
        u = jax.random.uniform(ks, (X, N))  # bandits.support_mask's ranking: S_k = {rank < k}
        return b.rewards, b.base_logits, b.features, jnp.argsort(jnp.argsort(u, axis=-1), axis=-1)

    return jax.jit(jax.vmap(one))(jax.random.split(_key(0), cfg["seeds"]))


def tabular_problem(rewards, base_logits, features, ranks, k, eps, is_global):
    """One row's problem from a dataset of :func:`tabular_bandits`: ``(rewards, support, unseen, Problem)``.

    ``support`` = the data's responses (a random ``sub_support`` of ``N`` per prompt, or all under
    global coverage); ``unseen`` = the partial support's complement ``U`` (reported either way);
    ``pi_ref`` puts mass ``eps`` on ``U`` (partial) or is the base softmax (global); pairs are the
    population pairs over ``support`` (weights ``mu_S ∝ pi_ref`` on ``S``: the same for every ``eps``).
    """
    part = ranks < k
    s = part | is_global
    lr = bandits.reference_with_outside_mass(base_logits, s, eps)
    pairs = bandits.population_pairs(rewards, lr, s)
    return rewards, s, ~part, Problem(jnp.arange(rewards.shape[0]), lr, pairs, features)


def misspecified_problem(key, cfg):
    """Drift: bandit + partial support + finite BT pairs; the policy's features are unrelated to ``r``."""
    kb, ks, kp, kf = jax.random.split(key, 4)
    X, N = cfg["drift_prompts"], cfg["drift_responses"]
    b = bandits.linear_bandit(kb, X, N, cfg["drift_dim"])
    psi = bandits.random_features(kf, X, N, cfg["drift_dim"])
    s = bandits.support_mask(ks, X, N, cfg["drift_support"])
    lr = bandits.reference_with_outside_mass(b.base_logits, s, cfg["drift_mass"])
    pairs = bandits.sample_pairs(kp, b.rewards, lr, s, cfg["drift_pairs"])
    return s, psi, Problem((psi, lr), lr, pairs, b.features)


def extrapolation_problem(key, cfg):
    """Realizable linear features, support without the best response; ``(argmax r, support, Problem)``."""
    X, N, d = cfg["ext_prompts"], cfg["ext_responses"], cfg["ext_dim"]
    kb, ks, kp = jax.random.split(key, 3)
    b = bandits.linear_bandit(kb, X, N, d)
    s = bandits.support_without_best(ks, b.rewards, cfg["ext_support"])
    lr = bandits.reference_with_outside_mass(b.base_logits, s, 0.3)
    pairs = bandits.sample_pairs(kp, b.rewards, lr, s, cfg["ext_pairs"])
    return jnp.argmax(b.rewards, -1), s, Problem((b.features, lr), lr, pairs, b.features)


# ----------------------------------------------------------------------------------------
# a trainer as an engine program
def problem_leaves(problem: Problem) -> dict:
    """A (stacked) :class:`Problem`'s arrays as grid leaves; ``prompts`` aside (see :func:`trainer_program`)."""
    p = problem.pairs
    return {"log_pi_ref": problem.log_pi_ref, "features": problem.features,
            "pair_x": p.x, "pair_y_w": p.y_w, "pair_y_l": p.y_l, "pair_weight": p.weight}


def trainer_program(trainer, policy, prompts, observe, *, num_steps, log_every, init_params=None) -> Program:
    """``trainer`` on the row's problem as a :class:`~alignjax.experiment.Program`.

    The row's leaves: :func:`problem_leaves`, the trainer's hyperparameters and ``run_key`` (key
    data), which plays :func:`alignjax.rlhf.run_trainer`'s key: ``init`` splits it into
    ``(k_init, k_run)``, runs ``trainer.init`` from ``init_params(h, run_key)`` (default
    ``policy.init(run_key)``) and holds the step keys of ``k_run`` (:func:`~alignjax.sft.logged_step_keys`);
    ``step`` is one ``trainer.update`` with the next one. ``prompts(h)`` is the policy's input;
    ``observe(log-prob table, train state, h, problem)``.
    """

    def problem(h):
        pairs = bandits.Pairs(h["pair_x"], h["pair_y_w"], h["pair_y_l"], h["pair_weight"])
        return Problem(prompts(h), h["log_pi_ref"], pairs, h["features"])

    def init(h, _):
        key = jax.random.wrap_key_data(h["run_key"], impl=KEY_IMPL)
        k_init, k_run = jax.random.split(key)
        params = policy.init(key) if init_params is None else init_params(h, key)
        return {"train": trainer.init(params, problem(h), h, k_init), "t": jnp.int32(0),
                "keys": logged_step_keys(k_run, num_steps, log_every)}

    def step(s, h):
        train, _ = trainer.update(s["train"], problem(h), h, s["keys"][s["t"]])
        return {**s, "train": train, "t": s["t"] + 1}

    def look(s, h):
        prob = problem(h)
        return observe(policy.log_probs(s["train"].params, prob.prompts), s["train"], h, prob)

    return Program(init, step, look)


def _run(program, leaves, *, num_steps, log_every, progress) -> dict:
    """One engine sweep over runs given as leaves (one config each): ``{metric: (runs, T, ...)}`` and ``steps``."""
    leaves = {k: np.asarray(v) for k, v in leaves.items()}
    grid = Grid(leaves, ("run",), 1)
    res = run_sweep(program, grid, num_steps=num_steps, log_every=log_every, progress=progress,
                    key_impl=KEY_IMPL, block_size=grid.size)
    return {"steps": res.steps, **{k: v[:, 0] for k, v in res.metrics.items()}}


def _tabular_init(h, key):
    del key
    return h["init_logits"]


def make_trainer(method, cfg, policy, reward_model=None, optimizer="adam"):
    """A :data:`METHODS` entry (or a trainer name) as a :class:`~alignjax.rlhf.Trainer`."""
    name, mode = METHODS.get(method, (method, "exact"))
    return TRAINERS.get(name)(policy, reward_model=reward_model, mode=mode, num_samples=cfg["num_samples"],
                              optimizer=optimizer, reward_steps=cfg["reward_steps"])


def _sub_observe(table, train, h, prob):
    """Final metrics of a tabular row: :func:`~alignjax.metrics.coverage.coverage_report` under the true
    reward, the mass on ``U``, the DPO loss of the policy and of the policy tilted by ``h["tilt"]`` on
    ``U``, and (RLHF) the reward-error range of :func:`_bound`. ``beta`` is the row's leaf."""
    beta = h["beta"]
    rep = cov.coverage_report(table, prob.log_pi_ref, h["rewards"], h["support"], beta)
    rep["mass_unseen"] = jnp.mean(cov.mass_outside(table, ~h["unseen"]))
    rep["dpo_loss"] = pair_loss("dpo", table, prob.log_pi_ref, prob.pairs, beta)
    tilted = jax.nn.log_softmax(table + h["tilt"] * h["unseen"], axis=-1)
    rep["dpo_loss_tilted"] = pair_loss("dpo", tilted, prob.log_pi_ref, prob.pairs, beta)
    if train.reward_params is not None:  # the reward-error range E_x[max_y D - min_y D], D = r - r_hat
        d = h["rewards"] - train.reward_params
        rep["reward_error_range"] = jnp.mean(jnp.max(d, -1) - jnp.min(d, -1))
    return rep


def tabular_leaves(cfg, eps, is_global, seed_index, support_size=None, **extra):
    """Leaves of tabular rows: row ``i`` is dataset ``seed_index[i]`` at ``pi_ref(U) = eps[i]``, with
    ``support_size[i]`` responses per prompt in the data (default ``sub_support``)."""
    n = len(eps)
    k = np.full(n, cfg["sub_support"]) if support_size is None else np.asarray(support_size)
    idx = np.asarray(seed_index)
    data = [np.asarray(a)[idx] for a in tabular_bandits(cfg)]
    run_keys = jax.random.split(_key(1), cfg["seeds"])[idx]
    rewards, s, unseen, prob = jax.jit(jax.vmap(tabular_problem))(
        *data, jnp.asarray(k, jnp.int32), jnp.asarray(eps, jnp.float32), jnp.asarray(is_global))
    beta = cfg["beta"]
    leaves = {"beta": np.full(n, beta, np.float32), "lam": np.full(n, cfg["lam_over_beta"] * beta, np.float32),
              "learning_rate": np.full(n, cfg["learning_rate"], np.float32),
              "reward_learning_rate": np.full(n, cfg["reward_learning_rate"], np.float32),
              "run_key": jax.random.key_data(run_keys), "rewards": rewards, "support": s, "unseen": unseen,
              "init_logits": np.zeros(rewards.shape, np.float32), "tilt": np.zeros(n, np.float32),
              **problem_leaves(prob)}
    leaves.update(extra)
    return leaves


def _tabular_run(method, cfg, leaves, progress, num_steps=None):
    X, N = cfg["sub_prompts"], cfg["sub_responses"]
    pol = tabular(X, N)
    steps = num_steps or cfg["num_steps"]
    trainer = make_trainer(method, cfg, pol, reward_model=tabular_reward(X, N))
    program = trainer_program(trainer, pol, lambda h: jnp.arange(X), _sub_observe,
                              num_steps=steps, log_every=steps, init_params=_tabular_init)
    res = _run(program, leaves, num_steps=steps, log_every=steps, progress=progress)
    return {k: v[:, -1] for k, v in res.items() if k != "steps"}


# ----------------------------------------------------------------------------------------
# stage "suboptimality"
def suboptimality(cfg, progress=False) -> dict:
    """Every method of :data:`METHODS` on levels x seeds (partial coverage), and DPO on global coverage.

    Returns ``eps`` (levels), coverage coefficients per level and seed (``c_glo``, ``c_loc``: the
    tabular class's global and KL-ball (radius 1 nat) coefficients of ``pi_ref``), and per method
    the final metrics shaped ``(levels, seeds)``; ``global`` holds DPO's on global-coverage data
    (``(seeds,)``). Every method starts from the uniform policy (logits 0).
    """
    L, ns = len(cfg["eps_exponents"]), cfg["seeds"]
    eps = np.repeat(10.0 ** -np.asarray(cfg["eps_exponents"], np.float64), ns)
    seed = np.tile(np.arange(ns), L)
    leaves = tabular_leaves(cfg, eps, np.zeros(L * ns, bool), seed)
    lr = jnp.asarray(leaves["log_pi_ref"])
    out = {"eps": 10.0 ** -np.asarray(cfg["eps_exponents"], np.float64),
           "c_glo": np.asarray(jax.vmap(cov.global_coverage)(lr)).reshape(L, ns),
           "c_loc": np.asarray(jnp.max(cov.local_coverage(lr, 1.0), -1)).reshape(L, ns)}
    for m in METHODS:
        res = _tabular_run(m, cfg, leaves, progress)
        out[m] = {k: v.reshape(L, ns) for k, v in res.items()}
    g = tabular_leaves(cfg, np.full(ns, 0.5), np.ones(ns, bool), np.arange(ns))
    out["global"] = _tabular_run("dpo", cfg, g, progress)
    return out


# ----------------------------------------------------------------------------------------
# stage "nonuniqueness": the theorem's construction, reached by one procedure
def nonuniqueness(cfg, progress=False) -> dict:
    """DPO (Adam, the sweep's procedure) from ``pi_ref`` and from ``pi_ref`` tilted by ``nu_tilt`` on ``U``.

    Rows: coverage (partial at ``pi_ref(U) = nu_eps``, global) x tilt (0, ``nu_tilt``) x seeds.
    Returns final metrics ``(2, 2, seeds)`` (``dpo_loss``, ``kl``, ``objective``, ``gap``, and
    ``dpo_loss_tilted``: the loss after tilting the *final* policy on ``U``).
    """
    ns = cfg["seeds"]
    cover = np.repeat([False, True], 2 * ns)
    tilt = np.tile(np.repeat([0.0, cfg["nu_tilt"]], ns), 2).astype(np.float32)
    seed = np.tile(np.arange(ns), 4)
    leaves = tabular_leaves(cfg, np.full(4 * ns, cfg["nu_eps"]), cover, seed)
    leaves["init_logits"] = np.asarray(leaves["log_pi_ref"]) + tilt[:, None, None] * np.asarray(leaves["unseen"])
    leaves["tilt"] = np.full(4 * ns, cfg["nu_tilt"], np.float32)
    res = _tabular_run("dpo", cfg, leaves, progress)
    return {k: v.reshape(2, 2, ns) for k, v in res.items()}


# ----------------------------------------------------------------------------------------
# stage "hypo-tradeoff": HyPO's KL weight
def hypo_tradeoff(cfg, progress=False) -> dict:
    """HyPO (exact KL) over ``lam / beta`` in ``lam_grid`` x seeds at ``pi_ref(U) = 10**-tradeoff_exponent``.

    Returns ``lam_over_beta`` and final metrics ``(lams, seeds)``; ``ref`` holds ``J_beta`` and
    ``J*`` of ``pi_ref`` per seed. (DPO and RLHF at the same level are in stage ``suboptimality``.)
    """
    lams, ns = np.asarray(cfg["lam_grid"], np.float32), cfg["seeds"]
    n = len(lams) * ns
    leaves = tabular_leaves(cfg, np.full(n, 10.0 ** -cfg["tradeoff_exponent"]), np.zeros(n, bool),
                            np.tile(np.arange(ns), len(lams)))
    leaves["lam"] = np.repeat(lams * cfg["beta"], ns)
    res = _tabular_run("hypo-exact", cfg, leaves, progress)
    lr, r = jnp.asarray(leaves["log_pi_ref"][:ns]), jnp.asarray(leaves["rewards"][:ns])
    ref = jax.vmap(lambda a, b, s: cov.coverage_report(a, a, b, s, cfg["beta"]))(lr, r, jnp.asarray(leaves["support"][:ns]))
    return {"lam_over_beta": lams, **{k: v.reshape(len(lams), ns) for k, v in res.items()},
            "ref": {k: np.asarray(v) for k, v in ref.items()}}


# ----------------------------------------------------------------------------------------
# stage "axes": the other coverage axes (support size, data size); reported, not claimed
AXES_METHODS = ("dpo", "rlhf-exact", "hypo-exact")


def sampled_leaves(cfg, num_pairs, seed_index):
    """Rows with finite data: ``num_pairs[i]`` hard-labelled BT pairs drawn from ``pi_ref`` over *all*
    responses, ``pi_ref`` putting mass ``axis_eps`` on the sweep's ``U``. Each seed draws
    ``max(num_pairs)`` pairs once; a row keeps the first ``num_pairs[i]`` (later ones weigh 0), so a
    larger dataset contains the smaller. ``support`` = responses in some kept pair; ``unseen`` = the rest.
    """
    X, N, n_max = cfg["sub_prompts"], cfg["sub_responses"], int(max(num_pairs))
    idx = np.asarray(seed_index)

    def one(rewards, base, features, ranks, key):
        lr = bandits.reference_with_outside_mass(base, ranks < cfg["sub_support"], cfg["axis_eps"])
        return lr, bandits.sample_pairs(key, rewards, lr, jnp.ones((X, N), bool), n_max)

    data = tabular_bandits(cfg)
    lr, pairs = jax.jit(jax.vmap(one))(*data, jax.random.split(_key(2), cfg["seeds"]))
    data, lr, pairs = [np.asarray(a)[idx] for a in data], np.asarray(lr)[idx], jax.tree.map(lambda a: np.asarray(a)[idx], pairs)
    keep = np.arange(n_max)[None, :] < np.asarray(num_pairs)[:, None]
    w = np.where(keep, pairs.weight > 0, 0.0).astype(np.float32)
    pairs = pairs._replace(weight=w / np.maximum(w.sum(-1, keepdims=True), 1.0))
    support = np.asarray(jax.vmap(lambda p: bandits.pair_support(p, X, N))(pairs))
    n = len(idx)
    beta = cfg["beta"]
    return {"beta": np.full(n, beta, np.float32), "lam": np.full(n, cfg["lam_over_beta"] * beta, np.float32),
            "learning_rate": np.full(n, cfg["learning_rate"], np.float32),
            "reward_learning_rate": np.full(n, cfg["reward_learning_rate"], np.float32),
            "run_key": jax.random.key_data(jax.random.split(_key(1), cfg["seeds"])[idx]), "rewards": data[0],
            "support": support, "unseen": ~support, "init_logits": np.zeros((n, X, N), np.float32),
            "tilt": np.zeros(n, np.float32),
            **problem_leaves(Problem(None, lr, pairs, data[2]))}


def coverage_axes(cfg, progress=False) -> dict:
    """DPO, RLHF (exact) and HyPO (exact KL) along the two other coverage axes, final metrics:

    * ``support``: population pairs on ``S_k`` for ``k`` in ``axis_support`` at ``pi_ref(U) = 10**-tradeoff_exponent``
      (``k = N`` is global coverage), ``(len(axis_support), seeds)``;
    * ``pairs``: ``n`` sampled pairs from ``pi_ref`` (mass ``axis_eps`` on ``U``) for ``n`` in ``axis_pairs``:
      the unseen responses are those no pair happened to draw, ``(len(axis_pairs), seeds)``.
    """
    ns = cfg["seeds"]
    ks, npairs = np.asarray(cfg["axis_support"]), np.asarray(cfg["axis_pairs"])
    eps = 10.0 ** -cfg["tradeoff_exponent"]
    sl = tabular_leaves(cfg, np.full(len(ks) * ns, eps), np.zeros(len(ks) * ns, bool), np.tile(np.arange(ns), len(ks)),
                        support_size=np.repeat(ks, ns))
    dl = sampled_leaves(cfg, np.repeat(npairs, ns), np.tile(np.arange(ns), len(npairs)))
    out = {"support_size": ks, "num_pairs": npairs,
           "pi_ref_mass_unseen_pairs": np.where(dl["unseen"], np.exp(dl["log_pi_ref"]), 0).sum(-1).mean(-1).reshape(len(npairs), ns)}
    for m in AXES_METHODS:
        out[m] = {"support": {k: v.reshape(len(ks), ns) for k, v in _tabular_run(m, cfg, sl, progress).items()},
                  "pairs": {k: v.reshape(len(npairs), ns) for k, v in _tabular_run(m, cfg, dl, progress).items()}}
    return out


# ----------------------------------------------------------------------------------------
# stage "cost": what one update holds and draws, counted on the traced update
def _count_random_draws(jaxpr) -> int:
    """Random numbers drawn in a (closed) jaxpr, summed over every ``random_bits`` equation (nested too)."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "random_bits":
            total += int(np.prod(eqn.outvars[0].aval.shape))
        for sub in _sub_jaxprs(list(eqn.params.values())):
            total += _count_random_draws(sub)
    return total


def _sub_jaxprs(values):
    for v in values:
        if hasattr(v, "eqns"):
            yield v
        elif hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
            yield v.jaxpr
        elif isinstance(v, (tuple, list)):
            yield from _sub_jaxprs(v)


def update_counts(cfg) -> dict:
    """Per trainer of :data:`COST_ALGOS` (sampled mode, ``k = num_samples``), one update counted:

    * ``models``: parameter sets the update reads: the policy, the reference (``log pi_ref``) and
      a reward model if the train state holds one;
    * ``policy_forward``: calls of the policy's ``log_probs`` while tracing one update;
    * ``samples_per_prompt``: random draws in the traced update / ``(X * N)`` (one categorical
      draw over ``N`` responses reads ``N`` Gumbel numbers), i.e. online responses per prompt;
    * ``labels_per_update``: preference labels read (the pairs, the same for every method; no
      method here queries new labels).
    """
    X, N = cfg["sub_prompts"], cfg["sub_responses"]
    base = tabular(X, N)
    counter = {"n": 0}

    def counted(params, x):
        counter["n"] += 1
        return base.log_probs(params, x)

    pol = Policy(base.init, counted, N)
    leaves = tabular_leaves(cfg, np.full(1, 0.1), np.zeros(1, bool), np.zeros(1, int))
    h = {k: jnp.asarray(v[0]) for k, v in leaves.items()}
    prob = Problem(jnp.arange(X), h["log_pi_ref"],
                   bandits.Pairs(h["pair_x"], h["pair_y_w"], h["pair_y_l"], h["pair_weight"]), h["features"])
    out = {}
    for name in COST_ALGOS:
        trainer = TRAINERS.get(name)(pol, reward_model=tabular_reward(X, N), mode="sampled",
                                     num_samples=cfg["num_samples"], reward_steps=2)
        state = trainer.init(jnp.zeros((X, N)), prob, h, _key(0))
        counter["n"] = 0
        jaxpr = jax.make_jaxpr(lambda s, k: trainer.update(s, prob, h, k))(state, _key(1))
        out[name] = {"models": 2 + int(state.reward_params is not None), "policy_forward": counter["n"],
                     "samples_per_prompt": _count_random_draws(jaxpr.jaxpr) / (X * N),
                     "labels_per_update": int(np.count_nonzero(np.asarray(h["pair_weight"])))}
    return out


# ----------------------------------------------------------------------------------------
# stage "drift": out-of-data mass, function approximation vs tabular
def drift(cfg, progress=False) -> dict:
    """DPO on finite pairs with a misspecified log-linear policy (random features unrelated to the reward;
    Adam, from ``pi_ref``): ``{"loglinear": {mass_outside, kl: (seeds, T)}}`` and ``steps``. Reported
    beside ``dpo-drift``, whose check runs on the extrapolation toy (see :func:`claim_drift`)."""
    ns, T = cfg["seeds"], cfg["drift_steps"]
    keys = jax.random.split(_key(31), ns)
    s, psi, probs = jax.jit(jax.vmap(lambda k: misspecified_problem(k, cfg)))(keys)
    leaves = {"beta": np.full(ns, cfg["drift_beta"], np.float32), "run_key": jax.random.key_data(keys),
              "support": s, "psi": psi, **problem_leaves(probs)}

    def observe(table, train, h, prob):
        return {"mass_outside": jnp.mean(cov.mass_outside(table, h["support"])),
                "kl": jnp.mean(cov.reverse_kl(table, prob.log_pi_ref))}

    pol = loglinear(cfg["drift_dim"], cfg["drift_responses"])
    program = trainer_program(TRAINERS.get("dpo")(pol, optimizer="adam"), pol, lambda h: (h["psi"], h["log_pi_ref"]),
                              observe, num_steps=T, log_every=T // 10)
    res = _run(program, {**leaves, "learning_rate": np.full(ns, cfg["drift_lr"], np.float32)}, num_steps=T,
               log_every=T // 10, progress=progress)
    return {"steps": res.pop("steps"), "loglinear": res}


# ----------------------------------------------------------------------------------------
# stage "extrapolation": linear function approximation, best response unseen
def extrapolation(cfg, progress=False) -> dict:
    """DPO and RLHF with a realizable log-linear policy, and tabular DPO (plain gradient) as control:
    ``{algo: {logp_*: (seeds, T)}}`` and ``steps``."""
    ns, T = cfg["seeds"], cfg["ext_steps"]
    X, N = cfg["ext_prompts"], cfg["ext_responses"]
    keys = jax.random.split(_key(21), ns)
    best, support, problems = jax.jit(jax.vmap(lambda k: extrapolation_problem(k, cfg)))(keys)
    leaves = {"beta": np.full(ns, cfg["ext_beta"], np.float32), "learning_rate": np.full(ns, cfg["ext_lr"], np.float32),
              "reward_learning_rate": np.full(ns, cfg["reward_learning_rate"], np.float32),
              "run_key": jax.random.key_data(keys), "best": best, "support": support,
              "init_logits": problems.log_pi_ref,
              **problem_leaves(problems)}

    def observe(table, train, h, prob):
        p = prob.pairs
        return {"logp_best": jnp.mean(jnp.take_along_axis(table, h["best"][:, None], -1)),
                "logp_chosen": jnp.sum(p.weight * table[p.x, p.y_w]),
                "logp_rejected": jnp.sum(p.weight * table[p.x, p.y_l]),
                "mass_outside": jnp.mean(cov.mass_outside(table, h["support"]))}

    lin = loglinear(cfg["ext_dim"], N)
    runs = {name: (lin, TRAINERS.get(name)(lin, reward_model=linear_reward(cfg["ext_dim"]), mode="exact",
                                           reward_steps=cfg["reward_steps"]), lambda h: (h["features"], h["log_pi_ref"]),
                   None, cfg["ext_lr"]) for name in EXT_ALGOS}
    tab = tabular(X, N)
    runs["tabular-dpo"] = (tab, TRAINERS.get("dpo")(tab, optimizer="sgd"), lambda h: jnp.arange(X), _tabular_init,
                           cfg["tab_sgd_lr"])
    out = {}
    for name, (pol, trainer, prompts, init, lr) in runs.items():
        program = trainer_program(trainer, pol, prompts, observe, num_steps=T, log_every=T // 10, init_params=init)
        res = _run(program, {**leaves, "learning_rate": np.full(ns, lr, np.float32)}, num_steps=T,
                   log_every=T // 10, progress=progress)
        out["steps"] = res.pop("steps")
        out[name] = res
    return out


# ----------------------------------------------------------------------------------------
# claims
def _means(sub, method, key):
    return np.asarray(sub[method][key], np.float64).mean(-1)


def _bound(sub):
    """RLHF's suboptimality bound per (level, seed): ``E_x[max_y D - min_y D]``, ``D = r - r_hat``.

    For a maximiser of ``J_beta`` under ``r_hat``, ``J*_beta - J_beta(pi) <= E_{pi*} D - E_pi D``
    (add and subtract ``J_beta`` under ``r_hat`` at ``pi*`` and ``pi``), at most the range of ``D``:
    a constant that does not depend on ``pi_ref``'s mass outside the data (what partial coverage
    allows: the reward model is only wrong, boundedly, where the data is silent).
    """
    return np.asarray(sub["rlhf-exact"]["reward_error_range"], np.float64)


def grows_without_bound(gap, mass_unseen, eps, beta, bound):
    """The check of ``offline-unbounded``: per-level mean gap rises at every tenfold-or-more loss of
    coverage by at least ``growth_fraction * beta * pi(U) * ln(eps_i / eps_{i+1})`` and ends above
    the online bound. Returns ``(holds, per-step increments, per-step theory increments)``."""
    inc = np.diff(gap)
    theory = beta * mass_unseen[1:] * np.log(eps[:-1] / eps[1:])
    ok = bool(np.all(inc > 0) and np.all(inc >= THRESHOLDS["growth_fraction"] * theory) and gap[-1] > bound)
    return ok, inc, theory


def claim_offline_unbounded(cfg, sub):
    eps, beta = sub["eps"], cfg["beta"]
    bound = float(_bound(sub)[-1].mean())
    res, ok = {}, True
    for m in OFFLINE:
        g, mu = _means(sub, m, "gap"), _means(sub, m, "mass_unseen")
        h, inc, th = grows_without_bound(g, mu, eps, beta, bound)
        res[m] = {"gap_per_level": g.tolist(), "mass_unseen_per_level": mu.tolist(),
                  "increments": inc.tolist(), "theory_increments": th.tolist()}
        ok &= h
    g, mu = _means(sub, "rlhf-exact", "gap"), _means(sub, "rlhf-exact", "mass_unseen")
    ctrl, _, _ = grows_without_bound(g, mu, eps, beta, bound)
    return claim(
        "offline-unbounded",
        "Offline contrastive methods (DPO, IPO) need global coverage: as the global coverage coefficient grows "
        "without bound while the data (and partial coverage of it) stays the same, their suboptimality "
        "J*_beta - J_beta(pi) grows without bound.",
        f"{SOURCE}, Sec. 4 (global coverage necessary for offline contrastive methods; lower-bound construction: "
        "a DPO minimiser may put mass where pi_ref has almost none)",
        "global coverage is necessary for offline contrastive methods to converge to the optimal policy (abstract); "
        "without it the returned policy's KL-regularised value is unbounded below",
        {"pi_ref_mass_unseen": eps.tolist(), "c_glo": sub["c_glo"].mean(-1).tolist(),
         "online_bound_at_lowest_coverage": bound, **res},
        ok,
        "Mechanism: the DPO/IPO loss only reads log-ratio differences inside S, so a tabular policy trained by "
        "gradient steps keeps its unseen logits where it started; pi(U) stays put while pi_ref(U) = eps -> 0, and "
        "KL(pi || pi_ref) >= pi(U) log(pi(U)/eps) grows like ln(1/eps). Check fixed before running: the gap rises "
        f"at each step by at least {THRESHOLDS['growth_fraction']} x beta * pi(U) * ln(eps_i/eps_(i+1)) and ends "
        f"above RLHF's bound. {UNVERIFIED}",
        setting=(f"tabular policy (the class in which C_glo = max 1/pi_ref is exact), {cfg['sub_prompts']} prompts x "
                 f"{cfg['sub_responses']} responses, data support S = {cfg['sub_support']} responses per prompt, "
                 f"population BT pairs on S (infinite data: no statistical error, coverage is the only variable); "
                 f"pi_ref(U) = 10^-e for e in {cfg['eps_exponents']}; beta = {beta}; every method starts from the "
                 f"uniform policy (not from pi_ref: the theorem is about any minimiser, and started at pi_ref a "
                 f"tabular DPO keeps pi(U) = pi_ref(U)); Adam, lr {cfg['learning_rate']}, {cfg['num_steps']} exact-gradient "
                 f"steps; {cfg['seeds']} datasets, means."),
        control=control("The same check applied to online RLHF (exact gradient), which the paper says needs only "
                        "partial coverage", {"gap_per_level": g.tolist()}, ctrl))


def _within_bound(sub, methods, bound):
    """Per method: mean gap per level and the largest excess over ``bound``; and whether every run of
    every method stays within it (at every level and seed)."""
    res, ok = {}, True
    for m in methods:
        g = np.asarray(sub[m]["gap"], np.float64)
        res[m] = {"gap_per_level": g.mean(-1).tolist(), "max_gap_over_bound": float((g - bound).max())}
        ok &= bool(np.all(g <= bound))
    return res, ok


def claim_online_bounded(cfg, sub):
    bound = _bound(sub)
    res, ok = _within_bound(sub, ONLINE, bound)
    gd = np.asarray(sub["dpo"]["gap"], np.float64)
    return claim(
        "online-bounded",
        "Online RLHF needs only partial coverage: its suboptimality stays bounded (by what the reward model's "
        "error allows where the data is silent) however small pi_ref's mass outside the data.",
        f"{SOURCE}, Sec. 4 (online RL converges under partial / local KL-ball coverage)",
        "a weaker partial (local KL-ball) coverage suffices for online RL (abstract)",
        {"bound_per_level": bound.mean(-1).tolist(), **res},
        ok,
        "Bound (theory, computed per run): J*_beta - J_beta(pi) <= E_pi* D - E_pi D <= E_x[max_y D - min_y D], "
        "D = r - r_hat, for the maximiser pi of J_beta under r_hat; the tabular reward model is fit by BT maximum "
        "likelihood and keeps r_hat = 0 on U (bounded where the data is silent). Must hold at every level and seed. "
        + UNVERIFIED,
        setting="as offline-unbounded; RLHF = BT reward fit (Adam, "
                f"{cfg['reward_steps']} steps) then {cfg['num_steps']} Adam steps on E_pi r_hat - beta KL, exact "
                f"gradient or REINFORCE with leave-one-out baseline over k = {cfg['num_samples']} samples per prompt.",
        control=control("The same bound applied to DPO's runs", {"dpo_gap_per_level": gd.mean(-1).tolist(),
                                                                 "max_gap_over_bound": float((gd - bound).max())},
                        bool(np.all(gd <= bound))))


def claim_hypo_with_online(cfg, sub, trade):
    bound = _bound(sub)
    res, ok = _within_bound(sub, HYBRID, bound)
    li = cfg["eps_exponents"].index(cfg["tradeoff_exponent"])
    g0 = np.asarray(trade["gap"][0], np.float64)
    return claim(
        "hypo-with-online",
        "HyPO (DPO on the offline pairs plus a reverse-KL penalty estimated on online, unlabelled samples) keeps "
        "the online method's guarantee: its suboptimality stays bounded as global coverage is lost.",
        f"{SOURCE}, Sec. 5 (HyPO; its analysis under partial coverage)",
        "HyPO uses offline data for the contrastive objective and online unlabelled data for KL regularisation "
        "(abstract); it inherits the online method's coverage requirement",
        {"bound_per_level": bound.mean(-1).tolist(), **res},
        ok,
        "Same bound as online-bounded (RLHF's, same data), at every level and seed. Mechanism: the KL gradient "
        "reaches the unseen logits the DPO loss cannot, pulling pi(U) down with pi_ref(U). " + UNVERIFIED,
        setting=f"as offline-unbounded; HyPO loss = DPO loss + lam * mean_x KL(pi || pi_ref) with lam = "
                f"{cfg['lam_over_beta']} * beta, KL exact or its RLOO gradient estimate over k = {cfg['num_samples']} "
                "samples per prompt (see hypo-improves-on-dpo for the weight's convention).",
        control=control("HyPO with its KL weight set to 0 (a deliberately broken HyPO: DPO), at pi_ref(U) = "
                        f"1e-{cfg['tradeoff_exponent']}", {"gap": g0.tolist(), "bound": bound[li].tolist()},
                        bool(np.all(g0 <= bound[li]))))


def claim_dpo_global(cfg, sub):
    g = np.asarray(sub["global"]["gap"], np.float64)
    gp = np.asarray(sub["dpo"]["gap"][0], np.float64)
    tol = THRESHOLDS["global_gap"]
    return claim(
        "dpo-global",
        "Under global coverage DPO converges to the optimal policy pi* ∝ pi_ref exp(r/beta): suboptimality 0.",
        f"{SOURCE}, Sec. 4 (global coverage sufficient for offline contrastive methods)",
        "global coverage is sufficient for offline contrastive methods to converge to the optimal policy (abstract)",
        {"gap_global": g.tolist(), "c_glo_global": "max 1/softmax(base): bounded"},
        bool(g.max() <= tol),
        f"'0' = below {tol} (float32, finite steps), fixed before running. " + UNVERIFIED,
        setting="as offline-unbounded but the data's support is every response and pi_ref is the base softmax "
                "(no responses with vanishing mass); population BT pairs; DPO from the uniform policy.",
        control=control(f"The same check on DPO under partial coverage at the highest level, pi_ref(U) = "
                        f"{sub['eps'][0]:g}", {"gap": gp.tolist()}, bool(gp.max() <= tol)))


def claim_nonuniqueness(cfg, nu):
    T = THRESHOLDS

    def check(c):
        dl = np.abs(nu["dpo_loss"][c, 0] - nu["dpo_loss"][c, 1]).astype(np.float64)
        dj = np.abs(nu["objective"][c, 0] - nu["objective"][c, 1]).astype(np.float64)
        dk = np.abs(nu["kl"][c, 0] - nu["kl"][c, 1]).astype(np.float64)
        m = {"loss_pi_ref_start": nu["dpo_loss"][c, 0].tolist(), "loss_tilted_start": nu["dpo_loss"][c, 1].tolist(),
             "abs_loss_difference": dl.tolist(), "J_beta": [nu["objective"][c, 0].tolist(), nu["objective"][c, 1].tolist()],
             "reverse_kl": [nu["kl"][c, 0].tolist(), nu["kl"][c, 1].tolist()], "abs_J_difference": dj.tolist(),
             "abs_kl_difference": dk.tolist(),
             "construction_loss_change": np.abs(nu["dpo_loss_tilted"][c, 0] - nu["dpo_loss"][c, 0]).tolist()}
        return bool(dl.max() <= T["equal_loss"] and dj.min() >= T["different_j"]), m

    ok, mp = check(0)
    ctrl, mg = check(1)
    return claim(
        "non-uniqueness",
        "Without global coverage the DPO loss does not determine the policy: two policies reached by the same DPO "
        "procedure have equal DPO loss and very different J_beta and reverse KL; with global coverage they cannot.",
        f"{SOURCE}, Sec. 4 (proof that global coverage is necessary: the loss only constrains the policy on the "
        "data's support)",
        "DPO's minimiser is not unique under partial coverage (the construction behind the necessity result)",
        mp, ok,
        f"The theorem's construction: tilting a policy's logits on U (responses outside the data) by {cfg['nu_tilt']} "
        "leaves every in-data log-ratio difference, hence the DPO loss, unchanged. Both runs use one procedure "
        "(tabular DPO, Adam, the same data, steps and learning rate) started at pi_ref and at pi_ref tilted on U "
        "(a deterministic start differing only along the loss's null direction; no randomness). 'Equal' = within "
        f"{T['equal_loss']}; 'very different' = |J_beta difference| >= {T['different_j']} (rewards have std ~1). "
        "construction_loss_change: the loss change when the final policy is tilted on U. " + UNVERIFIED,
        setting=f"tabular, population pairs, pi_ref(U) = {cfg['nu_eps']} (partial) or support = all (global), "
                f"beta = {cfg['beta']}, {cfg['num_steps']} Adam steps, {cfg['seeds']} datasets (the sweep's).",
        control=control("The same pair of runs and check under global coverage (U in the data)", mg, ctrl))


def claim_hypo_improves(cfg, sub, trade):
    li = cfg["eps_exponents"].index(cfg["tradeoff_exponent"])
    lams = list(np.asarray(trade["lam_over_beta"], np.float64).round(6))
    i = lams.index(cfg["lam_over_beta"])
    tol = 1e-4

    def check(j):
        r, k, J = (float(np.mean(trade[key][j])) for key in ("reward", "kl", "objective"))
        rd, kd = float(sub["dpo"]["reward"][li].mean()), float(sub["dpo"]["kl"][li].mean())
        jr = float(np.mean(trade["ref"]["objective"]))
        return bool(r > rd + tol and k < kd - tol and J > jr + tol), {
            "hypo_reward": r, "hypo_kl": k, "hypo_J": J, "dpo_reward": rd, "dpo_kl": kd, "pi_ref_J": jr}

    ok, m = check(i)
    ctrl, mc = check(lams.index(0.0))
    sweep = {f"lam/beta={lam:g}": {"reward": float(np.mean(trade["reward"][j])), "kl": float(np.mean(trade["kl"][j])),
                                   "gap": float(np.mean(trade["gap"][j]))} for j, lam in enumerate(lams)}
    sweep["rlhf-exact"] = {k: float(sub["rlhf-exact"][k][li].mean()) for k in ("reward", "kl", "gap")}
    return claim(
        "hypo-improves-on-dpo",
        "HyPO improves on DPO: higher reward and lower reverse KL(pi || pi_ref), in a class that can express the "
        "reward (and so improve on pi_ref).",
        f"{SOURCE}, Sec. 6 (TL;DR summarisation experiments: HyPO vs DPO in win rate/reward and reverse KL)",
        "HyPO outperforms DPO (abstract); on TL;DR it has higher GPT-4 win rate and RM score and lower reverse KL "
        "(the table's numbers could not be read here)",
        {**m, "tradeoff": sweep}, ok,
        f"At the default weight lam = {cfg['lam_over_beta']} * beta (fixed before running), means over datasets; "
        f"'better' = by more than {tol} (float32 noise); J_beta(HyPO) must also beat J_beta(pi_ref). HyPO's objective "
        "as implemented: DPO loss -log sigmoid(beta h) on the offline pairs + lam * reverse KL, the KL from the exact "
        "table or its RLOO gradient over k online samples per prompt (no labels). Whether the paper multiplies its "
        "KL weight by beta, its number of online samples and its KL estimator could not be checked (full text not "
        "reachable); our lam is the KL's total weight, and the sweep over lam/beta in "
        f"{cfg['lam_grid']} shows the trade-off either way. {UNVERIFIED}",
        setting=f"tabular (expresses any reward), pi_ref(U) = 1e-{cfg['tradeoff_exponent']}, exact KL, otherwise as "
                "offline-unbounded; DPO and RLHF at the same level from stage suboptimality.",
        control=control("The same check on HyPO with KL weight 0 (a deliberately broken HyPO: DPO itself)", mc, ctrl))


def claim_hypo_cost(cfg, counts):
    c = counts
    k = cfg["num_samples"]

    def check(name):
        return bool(c[name]["models"] == c["dpo"]["models"] and c[name]["samples_per_prompt"] == k
                    and c["dpo"]["samples_per_prompt"] == 0 and c[name]["policy_forward"] == c["dpo"]["policy_forward"])

    ctrl_counts = {**c, "rlhf_models_vs_dpo": [c["rlhf"]["models"], c["dpo"]["models"]]}
    return claim(
        "hypo-cost",
        "HyPO keeps DPO's memory and computation: no reward model (or critic) beside the policy and reference, one "
        "policy evaluation per update; its only addition is k online, unlabelled samples per prompt.",
        f"{SOURCE}, Sec. 5 (HyPO, Algorithm 1; abstract: offline data for the contrastive loss, online unlabelled "
        "data for KL regularisation)",
        "HyPO needs no reward model and no labels for its online samples (abstract)",
        c, check("hypo"),
        "Counted deterministically on one traced update (sampled mode): models read (policy, reference, reward model "
        "if the train state holds one), policy log_probs calls during tracing, random draws / (X N) = responses "
        "sampled per prompt (a categorical draw reads N Gumbel numbers), preference labels read. RLHF's reward fit "
        "(in init) is not in the update. Wall times are in benchmarks/bench_hypo_cost.py, not in a claim. "
        + UNVERIFIED,
        setting=f"the sweep's tabular problem, k = {k}; an LLM's costs scale with the same counts (models in memory, "
                "forward/backward passes, generated samples).",
        control=control("The same check on RLHF in HyPO's place (it holds a reward model)", ctrl_counts, check("rlhf")))


def claim_drift(cfg, dr, ext):
    m0, rise = 0.3, THRESHOLDS["mass_rise"]  # pi_ref's mass outside S in the extrapolation toy
    m_fa = np.asarray(ext["dpo"]["mass_outside"], np.float64).mean(0)
    m_tab = np.asarray(ext["tabular-dpo"]["mass_outside"], np.float64).mean(0)
    mis = np.asarray(dr["loglinear"]["mass_outside"], np.float64)
    return claim(
        "dpo-drift",
        "Offline DPO under partial coverage moves probability onto responses outside the data (out-of-distribution "
        "mass rises during training).",
        f"{SOURCE}, Sec. 4 and its appendix figure on out-of-distribution probability during DPO training",
        "DPO increases the probability of out-of-distribution responses (figure; its setting unverified)",
        {"linear_fa_mass_outside_over_time": m_fa.tolist(), "pi_ref_mass_outside": m0,
         "misspecified_fa_mass_outside_end_per_seed": mis[:, -1].tolist(),
         "misspecified_pi_ref_mass_outside": cfg["drift_mass"]},
        bool(m_fa[-1] > m0 + rise),
        "Mechanism: function approximation. The parameters are shared by all responses, so the DPO fit on the data "
        "moves the unseen responses too; with the reward's own features DPO lowers the log-probabilities of both the "
        "chosen and the rejected in-data responses (see extrapolation), so the in-data mass falls and the "
        "out-of-data mass rises. With a tabular policy and plain gradient steps the unseen logits cannot move (their "
        "DPO gradient is exactly 0) and the out-of-data mass falls as the in-data logits spread (control). A "
        "third-party summary says the paper's figure is 'DPO without function approximation'; we could not read "
        "the figure, and in that (tabular) setting we measure the opposite, so we claim the mechanism only with "
        "function approximation. With misspecified features (unrelated to the reward: reported, not claimed) the "
        "direction depends on the draw of features: see misspecified_fa_mass_outside_end_per_seed. Threshold: end "
        f"mass > pi_ref's + {rise}. {UNVERIFIED}",
        setting=f"the extrapolation toy (realizable log-linear policy pi ∝ pi_ref exp(<phi, theta>), linear reward, "
                f"{cfg['ext_prompts']} prompts x {cfg['ext_responses']} responses, |S| = {cfg['ext_support']}, "
                f"pi_ref mass outside S = {m0}, {cfg['ext_pairs']} sampled BT pairs, beta = {cfg['ext_beta']}, Adam lr "
                f"{cfg['ext_lr']}, {cfg['ext_steps']} steps from pi_ref, {cfg['seeds']} seeds). Misspecified variant: "
                f"{cfg['drift_prompts']} x {cfg['drift_responses']}, |S| = {cfg['drift_support']}, random features of "
                f"dim {cfg['drift_dim']}, beta = {cfg['drift_beta']}, {cfg['drift_steps']} Adam steps.",
        control=control("The same check on tabular DPO with plain gradient steps (lr "
                        f"{cfg['tab_sgd_lr']}) from pi_ref on the same data",
                        {"tabular_mass_outside_over_time": m_tab.tolist()}, bool(m_tab[-1] > m0 + rise)))


def claim_extrapolation(cfg, ext):
    def deltas(name):
        e = ext[name]
        return {k: float((e[f"logp_{k}"][:, -1] - e[f"logp_{k}"][:, 0]).mean()) for k in ("best", "chosen", "rejected")}

    res = {n: deltas(n) for n in EXT_ALGOS}
    ok = all(res[n]["best"] > 0 and res[n]["chosen"] < 0 for n in EXT_ALGOS)
    t = deltas("tabular-dpo")
    return claim(
        "extrapolation",
        "With linear function approximation, DPO and RLHF both raise the probability of the best response although "
        "it never appears in the data, while lowering the log-probability of the preferred responses that do appear.",
        f"{SOURCE}, appendix (extrapolation toy with linear function approximation; figure number unverified)",
        "log pi(best unseen) rises, log pi(preferred seen) falls, for both",
        res, bool(ok),
        "Mechanism: the reward's own features are shared by seen and unseen responses, so the in-data fit moves "
        f"theta towards the reward direction, which favours the unseen best response. {UNVERIFIED}",
        setting=f"realizable log-linear policy and linear reward model, best response excluded from S "
                f"(|S| = {cfg['ext_support']} of {cfg['ext_responses']}), {cfg['ext_pairs']} BT pairs, beta = "
                f"{cfg['ext_beta']}, {cfg['ext_steps']} Adam steps (lr {cfg['ext_lr']}), {cfg['seeds']} seeds.",
        control=control("The same check on a tabular DPO policy under plain gradient steps (no function "
                        "approximation: the unseen best response's logit cannot move)", t,
                        bool(t["best"] > 0 and t["chosen"] < 0)))


# ----------------------------------------------------------------------------------------
# tables and plots
def tables(ctx, cfg, sub, trade, axes) -> None:
    """``suboptimality.csv`` (per method and level: means over datasets), ``hypo_tradeoff.csv`` and
    ``coverage_axes.csv`` (support size and data size)."""
    bound = _bound(sub).mean(-1)
    ctx.write_csv("suboptimality.csv", [
        {"method": m, "pi_ref_mass_unseen": float(e), "c_glo": float(sub["c_glo"][i].mean()),
         "c_loc_1nat": float(sub["c_loc"][i].mean()), "rlhf_bound": float(bound[i]),
         **{k: float(np.mean(sub[m][k][i])) for k in ("gap", "kl", "reward", "objective", "mass_unseen")}}
        for m in METHODS for i, e in enumerate(sub["eps"])])
    ctx.write_csv("hypo_tradeoff.csv", [
        {"lam_over_beta": float(lam), **{k: float(np.mean(trade[k][j])) for k in ("reward", "kl", "objective", "gap")}}
        for j, lam in enumerate(trade["lam_over_beta"])])
    rows = []
    for axis, values in (("support", axes["support_size"]), ("pairs", axes["num_pairs"])):
        for i, v in enumerate(values):
            for m in AXES_METHODS:
                a = axes[m][axis]
                rows.append({"axis": "support_size" if axis == "support" else "num_pairs", "value": int(v), "method": m,
                             **{k: float(np.mean(a[k][i])) for k in ("gap", "kl", "reward", "mass_unseen")},
                             "pi_ref_mass_unseen": (float(np.mean(axes["pi_ref_mass_unseen_pairs"][i])) if axis == "pairs"
                                                    else (0.0 if v >= cfg["sub_responses"] else 10.0 ** -cfg["tradeoff_exponent"]))})
    ctx.write_csv("coverage_axes.csv", rows)


def plots(ctx, cfg, sub, trade, dr, ext, cax) -> None:
    """``suboptimality_vs_coverage.png``, ``coverage_axes.png``, ``hypo_tradeoff.png``, ``drift.png``,
    ``extrapolation.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    c = sub["c_glo"].mean(-1)
    for ax, yscale in zip(axes, ("linear", "log")):
        for m in METHODS:
            g = np.asarray(sub[m]["gap"], np.float64)
            ax.errorbar(c, g.mean(-1), yerr=g.std(-1), marker="o", ms=3, label=m)
        ax.plot(c, _bound(sub).mean(-1), "k--", lw=1, label="RLHF bound (reward-error range)")
        ax.axhline(max(float(np.mean(sub["global"]["gap"])), 1e-7), color="gray", lw=1, ls=":",
                   label="DPO, global coverage")
        ax.set_xscale("log"), ax.set_yscale(yscale), ax.set_xlabel("global coverage coefficient C_glo = max 1/pi_ref")
        ax.set_ylabel("suboptimality J*_beta - J_beta(pi)")
    axes[0].legend(fontsize=7)
    axes[0].set_title("partial coverage: same data, pi_ref(U) -> 0"), axes[1].set_title("same, log scale")
    ctx.savefig(fig, "suboptimality_vs_coverage.png")

    fig, axs = plt.subplots(1, 2, figsize=(11, 4))
    for ax, axis, values, lab in ((axs[0], "support", cax["support_size"], "responses per prompt in the data (8 = all)"),
                                  (axs[1], "pairs", cax["num_pairs"], "number of sampled pairs")):
        for m in AXES_METHODS:
            g = np.asarray(cax[m][axis]["gap"], np.float64)
            ax.errorbar(values, g.mean(-1), yerr=g.std(-1), marker="o", ms=3, label=m)
        ax.set_xlabel(lab), ax.set_ylabel("suboptimality J*_beta - J_beta(pi)"), ax.legend(fontsize=7)
    axs[0].set_title(f"population pairs, pi_ref(U) = 1e-{cfg['tradeoff_exponent']}")
    axs[1].set_xscale("log"), axs[1].set_title(f"pairs from pi_ref, pi_ref(U) = {cfg['axis_eps']}")
    ctx.savefig(fig, "coverage_axes.png")

    li = cfg["eps_exponents"].index(cfg["tradeoff_exponent"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    kl, rw = np.asarray(trade["kl"]).mean(-1), np.asarray(trade["reward"]).mean(-1)
    ax.plot(kl, rw, "o-", label="HyPO, lam/beta sweep")
    for j, lam in enumerate(trade["lam_over_beta"]):
        ax.annotate(f"{lam:g}", (kl[j], rw[j]), fontsize=7)
    for m, mk in (("dpo", "s"), ("rlhf-exact", "^")):
        ax.plot(sub[m]["kl"][li].mean(), sub[m]["reward"][li].mean(), mk, ms=8, label=m)
    ax.set_xscale("symlog", linthresh=0.1), ax.set_xlabel("reverse KL(pi || pi_ref)"), ax.set_ylabel("true reward")
    ax.legend(fontsize=7), ax.set_title(f"pi_ref(U) = 1e-{cfg['tradeoff_exponent']}")
    ctx.savefig(fig, "hypo_tradeoff.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, lab in (("dpo", "DPO, linear FA (realizable)"), ("tabular-dpo", "DPO, tabular, plain gradient")):
        axes[0].plot(ext["steps"], np.asarray(ext[name]["mass_outside"]).mean(0), label=lab)
    axes[0].axhline(0.3, color="gray", ls=":", label="pi_ref")
    axes[0].set_title("extrapolation toy"), axes[0].set_xlabel("step"), axes[0].set_ylabel("mass outside the data")
    axes[0].legend(fontsize=7)
    for i, y in enumerate(np.asarray(dr["loglinear"]["mass_outside"])):
        axes[1].plot(dr["steps"], y, label=f"seed {i}")
    axes[1].axhline(cfg["drift_mass"], color="gray", ls=":", label="pi_ref")
    axes[1].set_title("misspecified features (reported, not claimed)"), axes[1].set_xlabel("step")
    axes[1].legend(fontsize=7)
    ctx.savefig(fig, "drift.png")

    names = (*EXT_ALGOS, "tabular-dpo")
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5))
    for ax, name in zip(axes, names):
        for key in ("logp_best", "logp_chosen", "logp_rejected"):
            ax.plot(ext["steps"], ext[name][key].mean(0), label=key)
        ax.set_title(f"{name}: best response unseen"), ax.set_xlabel("step"), ax.legend(fontsize=7)
    ctx.savefig(fig, "extrapolation.png")


# ----------------------------------------------------------------------------------------
def reproduce(ctx: SuiteContext):
    """Run the coverage claims (see module docstring); returns the list of claims."""
    cfg = settings(ctx.scale)
    check_hparams({"beta": np.asarray([cfg["beta"], cfg["drift_beta"], cfg["ext_beta"]]),
                   "learning_rate": np.asarray([cfg["learning_rate"], cfg["reward_learning_rate"], cfg["drift_lr"],
                                                cfg["ext_lr"]]),
                   "lam": np.asarray(cfg["lam_grid"])}, ("beta", "learning_rate", "lam"))
    ctx.config.update({"scale": ctx.scale, **cfg, "thresholds": THRESHOLDS})
    sub = ctx.stage("suboptimality", lambda: suboptimality(cfg, ctx.progress))
    nu = ctx.stage("nonuniqueness", lambda: nonuniqueness(cfg, ctx.progress))
    trade = ctx.stage("hypo-tradeoff", lambda: hypo_tradeoff(cfg, ctx.progress))
    axes = ctx.stage("axes", lambda: coverage_axes(cfg, ctx.progress))
    counts = ctx.stage("cost", lambda: update_counts(cfg))
    dr = ctx.stage("drift", lambda: drift(cfg, ctx.progress))
    ext = ctx.stage("extrapolation", lambda: extrapolation(cfg, ctx.progress))
    tables(ctx, cfg, sub, trade, axes)
    plots(ctx, cfg, sub, trade, dr, ext, axes)
    return [claim_offline_unbounded(cfg, sub), claim_online_bounded(cfg, sub), claim_hypo_with_online(cfg, sub, trade),
            claim_dpo_global(cfg, sub), claim_nonuniqueness(cfg, nu), claim_hypo_improves(cfg, sub, trade),
            claim_hypo_cost(cfg, counts), claim_drift(cfg, dr, ext), claim_extrapolation(cfg, ext)]


SUITES.register("coverage", reproduce, meta={"description": "Song et al. 2024 (arXiv 2406.01462): suboptimality vs "
                                                           "coverage for DPO/IPO, RLHF and HyPO on bandits"})
