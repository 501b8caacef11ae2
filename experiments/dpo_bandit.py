"""DPO (or any registered loss) on a tabular contextual bandit with Bradley–Terry preferences.

The instance (drawn from the run's key): ``num_prompts`` prompts, ``num_responses`` responses,
hidden rewards ``r(x, y) = reward_scale * N(0, 1)``, reference ``pi_ref(.|x) =
softmax(N(0, 1))``, preferences ``P[x, y, y'] = sigmoid(r(x,y) - r(x,y'))``. The policy is
tabular and starts at ``pi_ref``. The closed-form DPO/RLHF optimum is

    pi*(y|x) ∝ pi_ref(y|x) exp(r(x, y) / beta).

Modes (static ``pairs``):

* ``"all"`` (population): every unordered pair ``y < y'`` with its soft label
  ``alpha = sigmoid(r_y - r_y')``; loss per prompt ``L_x = (1/N) sum_{y<y'}
  [alpha l(h) + (1 - alpha) l(-h)] = (1/N) sum_{y != y'} alpha_{yy'} l(h_{yy'})`` with ``l``
  the DPO loss, computed densely over the ``(N, N)`` matrix of ordered pairs. Its minimiser
  is ``pi*``.
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

Optimiser: full-batch gradient descent on the logits with step ``learning_rate / beta**2``.
For DPO the Hessian of ``L_x`` in the logits is ``beta**2 / N`` times a graph Laplacian with
weights ``sigma'(beta h) <= 1/4``, so this step makes the rate independent of beta; any
``learning_rate < 8`` is stable. Other losses have other curvatures: IPO's squared loss
``(h - 1/(2 beta))^2`` has Hessian weights 2 whatever beta, so it needs ``learning_rate <
beta**2 / 2`` (e.g. ``--set loss=ipo --set learning_rate=0.004`` at ``beta = 0.1``); a run that
diverges ends with exit 3 and the first non-finite value in its summary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax.metrics import expected_reward, optimal_policy, reverse_kl
from alignjax.experiment import Experiment, Program, check_representable, namespaced
from alignjax.registry import EXPERIMENTS, LOSSES, SUITES

HPARAMS = {"beta": 0.1, "learning_rate": 4.0, "reward_scale": 1.0, "num_pairs": 256.0}


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
    (both averaged over prompts, summed over responses), and ``E_pi r``.
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
            d["alpha"] = jax.nn.sigmoid(r[:, :, None] - r[:, None, :])
            return d
        a = jax.random.randint(k_pairs, (n_x, max_pairs), 0, n_y)
        b = (a + jax.random.randint(jax.random.fold_in(k_pairs, 1), (n_x, max_pairs), 1, n_y)) % n_y
        used = (jnp.arange(max_pairs) < hp["num_pairs"]).astype(jnp.float32)
        weight = used * (n_y - 1) / 2.0 * (1.0 / jnp.maximum(hp["num_pairs"], 1.0))
        alpha = jax.nn.sigmoid(jnp.take_along_axis(r, a, -1) - jnp.take_along_axis(r, b, -1))
        if labels == "hard":
            alpha = jax.random.bernoulli(k_lab, alpha).astype(jnp.float32)
        return {**d, "w": a, "l": b, "alpha": alpha, "weight": jnp.broadcast_to(weight, (n_x, max_pairs))}

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
        return {
            "loss": loss_fn(state["theta"], d, hp),
            "max_abs_log_err": jnp.max(jnp.abs(logp - log_star)),
            "kl_to_optimum": jnp.mean(reverse_kl(log_star, logp)),  # KL(pi* || pi)
            "reverse_kl_ref": jnp.mean(reverse_kl(logp, d["log_ref"])),  # KL(pi || pi_ref)
            "expected_reward": jnp.mean(expected_reward(logp, d["r"])),
        }

    return Program(init, step, observe)


def validate(config, hparams):
    """Reject sizes, step sizes (``learning_rate >= 8`` diverges) and data sizes out of range.

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


def settings(scale: str) -> dict:
    """The suite's sizes for ``scale`` in ``{"full", "quick", "smoke"}`` (see :class:`~alignjax.results.SuiteContext`).

    Smoke (tests only) is quick with 2 seeds, 3 data sizes and fewer steps.
    """
    if scale not in ("full", "quick", "smoke"):
        raise ValueError(f"scale must be 'full', 'quick' or 'smoke'; got {scale!r}")
    quick = scale != "full"
    s = {"seeds": 4 if quick else 16, "betas": [0.01, 0.1, 1.0],
         "sizes": [4, 16, 64, 256] if quick else [2, 4, 8, 16, 32, 64, 128, 256, 512],
         "exact_steps": 400 if quick else 2000, "exact_log_every": 20,
         "sampled_steps": 1000 if quick else 4000, "sampled_log_every": 50}
    if scale == "smoke":
        s.update(seeds=2, sizes=[4, 16, 64], exact_steps=200, sampled_steps=300)
    return s


def exact_stage(ctx, s) -> dict:
    """Population DPO (every pair, soft labels) for each beta, through the engine in float64."""
    from alignjax.sweep import make_grid, run_sweep

    cfg = {**DPO_BANDIT.config, "num_steps": s["exact_steps"], "log_every": s["exact_log_every"]}
    grid = make_grid(HPARAMS, {"beta": s["betas"]}, seeds=s["seeds"])
    with jax.enable_x64(True):  # float32 cannot resolve 1e-4 on log pi* ~ -400 (beta = 0.01)
        res = run_sweep(DPO_BANDIT.make_program(cfg), grid, num_steps=cfg["num_steps"], log_every=cfg["log_every"],
                        progress=ctx.progress)
    ctx.write_csv("exact_metrics.csv", res.table())
    return {"steps": res.steps, "metrics": res.metrics}


def sampled_stage(ctx, s, labels: str) -> dict:
    """DPO on ``num_pairs`` sampled pairs per prompt (soft or hard labels), beta = 0.1."""
    from alignjax.sweep import make_grid, run_sweep

    cfg = {**DPO_BANDIT.config, "pairs": "sampled", "labels": labels, "max_pairs": max(s["sizes"]),
           "num_steps": s["sampled_steps"], "log_every": s["sampled_log_every"]}
    grid = make_grid({**HPARAMS, "beta": 0.1}, {"num_pairs": [float(n) for n in s["sizes"]]}, seeds=s["seeds"])
    res = run_sweep(DPO_BANDIT.make_program(cfg), grid, num_steps=cfg["num_steps"], log_every=cfg["log_every"],
                    progress=ctx.progress)
    ctx.write_csv(f"sampled_{labels}_metrics.csv", res.table())
    return {"steps": res.steps, "metrics": res.metrics}


def claims(s, exact, gaps) -> list:
    """The suite's three claims from the stage outputs."""
    from alignjax.results import claim

    betas, sizes, seeds = s["betas"], s["sizes"], s["seeds"]
    err = exact["metrics"]["max_abs_log_err"][:, :, -1].max(axis=1)  # worst seed per beta
    src = "Rafailov et al. 2023 (arXiv 2305.18290), Sec. 4, Eq. 4"
    return [
        claim("closed-form-optimum",
              "Gradient descent on the population DPO loss (BT soft labels, every pair) converges to "
              "pi* ∝ pi_ref exp(r/beta): max |log pi - log pi*| < 1e-4 for beta in {0.01, 0.1, 1}.",
              src, "exact (error 0)", {f"beta={b:g}": float(e) for b, e in zip(betas, err)},
              bool(np.all(err < 1e-4)), "float64 (in float32 the floor is ~1e-4 at beta=0.01, where "
              "|log pi*| ~ 400); worst prompt, response and seed"),
        claim("sampled-gap-shrinks",
              "With sampled pairs and soft labels, KL(pi* || pi) after training falls monotonically as the "
              "number of pairs per prompt grows.",
              "statistical consistency of DPO's empirical loss (no number in the paper)", "-> 0 as data grows",
              {str(n): float(v) for n, v in zip(sizes, gaps["soft"])},
              bool(np.all(np.diff(gaps["soft"]) < 0)), f"mean over {seeds} seeds, beta=0.1"),
        claim("hard-labels-overfit",
              "With hard (sampled) labels DPO overfits the observed votes: at every data size the final policy "
              "is further from pi* than with the soft labels of the same pairs.",
              "Azar et al. 2023 (arXiv 2310.12036), Sec. 4.2", "DPO overfits deterministic preferences",
              {str(n): float(h / s_) for n, h, s_ in zip(sizes, gaps["hard"], gaps["soft"])},
              bool(np.all(gaps["hard"] > gaps["soft"])), "ratio KL_hard / KL_soft per data size"),
    ]


def plots(ctx, s, exact, gaps) -> None:
    """``dpo_bandit.png``: the population error per beta, and the final KL per data size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, b in enumerate(s["betas"]):
        axes[0].semilogy(exact["steps"], exact["metrics"]["max_abs_log_err"][i].max(axis=0), label=f"beta={b:g}")
    axes[0].axhline(1e-4, color="k", ls=":", lw=1)
    axes[0].set(xlabel="step", ylabel="max |log pi - log pi*|", title="population DPO -> closed form")
    axes[0].legend()
    for labels, v in gaps.items():
        axes[1].loglog(s["sizes"], v, "o-", label=f"{labels} labels")
    axes[1].set(xlabel="pairs per prompt", ylabel="KL(pi* || pi) at the end", title="sampled pairs (beta=0.1)")
    axes[1].legend()
    ctx.savefig(fig, "dpo_bandit.png")


def reproduce(ctx) -> list:
    """Suite ``dpo-bandit``: settings -> stages (exact, sampled soft, sampled hard) -> claims -> plots."""
    s = settings(ctx.scale)
    ctx.config.update({"scale": ctx.scale, "seeds": s["seeds"], "betas": s["betas"], "pairs_per_prompt": s["sizes"],
                       "steps": {k: s[k] for k in ("exact_steps", "exact_log_every", "sampled_steps",
                                                    "sampled_log_every")},
                       "base": dict(DPO_BANDIT.config), "hparams": dict(HPARAMS)})
    exact = ctx.stage("exact", lambda: exact_stage(ctx, s))
    gaps = {}
    for labels in ("soft", "hard"):
        res = ctx.stage(f"sampled-{labels}", lambda: sampled_stage(ctx, s, labels))
        gaps[labels] = res["metrics"]["kl_to_optimum"][:, :, -1].mean(axis=1)
    plots(ctx, s, exact, gaps)
    return claims(s, exact, gaps)


SUITES.register(
    "dpo-bandit", reproduce, meta={"description": "DPO's closed-form optimum on a tabular bandit; data-size gap"})
