"""Sampled (loss-driven) part of the ``nash-games`` suite: the EGPO simulation (Zhou et al. 2025).

Called by ``experiments/nash_games.py`` as ``sampled_claims(ctx) -> list[Claim]``; writes only
``sampled_*.png`` / ``sampled_*.csv`` files into ``ctx.out_dir``.

Setting (docs/algorithms.md §4, the EGPO authors' ``simulations/``): random games
(``P[i,j] ~ U(0,1)`` for ``i > j``), ``pi_0 = pi_ref = softmax(N(0,1) logits)``, tabular
policies on ``N = 10`` responses, plain SGD on the logits, configs
``(beta, iterations, learning_rate)`` = (0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, 100000, 2e-4),
population ("exact") losses and sampled losses with 100 samples per step. Nash-MD-PG's mixture
weight follows the authors: ``m = eta*beta`` with ``eta = 2 lr/(N beta)``, i.e. ``m = 2 lr/N``.
In sampled mode the preference of a sampled pair is the probability ``P[y, y']`` (the authors'
choice; ``bernoulli=False``), so all the noise comes from which pairs are drawn.
Neural part: ``N = 100``, an MLP on a fixed random prompt feature, ``pi_ref`` = the MLP's
initial policy (so ``pi_0 = pi_ref``; the authors' neural reference could not be confirmed),
EGPO with the population loss and Adam.

One compiled program per (algorithm, mode, samples per step): ``jit(vmap configs (vmap games
(vmap seeds)))``. Configs with fewer iterations than the longest are frozen (masked) after
their own iteration count, so one program serves all of them.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignjax.dynamics import sampled as S
from alignjax.games import regularized_gap
from alignjax.policies import mlp, tabular
from alignjax.prefs import random_game
from alignjax.results import Claim, SuiteContext, claim

SOURCE = "Zhou et al. 2025, EGPO (arXiv 2503.08942), §6 simulations / Fig. 1-2"
ALGOS = {  # label -> (factory, uses_mixture)
    "EGPO": S.sampled_egpo,
    "Online IPO 1": S.sampled_online_ipo_1,
    "Online IPO 2": S.sampled_online_ipo_2,
    "Nash-MD-PG": S.sampled_nash_md_pg,
}
PRNG_IMPL = "rbg"  # cheap to compile on CPU (threefry inside vmapped scans compiles for ~1 min)
STALL = 0.1  # "stalls": final gap / initial gap > STALL (less than one decade of reduction)


def _settings(scale) -> dict:
    """Part B's settings for ``scale`` (``"full"``, ``"quick"``, ``"smoke"``; a bool is quick/full)."""
    from alignjax_experiments.nash_games import _scale

    scale = _scale(scale)
    if scale == "smoke":  # tests only: every stage runs, budgets far too small for the claims
        return dict(num_responses=10, num_games=2, configs=[(0.1, 200, 0.1), (0.01, 200, 0.02)],
                    num_logs=20, num_samples=100, sampled_algos=["EGPO"],
                    floor_samples=[10, 100, 1000], floor_config=(0.1, 200, 0.1), floor_games=2,
                    neural_responses=20, neural_games=2, neural_steps=100, neural_beta=0.1,
                    neural_lr=3e-3, neural_width=16, neural_features=8)
    if scale == "quick":
        return dict(num_responses=10, num_games=4, configs=[(0.1, 1000, 0.1), (0.01, 2000, 0.02)],
                    num_logs=40, num_samples=100, sampled_algos=["EGPO"],
                    floor_samples=[10, 100, 1000], floor_config=(0.1, 1000, 0.1), floor_games=4,
                    neural_responses=100, neural_games=3, neural_steps=600, neural_beta=0.1,
                    neural_lr=3e-3, neural_width=64, neural_features=16)
    return dict(num_responses=10, num_games=10, configs=[(0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, 100000, 2e-4)],
                num_logs=2000, num_samples=100, sampled_algos=list(ALGOS),
                floor_samples=[10, 100, 1000], floor_config=(0.1, 1000, 0.1), floor_games=10,
                neural_responses=100, neural_games=10, neural_steps=3000, neural_beta=0.1,
                neural_lr=3e-3, neural_width=64, neural_features=16)


def _tabular_games(key, num_games, n):
    kp, kr = jax.random.split(key)
    P = jax.vmap(lambda k: random_game(k, n))(jax.random.split(kp, num_games))[:, None]  # (G, 1, N, N)
    logp_ref = jax.nn.log_softmax(jax.random.normal(kr, (num_games, 1, n)), axis=-1)  # (G, 1, N)
    return P, logp_ref, logp_ref  # params0 = logits = log pi_ref: pi_0 = pi_ref


def _simulate(dyn, policy, P, logp_ref, x, params0, hp, *, num_steps, num_logs, seeds=1, seed=0):
    """Gaps ``(C, G, S, num_logs+1)`` at steps ``linspace(0, num_steps, num_logs+1)``.

    ``hp``: dict of ``(C,)`` arrays incl. ``num_iterations`` (each config freezes after it);
    games: ``P (G, 1, N, N)``, ``logp_ref (G, 1, N)``, ``x`` and ``params0`` batched over G.
    """
    log_every = num_steps // num_logs

    def lane(h, P, logp_ref, x, params0, key):
        def gap(params):
            pi = jnp.exp(policy.log_probs(params, x))[0]
            return regularized_gap(P[0], pi, jnp.exp(logp_ref[0]), h["beta"])

        def step(carry, _):
            st, key = carry
            key, k = jax.random.split(key)
            new, _ = dyn.update(st, P, logp_ref, x, h, k)
            active = st.step < h["num_iterations"]
            return (jax.tree.map(lambda a, b: jnp.where(active, a, b), new, st), key), None

        def block(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=log_every)
            return carry, gap(carry[0].params)

        st = dyn.init(key, params0)
        _, gaps = jax.lax.scan(block, (st, key), None, length=num_logs)
        return jnp.concatenate([gap(params0)[None], gaps])

    f = jax.vmap(lane, in_axes=(None, None, None, None, None, 0))           # seeds
    f = jax.vmap(f, in_axes=(None, 0, 0, 0, 0, None))                       # games
    f = jax.jit(jax.vmap(f, in_axes=(0, None, None, None, None, None)))     # configs
    keys = jax.random.split(jax.random.key(seed, impl=PRNG_IMPL), seeds)
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}
    out = f(hp, P, logp_ref, x, params0, keys)
    return np.asarray(jax.block_until_ready(out))


def _hp(configs, n):
    betas, iters, lrs = (np.array(c, dtype=np.float64) for c in zip(*configs))
    return {"beta": betas, "num_iterations": iters, "learning_rate": lrs, "mixture": 2 * lrs / n}


def _final(gaps, configs, num_steps, num_logs):
    """Gap at each config's last iteration: ``(C, G, S)``."""
    idx = [int(round(T / (num_steps // num_logs))) for _, T, _ in configs]
    return np.stack([gaps[c, ..., i] for c, i in enumerate(idx)])


def sampled_claims(ctx: SuiteContext) -> list[Claim]:
    """Run the sampled simulations, write ``sampled_*`` files, return the claims."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = _settings(ctx.scale)
    n, configs = s["num_responses"], s["configs"]
    num_steps = max(T for _, T, _ in configs)
    num_logs = s["num_logs"]
    steps = np.arange(num_logs + 1) * (num_steps // num_logs)
    P, logp_ref, params0 = _tabular_games(jax.random.key(0), s["num_games"], n)
    x = jnp.zeros((s["num_games"], 1), jnp.int32)
    pol = tabular(1, n)
    hp = _hp(configs, n)
    timings, rows, gaps = {}, [], {}
    for mode in ("population", "sampled"):
        for label, factory in ALGOS.items():
            if mode == "sampled" and label not in s["sampled_algos"]:
                continue
            dyn = factory(pol, mode=mode, num_samples=s["num_samples"], bernoulli=False)
            t0 = time.perf_counter()
            g = _simulate(dyn, pol, P, logp_ref, x, params0, hp, num_steps=num_steps, num_logs=num_logs)
            timings[f"{label}/{mode}"] = round(time.perf_counter() - t0, 2)
            gaps[label, mode] = g
            fin = _final(g, configs, num_steps, num_logs)
            for c, (beta, T, lr) in enumerate(configs):
                for gi in range(g.shape[1]):
                    rows.append(dict(algorithm=label, mode=mode, beta=beta, iterations=T, learning_rate=lr,
                                     game=gi, initial_gap=g[c, gi, 0, 0], final_gap=fin[c, gi, 0]))
    ctx.write_csv("sampled_tabular_final.csv", rows)
    curve_rows = [dict(algorithm=a, mode=m, beta=configs[c][0], step=int(steps[i]),
                       median_gap=float(np.median(g[c, :, 0, i])))
                  for (a, m), g in gaps.items() for c in range(len(configs)) for i in range(num_logs + 1)
                  if steps[i] <= configs[c][1]]
    ctx.write_csv("sampled_tabular_curves.csv", curve_rows)

    fig, axes = plt.subplots(2, len(configs), figsize=(4.2 * len(configs), 7), squeeze=False)
    for r, mode in enumerate(("population", "sampled")):
        for c, (beta, T, lr) in enumerate(configs):
            ax = axes[r, c]
            keep = steps <= T
            for (a, m), g in gaps.items():
                if m != mode:
                    continue
                med = np.median(g[c, :, 0], axis=0)
                lo, hi = np.quantile(g[c, :, 0], [0.25, 0.75], axis=0)
                ax.plot(steps[keep], med[keep], label=a)
                ax.fill_between(steps[keep], lo[keep], hi[keep], alpha=0.2)
            ax.set_yscale("log")
            ax.set_title(f"{mode}: beta={beta}, lr={lr}")
            ax.set_xlabel("iteration")
            ax.set_ylabel("duality gap (median, IQR)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "sampled_tabular.png")

    # ---- noise floor of sampled EGPO vs samples per step
    fb, fT, flr = s["floor_config"]
    fhp = _hp([s["floor_config"]], n)
    Pf, lrf, p0f = (a[: s["floor_games"]] for a in (P, logp_ref, params0))
    xf = x[: s["floor_games"]]
    log_every = num_steps // num_logs
    reusable = fT // log_every >= 10 and (fb, fT, flr) == tuple(configs[0]) and s["floor_games"] <= s["num_games"]
    if not reusable:  # the main run's log grid is too coarse for this config: own grid
        log_every = max(fT // 50, 1)
    floor_logs = fT // log_every
    floor, floor_curves = {}, {}
    for K in s["floor_samples"]:
        if K == s["num_samples"] and reusable:
            g = gaps["EGPO", "sampled"][:1, : s["floor_games"], :, : floor_logs + 1]  # same run: reuse it
        else:
            dyn = S.sampled_egpo(pol, mode="sampled", num_samples=K, bernoulli=False)
            t0 = time.perf_counter()
            g = _simulate(dyn, pol, Pf, lrf, xf, p0f, fhp, num_steps=fT, num_logs=floor_logs)
            timings[f"EGPO/sampled K={K}"] = round(time.perf_counter() - t0, 2)
        floor_curves[K] = g[0, :, 0]
        tail = g[0, :, 0, -max(floor_logs // 5, 1):]  # last 20% of the run
        floor[K] = float(np.median(tail.mean(-1)))
    ctx.write_csv("sampled_noise_floor.csv", [dict(samples_per_step=K, beta=fb, learning_rate=flr,
                                                   iterations=fT, floor_gap=v) for K, v in floor.items()])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    fsteps = np.arange(floor_logs + 1) * log_every
    for K, g in floor_curves.items():
        ax.plot(fsteps, np.median(g, axis=0), label=f"{K} samples/step")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("duality gap (median over games)")
    ax.set_title(f"sampled EGPO, beta={fb}, lr={flr}")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "sampled_noise_floor.png")

    # ---- neural EGPO (N = 100, MLP policy, Adam)
    nn_n, nn_g, d = s["neural_responses"], s["neural_games"], s["neural_features"]
    npol = mlp(d, nn_n, width=s["neural_width"], depth=2)
    kp, kx, ki = jax.random.split(jax.random.key(2), 3)
    nP = jax.vmap(lambda k: random_game(k, nn_n))(jax.random.split(kp, nn_g))[:, None]
    nx = jax.random.normal(kx, (nn_g, 1, d))
    nparams0 = jax.vmap(npol.init)(jax.random.split(ki, nn_g))
    nlogp_ref = jax.vmap(npol.log_probs)(nparams0, nx)  # pi_ref = initial policy
    nconf = [(s["neural_beta"], s["neural_steps"], s["neural_lr"])]
    nhp = _hp(nconf, nn_n)
    ndyn = S.sampled_egpo(npol, mode="population", optimizer=optax.scale_by_adam())
    t0 = time.perf_counter()
    nlogs = min(num_logs, 100)
    ng = _simulate(ndyn, npol, nP, nlogp_ref, nx, nparams0, nhp, num_steps=s["neural_steps"], num_logs=nlogs)
    timings["EGPO/neural"] = round(time.perf_counter() - t0, 2)
    ng = ng[0, :, 0]  # (G, L+1)
    ctx.write_csv("sampled_neural.csv", [dict(game=gi, initial_gap=ng[gi, 0], final_gap=ng[gi, -1])
                                         for gi in range(nn_g)])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    nsteps = np.arange(nlogs + 1) * (s["neural_steps"] // nlogs)
    for gi in range(nn_g):
        ax.plot(nsteps, ng[gi], color="C0", alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("duality gap")
    ax.set_title(f"neural EGPO (MLP), N={nn_n}, beta={nconf[0][0]}, Adam lr={nconf[0][2]}")
    ctx.savefig(fig, "sampled_neural.png")

    ctx.config["sampled"] = dict(s, configs=[list(c) for c in configs], timings_s=timings, bernoulli=False,
                                 mixture="2*lr/N", stall_threshold=STALL, optimizer_tabular="sgd",
                                 optimizer_neural="adam", neural_reference="initial MLP policy")
    return _claims(gaps, configs, num_steps, num_logs, floor, ng, s)


def _claims(gaps, configs, num_steps, num_logs, floor, ng, s) -> list[Claim]:
    out = []
    fin = {k: _final(g, configs, num_steps, num_logs)[..., 0] for k, g in gaps.items()}  # (C, G)
    init = {k: g[:, :, 0, 0] for k, g in gaps.items()}
    ratio = {k: np.median(fin[k] / init[k], axis=1) for k in gaps}  # (C,)
    betas = [c[0] for c in configs]

    Ks = sorted(floor)
    vals = [floor[K] for K in Ks]
    decreasing = all(a > b for a, b in zip(vals[:-1], vals[1:]))
    out.append(claim(
        "sampled-egpo-noise-floor-shrinks",
        "Sampled EGPO (constant lr) levels off at a gap floor that shrinks as samples per step grow.",
        SOURCE, "EGPO is robust to noise; sampled runs converge to a noise-dominated neighbourhood",
        {f"floor_gap_K{K}": v for K, v in floor.items()},
        decreasing and vals[0] > 3 * vals[-1],
        f"median over games of the mean gap over the last 20% of {s['floor_config'][1]} iterations "
        f"(beta={s['floor_config'][0]}, lr={s['floor_config'][2]}); holds if strictly decreasing in K "
        f"and floor(K={Ks[0]}) > 3 x floor(K={Ks[-1]})."))

    small = len(configs) - 1
    stall = {a: float(ratio[a, "population"][small]) for a in ("Online IPO 2", "Nash-MD-PG")}
    egpo_r = float(ratio["EGPO", "population"][small])
    sampled_stall = {f"{a} (sampled)": float(ratio[a, "sampled"][small]) for a in ("Online IPO 2", "Nash-MD-PG")
                     if (a, "sampled") in ratio}
    out.append(claim(
        "online-ipo2-nash-md-pg-stall-small-beta",
        f"At the smallest beta run (beta={betas[small]}), online IPO 2 and Nash-MD-PG stall: "
        f"their gap falls by less than {1 / STALL:.0f}x, while EGPO's falls by more.",
        SOURCE, "online IPO with soft labels and Nash-MD-PG stall at small beta",
        dict({f"{a} final/initial": v for a, v in stall.items()}, **sampled_stall,
             **{"EGPO final/initial": egpo_r}),
        all(v > STALL for v in stall.values()) and egpo_r < STALL,
        f"population (exact-expectation) losses, tabular SGD, median over {s['num_games']} games of "
        f"final gap / initial gap; quick runs shorten the beta=0.01 run and skip beta=0.001."))

    fastest = []
    for c, beta in enumerate(betas):
        meds = {a: float(np.median(fin[a, "population"][c])) for a in ALGOS}
        fastest.append(meds["EGPO"] <= min(meds.values()) * (1 + 1e-6))
    out.append(claim(
        "egpo-lowest-gap-every-beta",
        "With the population losses, EGPO ends with the lowest gap of the four methods at every beta.",
        SOURCE, "EGPO converges fastest (linear rate)",
        {f"beta={b}": {a: float(np.median(fin[a, 'population'][c])) for a in ALGOS} for c, b in enumerate(betas)},
        all(fastest),
        "median over games of the gap at each config's last iteration."))

    if all((a, "sampled") in fin for a in ALGOS):  # full setting only (quick runs sampled EGPO alone)
        smeds = {b: {a: float(np.median(fin[a, "sampled"][c])) for a in ALGOS} for c, b in enumerate(betas)}
        out.append(claim(
            "sampled-egpo-lowest-gap-every-beta",
            f"With sampled losses ({s['num_samples']} samples per step), EGPO ends with the lowest gap of the "
            "four methods at every beta.",
            SOURCE, "EGPO outperforms the baselines in the sampled simulation",
            {f"beta={b}": m for b, m in smeds.items()},
            all(m["EGPO"] <= min(m.values()) * (1 + 1e-6) for m in smeds.values()),
            "median over games of the gap at each config's last iteration; with a constant learning rate "
            "every sampled method ends at a noise floor, so this compares floors, not rates."))

    nr = float(np.median(ng[:, -1] / ng[:, 0]))
    out.append(claim(
        "neural-egpo-reduces-gap",
        "EGPO with an MLP policy (N=100) reduces the duality gap by at least 10x.",
        SOURCE, "neural-network policies: EGPO's gap decreases",
        {"median final/initial": nr, "median initial": float(np.median(ng[:, 0])),
         "median final": float(np.median(ng[:, -1]))},
        nr < 0.1,
        f"{s['neural_games']} random games, {s['neural_steps']} Adam steps (lr={s['neural_lr']}), "
        f"population loss; pi_ref = the MLP's initial policy."))
    return out
