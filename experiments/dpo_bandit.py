"""DPO (or any registered loss) on a tabular contextual bandit with Bradley–Terry preferences.

The instance (drawn from the run's key): ``num_prompts`` prompts, ``num_responses`` responses,
hidden rewards ``r(x, y) = reward_scale * N(0, 1)``, reference ``pi_ref(.|x) =
softmax(N(0, 1))``, preferences ``P[x, y, y'] = sigmoid(r(x,y) - r(x,y'))``. The policy is
tabular and starts at ``pi_ref``. The closed-form DPO/RLHF optimum is

    pi*(y|x) ∝ pi_ref(y|x) exp(r(x, y) / beta).

Modes (static ``pairs``):

* ``"all"`` (every pair compared): every unordered pair ``y < y'`` with its label
  ``alpha``; loss per prompt ``L_x = (1/N) sum_{y<y'} [alpha l(h) + (1 - alpha) l(-h)] =
  (1/N) sum_{y != y'} alpha_{yy'} l(h_{yy'})`` with ``l`` the DPO loss, computed densely over
  the ``(N, N)`` matrix of ordered pairs. Soft labels ``alpha = sigmoid(r_y - r_y')`` give the
  population loss, minimised at ``pi*``; hard labels give ``alpha = K / k`` with ``K ~
  Binomial(k, sigmoid(r_y - r_y'))`` votes out of ``k = labels_per_pair`` (a continuous
  hyperparameter) for each unordered pair: sampled labels on a fully connected comparison graph.
* ``"sampled"``: ``max_pairs`` pairs per prompt drawn uniformly among ``y != y'``; the first
  ``num_pairs`` (a continuous hyperparameter, so data size is swept in one compile) are
  used; labels are soft (``alpha``) or hard (Bernoulli(alpha)) per ``labels``. The loss is
  the empirical mean rescaled by ``(N - 1) / 2`` to match the population scale.

Loss (static ``loss``, a component): ``l`` is the registered loss of that name (default
``dpo``), called as ``l(log pi(y), log pi(y'), log pi_ref(y), log pi_ref(y'), beta=beta, **extra)``
on one-token responses (sequence lengths 1), with its own hyperparameters namespaced by its
name (``simpo.gamma``, ``gamma_dpo.gamma``, ``cdpo.eps``): settable and sweepable, e.g.
``alignjax run dpo-bandit --set loss=simpo --sweep simpo.gamma=0,0.5,1 --sweep beta=0.1,1``.
The observed distances are to the RLHF optimum ``pi*`` above (DPO's minimiser; other losses
minimise elsewhere, e.g. IPO's regresses the margin onto ``(2 alpha - 1)/(2 beta)``-like targets).

Observed against exact limits (:mod:`alignjax.metrics.bandit`): ``coverage_err``, the distance
to where DPO with exact labels on the observed pairs ends (``pi*`` inside each connected
component of the comparison graph), ``connected`` (the share of prompts whose graph connects
every response), ``reward_mse`` (the squared error of the implicit reward ``beta log
pi/pi_ref``), ``max_abs_log_err_ipo`` (the distance to IPO's population optimum) and ``logp``.

Optimiser: full-batch gradient descent on the logits with step ``learning_rate / beta**2``.
For DPO the Hessian of ``L_x`` in the logits is ``beta**2 / N`` times a graph Laplacian with
weights ``sigma'(beta h) <= 1/4``, so this step makes the rate independent of beta; with every
pair any ``learning_rate < 8`` is stable. With sampled pairs each pair weighs ``(N - 1)/(2
num_pairs)``, a response's weighted degree can reach ``(N - 1)/2``, and the range that is stable
on every graph is ``learning_rate < 8/(N - 1)``: the default 4 makes isolated pairs oscillate
at small ``num_pairs`` (DPO's gradient is bounded, so such a run stays finite but does not
converge; the suite uses 0.5 there). Other losses have other curvatures: IPO's squared loss
``(h - 1/(2 beta))^2`` has Hessian ``2 x`` the weighted graph Laplacian whatever beta (every
nonzero eigenvalue is 2 with all pairs; at most ``2 (N - 1)`` with sampled pairs, whose
weighted degree is at most ``(N - 1)/2``), so it needs ``learning_rate < beta**2`` with all pairs
and ``learning_rate < beta**2 / (N - 1)`` with sampled ones (e.g. ``--set loss=ipo --set
learning_rate=0.0005`` at ``beta = 0.1``); a run that diverges ends with exit 3 and the first
non-finite value in its summary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax.metrics import expected_reward, optimal_policy, reverse_kl
from alignjax.metrics.bandit import comparison_reach, coverage_limit, implicit_reward_mse, ipo_optimum
from alignjax.experiment import Experiment, Program, check_representable, namespaced
from alignjax.registry import EXPERIMENTS, LOSSES, SUITES

HPARAMS = {"beta": 0.1, "learning_rate": 4.0, "reward_scale": 1.0, "num_pairs": 256.0, "labels_per_pair": 1.0}


def _instance(key, num_prompts, num_responses, reward_scale):
    k_r, k_ref = jax.random.split(key)
    r = reward_scale * jax.random.normal(k_r, (num_prompts, num_responses))
    log_ref = jax.nn.log_softmax(jax.random.normal(k_ref, (num_prompts, num_responses)), axis=-1)
    return r, log_ref


def optimum_logps(r, log_ref, beta):
    """``log pi*`` with ``pi* ∝ pi_ref exp(r / beta)`` (:func:`alignjax.metrics.optimal_policy`)."""
    return optimal_policy(log_ref, r, beta)


def make_program(config) -> Program:
    """The dpo-bandit :class:`Program` for a static ``config`` (see the module docstring).

    State: ``theta`` ``(num_prompts, N)`` logits (initialised to ``log pi_ref``), the instance
    ``data`` and a PRNG key. Step: ``theta <- theta - (learning_rate / beta**2) grad L(theta)``.
    Observed: the loss, ``max |log pi - log pi*|``, ``KL(pi* || pi)`` and ``KL(pi || pi_ref)``
    (both averaged over prompts, summed over responses), ``E_pi r``; against the exact limits of
    :mod:`alignjax.metrics.bandit`: ``coverage_err = max |log pi - log pi_C|`` with ``pi_C`` the
    coverage limit of the observed pairs (``pi*`` when every pair is compared),
    ``kl_coverage_limit = KL(pi* || pi_C)`` (the gap that coverage alone leaves), ``connected``
    (share of prompts whose comparison graph connects all responses), ``reward_mse`` (centred
    squared error of ``beta log pi/pi_ref`` against ``r``, mean over prompts),
    ``max_abs_log_err_ipo = max |log pi - log pi_IPO|`` (IPO's population optimum under the BT
    preferences, Azar et al. Eq. 9); and ``logp``, the ``(num_prompts, N)`` log-policy.
    """
    n_x, n_y = int(config["num_prompts"]), int(config["num_responses"])
    mode, labels, max_pairs = config["pairs"], config["labels"], int(config["max_pairs"])
    if mode not in ("all", "sampled"):
        raise ValueError(f"pairs must be 'all' or 'sampled'; got {mode!r}")
    if labels not in ("soft", "hard"):
        raise ValueError(f"labels must be 'soft' or 'hard'; got {labels!r}")

    def data(key, hp):
        k_inst, k_pairs, k_lab = jax.random.split(key, 3)
        r, log_ref = _instance(k_inst, n_x, n_y, hp["reward_scale"])
        d = dict(r=r, log_ref=log_ref)
        if mode == "all":  # dense: every ordered pair (y, y'), y != y', weight 1/N
            alpha = jax.nn.sigmoid(r[:, :, None] - r[:, None, :])
            if labels == "hard":  # k votes per unordered pair y < y'; the pair (y', y) gets 1 - share
                k = hp["labels_per_pair"]
                share = jax.random.binomial(k_lab, k, alpha) * (1.0 / k)
                upper = jnp.triu(jnp.ones((n_y, n_y), dtype=bool), 1)
                alpha = jnp.where(upper, share, jnp.where(upper.T, 1.0 - jnp.swapaxes(share, -1, -2), 0.5))
            d["alpha"] = alpha.astype(r.dtype)
            d["reach"] = jnp.ones((n_x, n_y, n_y), dtype=bool)
            return d
        a = jax.random.randint(k_pairs, (n_x, max_pairs), 0, n_y)
        b = (a + jax.random.randint(jax.random.fold_in(k_pairs, 1), (n_x, max_pairs), 1, n_y)) % n_y
        used = (jnp.arange(max_pairs) < hp["num_pairs"]).astype(jnp.float32)
        weight = used * (n_y - 1) / 2.0 * (1.0 / jnp.maximum(hp["num_pairs"], 1.0))
        alpha = jax.nn.sigmoid(jnp.take_along_axis(r, a, -1) - jnp.take_along_axis(r, b, -1))
        if labels == "hard":
            alpha = jax.random.bernoulli(k_lab, alpha).astype(jnp.float32)
        return {**d, "w": a, "l": b, "alpha": alpha, "weight": jnp.broadcast_to(weight, (n_x, max_pairs)),
                "reach": comparison_reach(a, b, jnp.broadcast_to(used, (n_x, max_pairs)), n_y)}

    off_diagonal = 1.0 - np.eye(n_y, dtype=np.float32)
    entry = LOSSES.entry(config["loss"])
    loss_keys = namespaced(entry, HPARAMS)  # e.g. {"gamma": "simpo.gamma"}; beta is shared
    ones = 1.0  # a response is one token: every sequence length is 1 (length-normalised losses)
    lengths = {"chosen_lengths": ones, "rejected_lengths": ones} if entry.meta.get("uses_lengths") else {}

    def pair_loss(chosen, rejected, log_ref_c, log_ref_r, hp):
        extra = {h: hp[k] for h, k in loss_keys.items()}
        return entry.obj(chosen, rejected, log_ref_c, log_ref_r, beta=hp["beta"], **extra, **lengths)

    def loss_fn(theta, d, hp):
        logp, log_ref = jax.nn.log_softmax(theta, axis=-1), d["log_ref"]
        if mode == "all":
            per_pair = d["alpha"] * pair_loss(logp[:, :, None], logp[:, None, :], log_ref[:, :, None],
                                              log_ref[:, None, :], hp)
            return jnp.sum(off_diagonal[None] * per_pair) * (1.0 / n_y)
        take = lambda x, i: jnp.take_along_axis(x, d[i], -1)  # noqa: E731
        pw, pl, rw, rl = take(logp, "w"), take(logp, "l"), take(log_ref, "w"), take(log_ref, "l")
        per_pair = d["alpha"] * pair_loss(pw, pl, rw, rl, hp) + (1 - d["alpha"]) * pair_loss(pl, pw, rl, rw, hp)
        return jnp.sum(d["weight"] * per_pair)

    def init(hp, key):
        k_data, key = jax.random.split(key)
        d = data(k_data, hp)
        return {"theta": d["log_ref"], "data": d, "key": key}

    def step(state, hp):
        g = jax.grad(loss_fn)(state["theta"], state["data"], hp)
        theta = state["theta"] - hp["learning_rate"] * (1.0 / hp["beta"] ** 2) * g
        return {**state, "theta": theta}

    def observe(state, hp):
        d, beta = state["data"], hp["beta"]
        logp = jax.nn.log_softmax(state["theta"], axis=-1)
        log_star = optimum_logps(d["r"], d["log_ref"], beta)
        log_cov = coverage_limit(d["log_ref"], d["log_ref"], d["r"], beta, d["reach"])
        prefs = jax.nn.sigmoid(d["r"][:, :, None] - d["r"][:, None, :])
        return {
            "loss": loss_fn(state["theta"], d, hp),
            "max_abs_log_err": jnp.max(jnp.abs(logp - log_star)),
            "kl_to_optimum": jnp.mean(reverse_kl(log_star, logp)),  # KL(pi* || pi)
            "reverse_kl_ref": jnp.mean(reverse_kl(logp, d["log_ref"])),  # KL(pi || pi_ref)
            "expected_reward": jnp.mean(expected_reward(logp, d["r"])),
            "coverage_err": jnp.max(jnp.abs(logp - log_cov)),
            "kl_coverage_limit": jnp.mean(reverse_kl(log_star, log_cov)),
            "connected": jnp.mean(jnp.all(d["reach"], axis=(-2, -1)).astype(logp.dtype)),
            "reward_mse": jnp.mean(implicit_reward_mse(logp, d["log_ref"], d["r"], beta)),
            "max_abs_log_err_ipo": jnp.max(jnp.abs(logp - ipo_optimum(d["log_ref"], prefs, beta))),
            "logp": logp,
        }

    return Program(init, step, observe)


def validate(config, hparams):
    """Reject sizes, step sizes (``learning_rate >= 8`` diverges) and data sizes out of range
    (``num_pairs`` in ``[1, max_pairs]``, ``labels_per_pair`` a whole number ``>= 1``).

    Also rejects ``beta`` so small (or large) that the step ``learning_rate / beta**2`` or the
    optimum's logits ``r / beta`` do not fit the run's float dtype.
    """
    if int(config["num_responses"]) < 2 or int(config["num_prompts"]) < 1:
        raise ValueError("need num_prompts >= 1 and num_responses >= 2")
    if np.any(np.asarray(hparams["learning_rate"]) >= 8):
        raise ValueError(f"learning_rate must be < 8 for stable descent; got {np.max(hparams['learning_rate']):g}")
    n = np.asarray(hparams["num_pairs"])
    if np.any(n < 1) or np.any(n > int(config["max_pairs"])):
        raise ValueError(f"num_pairs must lie in [1, max_pairs={config['max_pairs']}]; got {n.tolist()}")
    k = np.asarray(hparams["labels_per_pair"])
    if np.any(k < 1) or np.any(k != np.round(k)):
        raise ValueError(f"labels_per_pair must be a whole number >= 1; got {k.tolist()}")
    # Quantities formed on device, checked in the run's dtype: the step size lr / beta^2 and the
    # optimum's logits r / beta (|r| <= 8 reward_scale: a standard normal beyond 8 has p < 1e-15).
    beta = np.asarray(hparams["beta"], dtype=np.float64)
    lr = np.asarray(hparams["learning_rate"], dtype=np.float64)
    scale = np.abs(np.asarray(hparams["reward_scale"], dtype=np.float64))
    with np.errstate(over="ignore", divide="ignore"):
        check_representable("learning_rate / beta**2 (the step size)", lr / beta**2)
        check_representable("8 reward_scale / beta (the optimum's largest logit)", np.maximum(8 * scale, 1.0) / beta)


DPO_BANDIT = EXPERIMENTS.register("dpo-bandit", Experiment(
    name="dpo-bandit",
    description="DPO (or any registered loss: --set loss=NAME) on a tabular bandit with Bradley-Terry preferences",
    config={"loss": "dpo", "num_prompts": 8, "num_responses": 16, "num_steps": 1000, "log_every": 50,
            "pairs": "all", "labels": "soft", "max_pairs": 256},
    hparams=HPARAMS,
    make_program=make_program,
    validate=validate,
    components={"loss": LOSSES},
))


# Thresholds and step sizes of the suite, fixed from theory before any run (the claims' notes
# give the reasoning; papers/dpo_bandit.md records the runs).
CLOSED_FORM_TOL = 1e-4  # max |log pi - log pi*| in float64; the exact limit is 0
COVERAGE_TOL = 1e-3  # max |log pi - log pi_C|; the exact limit is 0 (the stage runs in float64)
DRIFT_MIN = float(np.log(2) / 4)  # beta max_y |log pi_T - log pi_{T/2}|; separable DPO gives >= log(2)/2
OVERFIT_PAIRS = 4  # pairs per prompt where the overfitting check applies: 4 pairs among 16 responses
SLOPE_RANGE = (-1.25, -0.75)  # d log MSE / d log k for the implicit reward's error; theory: -1
IPO_STEP_EXACT = 0.25  # learning_rate / beta^2 for IPO on every pair: stable below 1 (Hessian 2)
IPO_STEP_SAMPLED = 0.05  # ... on sampled pairs: stable below 1/(N - 1) = 1/15
DPO_SAMPLED_LR = 0.5  # DPO's learning_rate on sampled pairs: stable below 8/(N - 1) = 0.53 on any graph


def settings(scale: str) -> dict:
    """The suite's sizes for ``scale`` in ``{"full", "quick", "smoke"}`` (see :class:`~alignjax.results.SuiteContext`).

    ``sizes``: sampled pairs per prompt; ``labels``: votes per pair on the complete comparison
    graph. Smoke (tests only) is quick with 2 seeds, 3 sizes and fewer steps.
    """
    if scale not in ("full", "quick", "smoke"):
        raise ValueError(f"scale must be 'full', 'quick' or 'smoke'; got {scale!r}")
    quick = scale != "full"
    s = {"seeds": 4 if quick else 16, "betas": [0.01, 0.1, 1.0],
         "sizes": [4, 16, 64, 256] if quick else [2, 4, 8, 16, 32, 64, 128, 256, 512],
         "labels": [4, 16, 64, 256] if quick else [4, 8, 16, 32, 64, 128, 256, 512],
         "exact_steps": 400 if quick else 2000, "exact_log_every": 20,
         "sampled_steps": 10000, "sampled_log_every": 500}
    if scale == "smoke":
        s.update(seeds=2, sizes=[4, 16, 64], labels=[4, 16, 64], exact_steps=200)
    return s


def _run(ctx, cfg, grid, csv, *, x64=False) -> dict:
    """One sweep through the engine; returns steps, the scalar metrics and the late drift.

    ``drift[c, s] = beta max_{x, y} |log pi_T(y|x) - log pi_{T/2}(y|x)|``: how far the policy
    still moves over the second half of training, in reward units.
    """
    import contextlib

    from alignjax.sweep import run_sweep

    with jax.enable_x64(True) if x64 else contextlib.nullcontext():
        res = run_sweep(DPO_BANDIT.make_program(cfg), grid, num_steps=cfg["num_steps"], log_every=cfg["log_every"],
                        progress=ctx.progress)
    ctx.write_csv(csv, res.table())
    metrics = {k: np.asarray(v) for k, v in res.metrics.items()}
    logp = metrics.pop("logp")  # (configs, seeds, logs, prompts, responses)
    half = int(np.flatnonzero(np.asarray(res.steps) == cfg["num_steps"] // 2)[0])
    drift = np.max(np.abs(logp[:, :, -1] - logp[:, :, half]), axis=(-2, -1)) * grid.hparams["beta"][:, None]
    return {"steps": np.asarray(res.steps), "metrics": metrics, "drift": drift}


def exact_stage(ctx, s, loss: str = "dpo") -> dict:
    """Every pair with its soft label (the population loss) for each beta, float64.

    DPO with step ``4 / beta^2``; IPO with step ``IPO_STEP_EXACT`` (``learning_rate =
    IPO_STEP_EXACT * beta^2``).
    """
    from alignjax.sweep import make_grid

    cfg = {**DPO_BANDIT.config, "loss": loss, "num_steps": s["exact_steps"], "log_every": s["exact_log_every"]}
    grid = make_grid(HPARAMS, {"beta": s["betas"]}, seeds=s["seeds"])
    if loss == "ipo":
        grid.hparams["learning_rate"] = IPO_STEP_EXACT * grid.hparams["beta"] ** 2
    # float64: float32 cannot resolve 1e-4 on log pi* ~ -400 (beta = 0.01)
    return _run(ctx, cfg, grid, "exact_metrics.csv" if loss == "dpo" else f"exact_{loss}_metrics.csv", x64=True)


def sampled_stage(ctx, s, labels: str, loss: str = "dpo") -> dict:
    """``num_pairs`` sampled pairs per prompt (soft or hard labels), beta = 0.1, DPO or IPO.

    DPO's step is ``DPO_SAMPLED_LR / beta^2``: a sampled pair weighs ``(N - 1)/(2 num_pairs)``,
    so a response's weighted degree reaches ``(N - 1)/2`` and the Hessian ``beta^2 (N - 1)/4``;
    the default ``learning_rate = 4`` (stable with every pair) makes isolated pairs oscillate.
    """
    from alignjax.sweep import make_grid

    cfg = {**DPO_BANDIT.config, "loss": loss, "pairs": "sampled", "labels": labels, "max_pairs": max(s["sizes"]),
           "num_steps": s["sampled_steps"], "log_every": s["sampled_log_every"]}
    grid = make_grid({**HPARAMS, "beta": 0.1, "learning_rate": DPO_SAMPLED_LR},
                     {"num_pairs": [float(n) for n in s["sizes"]]}, seeds=s["seeds"])
    if loss == "ipo":
        grid.hparams["learning_rate"] = IPO_STEP_SAMPLED * grid.hparams["beta"] ** 2
    suffix = "" if loss == "dpo" else f"_{loss}"
    # float64: in float32 the per-component logit sums, conserved in exact arithmetic, drift by
    # ~1e-3 over 10^4 steps, which the coverage limit would see
    return _run(ctx, cfg, grid, f"sampled_{labels}{suffix}_metrics.csv", x64=True)


def graph_stage(ctx, s, labels: str) -> dict:
    """Every pair compared, ``labels_per_pair`` votes each (hard) or the exact label (soft), beta = 0.1."""
    from alignjax.sweep import make_grid

    cfg = {**DPO_BANDIT.config, "pairs": "all", "labels": labels, "num_steps": s["exact_steps"],
           "log_every": s["exact_log_every"]}
    grid = make_grid({**HPARAMS, "beta": 0.1}, {"labels_per_pair": [float(k) for k in s["labels"]]},
                     seeds=s["seeds"])
    return _run(ctx, cfg, grid, f"graph_{labels}_metrics.csv")


def _final(stage, name):
    """The metric ``name`` at the last logged step, ``(configs, seeds)``."""
    return np.asarray(stage["metrics"][name])[:, :, -1]


def _slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x``."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def claims(s, st) -> list:
    """The suite's four claims from the stage outputs ``st`` (see the module's thresholds)."""
    from alignjax.results import claim, control

    betas, sizes, labels, seeds = s["betas"], s["sizes"], s["labels"], s["seeds"]
    dpo_src = "Rafailov et al. 2023 (arXiv 2305.18290)"
    ipo_src = "Azar et al. 2023 (arXiv 2310.12036; AISTATS 2024)"
    common = (f"8 prompts x 16 responses, r ~ N(0, 1), pi_ref = softmax(N(0, 1)), Bradley-Terry preferences; a "
              f"tabular policy started at pi_ref (the policy class contains every optimum, as the papers' "
              f"derivations assume; their experiments use language models, Azar et al. Sec. 5.4 a 3-action bandit); "
              f"full-batch gradient descent on the logits; {seeds} seeds")
    out = []

    # 1. DPO's minimiser is the closed form of the KL-regularised objective.
    err = _final(st["exact"], "max_abs_log_err").max(axis=1)  # worst seed per beta
    err_ipo = _final(st["exact-ipo"], "max_abs_log_err").max(axis=1)
    own_ipo = _final(st["exact-ipo"], "max_abs_log_err_ipo").max(axis=1)
    out.append(claim(
        "closed-form-optimum",
        "The optimum of the KL-constrained reward maximisation (Eq. 3) is pi_r = pi_ref exp(r/beta) / Z (Eq. 4), "
        "and DPO's loss, built on it, is minimised there: gradient descent on the population DPO loss ends at "
        f"pi* = pi_ref exp(r/beta)/Z, max |log pi - log pi*| < {CLOSED_FORM_TOL:g} for every beta.",
        f"{dpo_src}, Sec. 4, Eq. 4 (also {ipo_src}, Prop. 1 and Eq. 7)",
        "Eq. 4: pi_r(y|x) = pi_ref(y|x) exp(r(x,y)/beta) / Z(x), exact",
        {f"beta={b:g}": float(e) for b, e in zip(betas, err)},
        bool(np.all(err < CLOSED_FORM_TOL)),
        f"Worst prompt, response and seed after {s['exact_steps']} steps. The threshold is a numerical tolerance "
        "(the exact limit is 0); float64, since in float32 the floor is ~1e-4 at beta = 0.01, where |log pi*| ~ 400.",
        setting=f"{common}; every ordered pair with its exact label sigmoid(r_y - r_y') (the population loss, Azar et "
                f"al. Eq. 5); step 4/beta^2 (rate independent of beta); {s['exact_steps']} steps; float64; beta in "
                f"{betas}.",
        control=control(
            "The same check on population IPO (the same pairs and labels, IPO's loss (h - 1/(2 beta))^2, step "
            f"{IPO_STEP_EXACT}): IPO's optimum is pi_ref exp(p(y > mu)/beta)/Z (Azar et al. Eq. 9, identity Psi), "
            "not Eq. 4, so the check must fail; its distance to its own optimum shows the run converged.",
            {"max |log pi - log pi*| (Eq. 4)": {f"beta={b:g}": float(e) for b, e in zip(betas, err_ipo)},
             "max |log pi - log pi_IPO| (Azar Eq. 9)": {f"beta={b:g}": float(e) for b, e in zip(betas, own_ipo)}},
            bool(np.all(err_ipo < CLOSED_FORM_TOL)))))

    # 2. DPO overfits deterministic empirical preferences; IPO does not.
    i4 = sizes.index(OVERFIT_PAIRS)
    drift, drift_ipo = st["sampled-hard"]["drift"], st["sampled-hard-ipo"]["drift"]
    out.append(claim(
        "hard-labels-overfit",
        "When the empirical preferences are deterministic (p_hat in {0, 1}, as with few data), DPO's empirical optimum "
        "sends pi(y') to 0 for any tau: the KL regularisation stops acting and DPO overfits the sampled votes. "
        f"Measured: with {OVERFIT_PAIRS} sampled pairs per prompt and one vote each, DPO's policy is still "
        f"moving at the end (its optimum is at infinity): beta max |log pi_T - log pi_T/2| > log(2)/4 = "
        f"{DRIFT_MIN:.3f} in every seed.",
        f"{ipo_src}, Sec. 4.2 (weak regularisation and overfitting); Sec. 5.4 (sampled preferences)",
        "Sec. 4.2: with p_hat(y > y') = 1 'the empirical optimal policy would make pi(y') = 0 for any tau'",
        {f"drift at {OVERFIT_PAIRS} pairs (min over seeds)": float(drift[i4].min()),
         "drift per pairs/prompt (mean over seeds)": {str(n): float(v) for n, v in zip(sizes, drift.mean(axis=1))}},
        bool(drift[i4].min() > DRIFT_MIN),
        f"Theory for the threshold: on a separable pair, gradient descent on -log sigmoid(u) grows the margin u as "
        "log t, so doubling the steps adds log 2 to beta h and at least log(2)/2 to one endpoint's beta log pi; "
        "the threshold is half that. A converging method (IPO's loss is a convex quadratic in the logits, "
        "Azar et al. Theorem 2 / Eq. 17) drifts geometrically less. The check is made where theory says it must "
        f"hold ({OVERFIT_PAIRS} pairs: every observed preference is deterministic); at larger sizes DPO drifts "
        "only on the prompts whose votes leave a response unbeaten or winless (then its empirical optimum is at "
        "infinity), and the per-size drift in measured falls as more votes conflict.",
        setting=f"{common}; beta = 0.1; {OVERFIT_PAIRS} pairs per prompt drawn uniformly among 16 responses (a forest: "
                "every observed preference is deterministic, the case of Sec. 4.2), one Bernoulli vote per pair; DPO "
                f"step 4/beta^2; {s['sampled_steps']} steps, drift between steps {s['sampled_steps'] // 2} and "
                f"{s['sampled_steps']}. Azar et al.'s Sec. 5.4 runs Adam (lr 0.01, batch 9) for 18000 steps on 3 "
                "actions; we use plain full-batch descent on a larger bandit.",
        control=control(
            "The same check on IPO (Eq. 17, the same pairs and votes, step "
            f"{IPO_STEP_SAMPLED} < 1/15, the stability bound): Azar et al. argue IPO keeps its solution at a "
            "tau-controlled distance from pi_ref, so its policy must stop moving.",
            {f"drift at {OVERFIT_PAIRS} pairs (min over seeds)": float(drift_ipo[i4].min()),
             "drift per pairs/prompt (mean over seeds)": {str(n): float(v)
                                                           for n, v in zip(sizes, drift_ipo.mean(axis=1))}},
            bool(drift_ipo[i4].min() > DRIFT_MIN))))

    # 3. Coverage: exact labels on sampled pairs.
    soft, hard = st["sampled-soft"], st["sampled-hard"]
    cov, cov_hard = _final(soft, "coverage_err"), _final(hard, "coverage_err")
    kl, kl_pred = _final(soft, "kl_to_optimum").mean(axis=1), _final(soft, "kl_coverage_limit").mean(axis=1)
    conn = _final(soft, "connected").mean(axis=1)
    out.append(claim(
        "coverage-gap",
        "With exact labels on sampled pairs, the data-size gap is coverage only: DPO ends at pi_C, which equals pi* "
        "inside each connected component of the comparison graph and keeps the reference's logit sum on each "
        "component, so KL(pi* || pi) = KL(pi* || pi_C), zero exactly when the graph connects every response. "
        f"Measured: max |log pi - log pi_C| < {COVERAGE_TOL:g} at every data size and seed.",
        "beyond the paper: the exact limit of gradient descent on DPO's empirical loss (derived in "
        "alignjax.metrics.bandit.coverage_limit); it is an instance of Song et al. 2024 (arXiv 2406.01462)'s "
        "point that offline contrastive methods need global coverage to reach pi* (their theorem number not "
        "verified) and of Azar et al.'s Sec. 5.4 remark that unobserved actions get no data",
        "no number in the papers",
        {"max |log pi - log pi_C|": float(cov.max()),
         "KL(pi*||pi) per pairs/prompt": {str(n): float(v) for n, v in zip(sizes, kl)},
         "KL(pi*||pi_C) predicted": {str(n): float(v) for n, v in zip(sizes, kl_pred)},
         "share of prompts connected": {str(n): float(v) for n, v in zip(sizes, conn)}},
        bool(cov.max() < COVERAGE_TOL),
        "No statistical noise here (each label is the exact BT probability), so the gap at small data sizes is "
        "which pairs are connected: it vanishes once every prompt's comparison graph is connected. Threshold: a "
        "numerical tolerance (the prediction is exact); worst prompt, response, size and seed.",
        setting=f"{common}; beta = 0.1; pairs per prompt in {sizes}, drawn uniformly among y != y' (first n of one "
                f"draw, so the sizes are nested); soft labels sigmoid(r_y - r_y'); step 4/beta^2; "
                f"{s['sampled_steps']} steps (the slowest components, long paths with large reward gaps, need several "
                f"thousand at this step); float64.",
        control=control(
            "The same check on hard labels (one Bernoulli vote per sampled pair, the same pairs): sampled votes add "
            "statistical error and, where separable, divergence, so the run must not end at pi_C.",
            {"max |log pi - log pi_C|": float(cov_hard.max())},
            bool(cov_hard.max() < COVERAGE_TOL))))

    # 4. Statistics: sampled votes on the complete comparison graph.
    g_hard, g_soft = st["graph-hard"], st["graph-soft"]
    mse, mse_soft = _final(g_hard, "reward_mse").mean(axis=1), _final(g_soft, "reward_mse").mean(axis=1)
    kl_g = _final(g_hard, "kl_to_optimum").mean(axis=1)
    slope, slope_soft = _slope(labels, mse), _slope(labels, mse_soft)
    lo, hi = SLOPE_RANGE
    out.append(claim(
        "statistical-gap-shrinks",
        "As the number of comparisons grows, the Bradley-Terry fit to sampled preferences converges to the true "
        "preferences; DPO's implicit reward beta log pi/pi_ref is that fit, so with every pair compared its error "
        f"falls with the votes per pair k: monotonically, at the maximum-likelihood rate 1/k (log-log slope in "
        f"[{lo}, {hi}]).",
        f"{ipo_src}, Sec. 3.1.1, below Eq. 2 (consistency of the BT fit); {dpo_src}, Sec. 4, Eq. 5 (the implicit "
        "reward); the 1/k rate is the maximum-likelihood estimator's asymptotic variance (beyond the paper)",
        "Sec. 3.1.1: the fitted preference 'becomes a more and more accurate estimate of true p*' as the dataset grows",
        {"reward MSE per votes/pair": {str(k): float(v) for k, v in zip(labels, mse)},
         "KL(pi*||pi) per votes/pair": {str(k): float(v) for k, v in zip(labels, kl_g)},
         "log-log slope": slope},
        bool(np.all(np.diff(mse) < 0) and lo <= slope <= hi),
        "The statistical half of the data-size gap (the coverage half is coverage-gap). The MSE is in reward "
        "units and so does not depend on beta; KL(pi*||pi) at beta = 0.1 magnifies the same error by 1/beta and "
        "is not yet quadratic at small k, so only the MSE is held to the 1/k rate.",
        setting=f"{common}; beta = 0.1; every pair compared, k in {labels} votes per unordered pair (Binomial(k, "
                f"sigmoid(r_y - r_y'))), so the graph is complete and only the votes are random; step 4/beta^2; "
                f"{s['exact_steps']} steps; float32.",
        control=control(
            "The same check with exact labels on the same complete graph: nothing is sampled, so the error sits at "
            "the numerical floor whatever k and must not fall at rate 1/k.",
            {"reward MSE per votes/pair": {str(k): float(v) for k, v in zip(labels, mse_soft)},
             "log-log slope": slope_soft},
            bool(np.all(np.diff(mse_soft) < 0) and lo <= slope_soft <= hi))))
    return out


def plots(ctx, s, st) -> None:
    """``dpo_bandit.png``: closed form (DPO vs IPO), overfitting drift, coverage gap, statistical gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-17  # zeros and tiny negative rounding of the exact limits, shown at the floor on log axes
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for i, b in enumerate(s["betas"]):
        line, = ax[0, 0].semilogy(st["exact"]["steps"], st["exact"]["metrics"]["max_abs_log_err"][i].max(axis=0),
                                  label=f"DPO beta={b:g}")
        ax[0, 0].semilogy(st["exact-ipo"]["steps"], st["exact-ipo"]["metrics"]["max_abs_log_err"][i].max(axis=0),
                          ls="--", color=line.get_color(), label=f"IPO beta={b:g}")
    ax[0, 0].axhline(CLOSED_FORM_TOL, color="k", ls=":", lw=1)
    ax[0, 0].set(xlabel="step", ylabel="max |log pi - log pi*|", title="population loss -> pi_ref exp(r/beta)")
    ax[0, 0].legend(fontsize=7)
    for name, lab in (("sampled-hard", "DPO"), ("sampled-hard-ipo", "IPO")):
        ax[0, 1].loglog(s["sizes"], np.maximum(st[name]["drift"].mean(axis=1), floor), "o-", label=lab)
    ax[0, 1].axhline(DRIFT_MIN, color="k", ls=":", lw=1)
    ax[0, 1].set(xlabel="pairs per prompt (one vote each)", ylabel="beta |log pi_T - log pi_T/2|",
                 title="hard labels: still moving at the end?")
    ax[0, 1].legend()
    ax[1, 0].loglog(s["sizes"], np.maximum(_final(st["sampled-soft"], "kl_to_optimum").mean(axis=1), floor), "o-",
                    label="measured")
    ax[1, 0].loglog(s["sizes"], np.maximum(_final(st["sampled-soft"], "kl_coverage_limit").mean(axis=1), floor),
                    "x--", label="coverage limit pi_C")
    ax[1, 0].set(xlabel="pairs per prompt (exact labels)", ylabel="KL(pi* || pi)", title="coverage gap (beta=0.1)")
    ax[1, 0].legend()
    mse = _final(st["graph-hard"], "reward_mse").mean(axis=1)
    ax[1, 1].loglog(s["labels"], mse, "o-", label="sampled votes")
    ax[1, 1].loglog(s["labels"], mse[0] * s["labels"][0] / np.asarray(s["labels"], float), "k:", label="1/k")
    ax[1, 1].set(xlabel="votes per pair (every pair compared)", ylabel="implicit-reward MSE",
                 title="statistical gap")
    ax[1, 1].legend()
    fig.tight_layout()
    ctx.savefig(fig, "dpo_bandit.png")


def reproduce(ctx) -> list:
    """Suite ``dpo-bandit``: settings -> stages -> claims -> plots.

    Stages: ``exact`` / ``exact-ipo`` (population DPO / IPO per beta), ``sampled-soft``,
    ``sampled-hard``, ``sampled-hard-ipo`` (sampled pairs per data size), ``graph-hard`` /
    ``graph-soft`` (every pair, votes per pair).
    """
    s = settings(ctx.scale)
    ctx.config.update({"scale": ctx.scale, "seeds": s["seeds"], "betas": s["betas"], "pairs_per_prompt": s["sizes"],
                       "votes_per_pair": s["labels"],
                       "steps": {k: s[k] for k in ("exact_steps", "exact_log_every", "sampled_steps",
                                                    "sampled_log_every")},
                       "ipo_step": {"exact": IPO_STEP_EXACT, "sampled": IPO_STEP_SAMPLED},
                       "base": dict(DPO_BANDIT.config), "hparams": dict(HPARAMS)})
    st = {
        "exact": ctx.stage("exact", lambda: exact_stage(ctx, s)),
        "exact-ipo": ctx.stage("exact-ipo", lambda: exact_stage(ctx, s, "ipo")),
        "sampled-soft": ctx.stage("sampled-soft", lambda: sampled_stage(ctx, s, "soft")),
        "sampled-hard": ctx.stage("sampled-hard", lambda: sampled_stage(ctx, s, "hard")),
        "sampled-hard-ipo": ctx.stage("sampled-hard-ipo", lambda: sampled_stage(ctx, s, "hard", "ipo")),
        "graph-hard": ctx.stage("graph-hard", lambda: graph_stage(ctx, s, "hard")),
        "graph-soft": ctx.stage("graph-soft", lambda: graph_stage(ctx, s, "soft")),
    }
    plots(ctx, s, st)
    return claims(s, st)


SUITES.register(
    "dpo-bandit", reproduce,
    meta={"description": "DPO's closed form vs IPO's; hard-label overfitting (DPO vs IPO); data-size gap split into "
                         "coverage and statistics"})
