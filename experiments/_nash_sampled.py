"""Sampled (loss-driven) part of the ``nash-games`` suite: the EGPO simulation (Zhou et al. 2025).

Called by ``experiments/nash_games.py`` as ``sampled_claims(ctx) -> list[Claim]``; writes only
``sampled_*.png`` / ``sampled_*.csv`` files into ``ctx.out_dir`` and the stages ``sampled``,
``sampled-floor`` and ``neural``.

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
EGPO with the population loss and plain SGD (the authors' exact neural config).

Every run is a :class:`~alignjax.experiment.Program` (state: the dynamic's state, its PRNG key,
the prompt input and ``log pi_ref``; step: one ``update``; observe: the regularised gap) run by
:func:`alignjax.sweep.run_sweep`, one compile per (algorithm, mode, samples per step), over a
grid whose rows are (config, game) with the game and its reference as per-row data. Configs
with fewer iterations than the longest are frozen (masked) after their own iteration count, so
one program serves all of them.

Layout: settings, programs, one computation per stage, claims, plots and tables, then
:func:`sampled_claims`, which wires them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alignjax import claims as C
from alignjax.dynamics import sampled as S
from alignjax.experiment import Program
from alignjax.games import regularized_gap
from alignjax.policies import mlp, tabular
from alignjax.prefs import random_game
from alignjax.registry import DYNAMICS
from alignjax.results import SuiteContext
from alignjax.sweep import Grid, run_sweep

SOURCE = "Zhou et al. 2025, EGPO (arXiv 2503.08942), §6 simulations / Fig. 1-2"
ALGOS = {  # registered sampled dynamic -> display label
    "sampled-egpo": "EGPO",
    "sampled-online-ipo-1": "Online IPO 1",
    "sampled-online-ipo-2": "Online IPO 2",
    "sampled-nash-md-pg": "Nash-MD-PG",
}
MODES = ("population", "sampled")
PRNG_IMPL = "rbg"  # cheap to compile on CPU (threefry inside vmapped scans compiles for ~1 min)
# ... but a vmapped rbg draw takes a whole batch's bits from the batch's FIRST key (JAX's batching
# rule of RngBitGenerator), so runs with sampled losses go one row per vmap block
# (``block_size=1``): each row then draws from its own key, and every (config, game) row shares
# the sweep's one seed key (common random numbers). Population-loss runs draw nothing: default blocks.
CONTROL_LR_FACTOR = 0.1  # the lowest-gap claims' control: EGPO at this fraction of its learning rate
STALL = 0.1  # "stalls": final gap / initial gap > STALL (less than one decade of reduction)
HPARAMS = ("beta", "num_iterations", "learning_rate", "mixture")  # the scalar leaves an update sees


# ---------------------------------------------------------------------------------------------
# Part B's claims, declared before any measurement (claims contract v3); nash_games.CLAIMS
# appends them to part A's. Units of every interval: games.
# ---------------------------------------------------------------------------------------------
EGPO_SRC = "Zhou et al. 2025, EGPO (arXiv 2503.08942)"
FLOOR_RATIO = 3.0  # floor(K = 10) / floor(K = 1000) > 3 (v2's factor)
TIE = 1.0 + 1e-6   # "lowest": at most the best other's value up to float rounding (v2's tolerance)
_POP_SETTING = ("authors' exact tabular configs (beta, iterations, lr) = (0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, "
                "100000, 2e-4) with their iteration counts; 10 (quick) or 20 (full) random games N = 10, pi_0 = pi_ref "
                "= softmax(N(0,1)), tabular logits, plain SGD, population (exact-expectation) losses; Nash-MD-PG "
                "mixture weight 2 lr/N (grid_search.py:79, loss_funcs.py:160-161)")
_SAMPLED_SETTING = ("(beta, iterations, lr) = (0.01, 100000, 2e-4) (configs.py:14), 3 (quick) or 10 (full) games, 100 "
                    "sampled pairs per step, P's entries as labels (the authors' choice); floor = mean gap over the "
                    "last 20% of the run")

SAMPLED_CLAIMS = C.declared([
    C.ClaimSpec(
        id="sampled-egpo-noise-floor-shrinks",
        statement=("Sampled EGPO (constant learning rate) levels off at a gap floor that shrinks as the samples per "
                   f"step grow: the median floor at K = 10 samples is more than {FLOOR_RATIO:g}x that at K = 1000"),
        source=f"{EGPO_SRC}, abstract and Table 1 (robust to noisy gradient estimates)",
        paper_value="EGPO is robust to noise; sampled runs converge to a neighbourhood that shrinks with the noise",
        setting=("config (0.1, 1000, 0.1) (the authors' beta = 0.1 exact config, run with sampled losses), 3 (quick) "
                 "or 10 (full) games, K in 10, 100, 1000; floor = mean gap over the last 20% of the run"),
        check=C.Check("median floor (K = 10) / median floor (K = 1000)", ">", FLOOR_RATIO,
                      "docs/thresholds.md#sampled-egpo-noise-floor-shrinks: gradient variance 1/K predicts a ratio of 10 "
                      "(gap linear in the distance) to 100 (quadratic); 3 ~ sqrt(10)"),
        control="sampled Nash-MD-PG at the same config and the same K = 10 and 1000, same ratio",
        history=(C.CheckChange(
            old=C.Check("floor(K = 10) / floor(K = 1000), with the floors strictly decreasing in K", ">", FLOOR_RATIO,
                        "v2"),
            why=("one scalar per check (contract v3): the monotonicity through K = 100 is reported in measured, not "
                 "checked (easier); v2's control (the same numbers reversed) could not fail"),
            commit="v2", easier=True),)),
    C.ClaimSpec(
        id="online-ipo2-nash-md-pg-stall-small-beta",
        statement=("At the smallest beta of the authors' simulations (beta = 0.001, 100,000 iterations), online IPO 2 "
                   "and Nash-MD-PG stall: the median gap of each falls by less than 10x"),
        source=(f"{EGPO_SRC}, numerical simulations, tabular beta = 0.001 panel (online IPO 2 and Nash-MD-PG converge "
                "slowly or not at small beta; figure number not confirmed)"),
        paper_value="online IPO 2 and Nash-MD-PG stall at small beta; EGPO converges",
        setting=_POP_SETTING,
        check=C.Check("min over {online IPO 2, Nash-MD-PG} of the median over games of final gap / initial gap", ">", 0.1,
                      "docs/thresholds.md#online-ipo2-nash-md-pg-stall-small-beta: at EGPO's rate the budget covers 3.5 "
                      "decades; one decade is the chosen split"),
        control="EGPO at the same config, same median final/initial ratio",
        history=(C.CheckChange(
            old=C.Check("stall of both methods AND EGPO's ratio < 0.1 (compound; control: EGPO's ratio > 0.1, the "
                        "claim's own check negated)", ">", 0.1, "v2"),
            why=("one scalar per check and a control that can fail (issue 22): EGPO's convergence moved from the "
                 "subject's compound check to the control, whose verdict the framework reports"),
            commit="v2", easier=True),)),
    C.ClaimSpec(
        id="egpo-lowest-gap-every-beta",
        statement=("With the population losses, EGPO ends with the lowest gap of the four methods at every beta (ties "
                   "at the float32 floor, 1e-11, count as lowest)"),
        source=f"{EGPO_SRC}, Table 1 (fastest last-iterate rate) and its exact tabular simulations",
        paper_value="EGPO converges fastest (linear rate)",
        setting=_POP_SETTING,
        check=C.Check("max over beta of median final gap (EGPO) / min over the others of their median final gap "
                      "(gaps clipped at 1e-11)", "<=", TIE, "docs/thresholds.md#egpo-lowest-gap-every-beta: 'lowest' is a ratio <= 1, with about 8 "
                      "float32 ulps of tolerance"),
        control=("EGPO at a tenth of its learning rate (same configs, games and budgets; stage "
                 "lowest-gap-control) in EGPO's place against the same three methods, same ratio: a broken EGPO "
                 "that is lowest only if the ordering does not depend on EGPO's step. v3's first control, "
                 "Nash-MD-PG in EGPO's place, was the same runs reordered")),
    C.ClaimSpec(
        id="sampled-egpo-lowest-gap",
        statement=("With sampled losses at the authors' empirical tabular config (100 samples per step), EGPO ends at "
                   "the lowest noise floor of the four sampled methods"),
        source=f"{EGPO_SRC}, empirical (sampled) tabular simulation; config from simulations/configs.py:14",
        paper_value="EGPO outperforms the baselines in the sampled simulation",
        setting=_SAMPLED_SETTING,
        check=C.Check("median floor (EGPO) / min over the others of their median floor", "<=", TIE,
                      "docs/thresholds.md#sampled-egpo-lowest-gap: 'lowest' is a ratio <= 1, with float rounding "
                      "tolerance"),
        control=("sampled EGPO at a tenth of its learning rate (same config, games, budget and samples; stage "
                 "lowest-gap-control) in EGPO's place against the same three methods, same ratio (a constant step's "
                 "noise floor scales with the step, so it can be lowest). v3's first control, Nash-MD-PG in EGPO's "
                 "place, was the same runs reordered"),
        history=(C.CheckChange(
            old=C.Check("median floor (EGPO) / min over the others of their median floor", "<=", TIE,
                        "v2: the same ratio read as one number (0.97), no interval; the floor replaced the single "
                        "final point after the order flipped between quick and full"),
            why="issue 22: the ratio (0.97) had no interval; v3 bootstraps it over games (the check is unchanged)",
            commit="v2", easier=False),
            C.CheckChange(
            old=C.Check("median final gap (EGPO) / min over the others of their median final gap (the last logged "
                        "point)", "<=", TIE, "v1: 'lowest' at the run's end"),
            why=("recorded 2026-12-07 (review): v2 replaced the final point by the noise floor (mean of the last 20% of "
                 "the run) after the order flipped between quick and full; with a constant step every method ends "
                 "at a noise floor, and one logged point is one draw of it. The old check's verdict on this run is "
                 "reported"),
            commit="v2", easier=False))),
    C.ClaimSpec(
        id="nash-md-pg-stall-every-mixture",
        statement=("At beta = 0.001, Nash-MD-PG stalls for every mixture coefficient m of its opponent pi^(1-m) "
                   "pi_ref^m (median gap falls by less than 10x within the authors' budget), so the stall is not an "
                   "artefact of the authors' tiny m = 2 lr/N"),
        source=("beyond the paper: a sweep of Nash-MD-PG's mixture coefficient (NLHF, arXiv 2312.00886, §7 sweeps it "
                "on language models; the EGPO authors' simulations use m = 2 lr/N, grid_search.py:79)"),
        paper_value="Nash-MD-PG stalls at small beta (EGPO simulations)",
        setting=_POP_SETTING + "; mixtures m in 0, 4e-5, 0.01, 0.125, 0.5, 1 at the config (0.001, 100000, 2e-4)",
        check=C.Check("min over m of the median over games of final gap / initial gap (Nash-MD-PG)", ">", 0.1,
                      "docs/thresholds.md#nash-md-pg-stall-every-mixture: 3.5 decades available at EGPO's rate, "
                      "split at one"),
        control="Nash-MD-PG at the authors' beta = 0.1 config (1000 iterations, lr 0.1), same ratio"),
    C.ClaimSpec(
        id="sampled-inpo-bernoulli-feedback",
        statement=("INPO, in its own step regime (tau/eta = 1/3 of its defaults, i.e. eta beta = 1/3 here), learns "
                   "from binary preference feedback alone (one Bernoulli outcome per sampled pair, no win-rate "
                   "estimate): its last iterate's regularised gap falls at least 10x on every game"),
        source=("Zhang et al. 2024, INPO (arXiv 2407.00617), abstract and §4 (no-regret self-play on preference pairs; "
                "last-iterate convergence to the regularised NE; theorem number and constants not verified; defaults "
                "eta = 7.5e-3, tau = 2.5e-3 from a third-party reimplementation)"),
        paper_value="last-iterate convergence learnt from pairwise preference feedback",
        setting=("4 (quick) or 10 (full) random games N = 10, pi_0 = pi_ref = softmax(N(0,1)); beta = tau = 2.5e-3, "
                 "eta = 1/(3 beta) (eta beta = tau/eta_INPO = 1/3); tabular SGD lr 0.5, 100 pairs per step from the "
                 "anchor, anchor refreshed every 20 steps, 5000 steps"),
        check=C.Check("max over games of final gap / initial gap (Bernoulli feedback, eta beta = 1/3)", "<", 0.1,
                      "docs/thresholds.md#sampled-inpo-bernoulli-feedback: one decade, a convention (the sampled run's "
                      "noise floor is not derived)"),
        control="shuffled labels: every outcome a fair coin, independent of the pair, same ratio",
        history=(C.CheckChange(
            old=C.Check("max over games of final gap / initial gap (Bernoulli feedback, beta = 0.1, eta = 1)", "<", 0.1,
                        "v2: eta beta = 0.1, outside INPO's regime"),
            why="issue 22: weaker than the paper; v3 runs INPO's own step regime (tau/eta = 1/3)",
            commit="v2", easier=False),)),
    C.ClaimSpec(
        id="neural-egpo-reduces-gap",
        statement="EGPO with a neural policy (MLP, N = 100) reduces the duality gap by at least 10x within the "
                  "authors' budget",
        source=f"{EGPO_SRC}, neural exact simulation; config simulations/configs.py:9",
        paper_value="neural-network policies: EGPO's gap decreases",
        setting=("3 (quick) or 10 (full) random games N = 100, beta = 0.01, 10,000 plain SGD steps, lr = 0.003, 2 "
                 "hidden layers of width 10 on a 10-dim N(0,1) input, population loss, pi_ref = the MLP's initial policy"),
        check=C.Check("median over games of final gap / initial gap (neural)", "<", 0.1,
                      "docs/thresholds.md#neural-egpo-reduces-gap: one decade, a convention (no rate applies to the "
                      "MLP's step)"),
        control="Nash-MD-PG (population loss, same MLP, lr, budget and mixture 2 lr/N), same ratio"),
])


# ------------------------------------------------------------------------------------ settings
def _settings(scale) -> dict:
    """Part B's settings for ``scale`` (``"full"``, ``"quick"``, ``"smoke"``; a bool is quick/full).

    Quick and full run the authors' configurations with their iteration counts
    (``simulations/configs.py``): population losses at the three exact tabular configs, sampled
    losses at the authors' empirical tabular config ``(0.01, 100000, 2e-4)`` with all four
    sampled methods, and the exact neural config (beta 0.01, 10,000 SGD steps, lr 0.003, N = 100,
    two hidden layers of width 10 on a 10-dimensional N(0,1) input); full draws more games.
    """
    from alignjax.results import scale_name

    scale = scale_name(scale)
    full = scale == "full"
    s = dict(num_responses=10, num_games=20 if full else 10,
             configs=[(0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, 100000, 2e-4)], num_logs=2000,
             num_samples=100, sampled_config=(0.01, 100000, 2e-4), sampled_games=10 if full else 3,
             sampled_algos=list(ALGOS), sampled_num_logs=200,
             floor_samples=[10, 100, 1000], floor_config=(0.1, 1000, 0.1), floor_games=10 if full else 3,
             neural_responses=100, neural_games=10 if full else 3, neural_steps=10000, neural_beta=0.01,
             neural_lr=3e-3, neural_width=10, neural_depth=2, neural_features=10,
             inpo_config=(2.5e-3, 5000, 0.5), inpo_eta=1.0 / (3 * 2.5e-3), inpo_round=20, inpo_games=10 if full else 4, inpo_num_logs=20,
             mixtures=[0.0, 2 * 2e-4 / 10, 0.01, 0.125, 0.5, 1.0])
    if scale == "smoke":  # tests only: every stage runs, budgets far too small for the claims
        # population runs keep the authors' budgets (cheap): the stall check's control needs EGPO converged
        s.update(num_games=2, num_logs=200,
                 sampled_games=2, sampled_num_logs=20, sampled_config=(0.01, 2000, 2e-4), floor_config=(0.1, 400, 0.1),
                 floor_games=2, neural_responses=20, neural_games=2, neural_steps=200, inpo_games=2)
    return s


def _log_every(s: dict) -> int:
    """Logging period of the tabular runs: ``num_logs`` intervals over the longest budget."""
    return max(T for _, T, _ in s["configs"]) // s["num_logs"]


def _tabular_games(key, num_games, n):
    """``P (G, 1, N, N)`` and ``log pi_ref (G, 1, N)`` (one prompt per game); ``pi_0 = pi_ref``."""
    kp, kr = jax.random.split(key)
    P = jax.vmap(lambda k: random_game(k, n))(jax.random.split(kp, num_games))[:, None]
    return P, jax.nn.log_softmax(jax.random.normal(kr, (num_games, 1, n)), axis=-1)


# ------------------------------------------------------------------------------------- programs
class RunState(NamedTuple):
    """One run: the dynamic's state, its PRNG key, the prompt input and ``log pi_ref``."""

    dyn: S.SampledState
    key: jax.Array
    x: Any
    logp_ref: jax.Array


def _program(dyn: S.SampledDynamics, policy, start, names: tuple = HPARAMS) -> Program:
    """The engine's program of one sampled dynamic on one game per row.

    ``start(hparams) -> (x, params0, logp_ref)`` builds the row's prompt input, initial
    parameters and reference from its data leaves. Each step splits the key and applies one
    ``update``, frozen once ``step >= hparams["num_iterations"]``; observe: the regularised gap.
    """

    def init(h, key):
        x, params0, logp_ref = start(h)
        return RunState(dyn.init(key, params0), key, x, logp_ref)

    def step(st, h):
        key, k = jax.random.split(st.key)
        hp = {n: h[n] for n in names}
        # the preferences the learner observes: the game's, or (a control) a per-row "P_feedback"
        feedback = h["P_feedback"] if "P_feedback" in h else h["P"]
        new, _ = dyn.update(st.dyn, feedback, st.logp_ref, st.x, hp, k)
        active = st.dyn.step < h["num_iterations"]
        return st._replace(dyn=jax.tree.map(lambda a, b: jnp.where(active, a, b), new, st.dyn), key=key)

    def observe(st, h):
        pi = jnp.exp(policy.log_probs(st.dyn.params, st.x))[0]
        return {"gap": regularized_gap(h["P"][0], pi, jnp.exp(st.logp_ref[0]), h["beta"])}

    return Program(init, step, observe)


def _tabular_start(h):
    return jnp.zeros((1,), jnp.int32), h["logp_ref"], h["logp_ref"]  # params0 = logits = log pi_ref


def _grid(configs, n: int, data: dict) -> Grid:
    """Rows (config, game), config-major: the configs' scalars and the games' data ``(G, ...)``."""
    betas, iters, lrs = (np.array(c, dtype=np.float64) for c in zip(*configs))
    hp = {"beta": betas, "num_iterations": iters, "learning_rate": lrs, "mixture": 2 * lrs / n}
    G = len(next(iter(data.values())))
    leaves = {k: np.repeat(v, G) for k, v in hp.items()}
    leaves.update({k: np.concatenate([np.asarray(v)] * len(configs)) for k, v in data.items()})
    return Grid(leaves, ("config", "game"), num_seeds=1)


def _run(dyn, policy, start, configs, n, data, *, num_steps, log_every, sampled: bool, devices=None,
         names: tuple = HPARAMS) -> np.ndarray:
    """Gaps ``(C, G, 1, num_steps // log_every + 1)`` of one dynamic over configs x games.

    ``sampled``: the dynamic draws random numbers (sampled losses): one row per vmap block.
    ``devices``: as :func:`~alignjax.sweep.run_sweep` (default: all)."""
    grid = _grid(configs, n, data)
    res = run_sweep(_program(dyn, policy, start, names), grid, num_steps=num_steps, log_every=log_every, key_impl=PRNG_IMPL,
                    block_size=1 if sampled else None, devices=devices)  # block size: see PRNG_IMPL
    gap = res.metrics["gap"]  # (C * G, 1, L)
    return gap.reshape(len(configs), -1, *gap.shape[1:])


# -------------------------------------------------------------------------------- computations
def tabular_runs(s: dict) -> dict:
    """Stage ``sampled``: gaps ``{"population": {algo: (C, G, 1, L)}, "sampled": {algo: (1, G', 1, L')}}``:
    population losses at the three exact configs (logged at ``steps``), sampled losses at the
    authors' empirical config (logged at ``sampled_steps``)."""
    n, configs = s["num_responses"], s["configs"]
    P, logp_ref = _tabular_games(jax.random.key(0), s["num_games"], n)
    pol = tabular(1, n)
    log_every = _log_every(s)
    gaps = {"population": {}, "sampled": {}}
    for name in ALGOS:
        dyn = DYNAMICS.get(name)(pol, mode="population", num_samples=s["num_samples"], bernoulli=False)
        gaps["population"][name] = _run(dyn, pol, _tabular_start, configs, n, {"P": P, "logp_ref": logp_ref},
                                        num_steps=s["num_logs"] * log_every, log_every=log_every, sampled=False)
    G, (_, Ts, _) = s["sampled_games"], s["sampled_config"]
    le_s = Ts // s["sampled_num_logs"]
    for name in s["sampled_algos"]:
        dyn = DYNAMICS.get(name)(pol, mode="sampled", num_samples=s["num_samples"], bernoulli=False)
        gaps["sampled"][name] = _run(dyn, pol, _tabular_start, [s["sampled_config"]], n,
                                     {"P": P[:G], "logp_ref": logp_ref[:G]}, num_steps=s["sampled_num_logs"] * le_s,
                                     log_every=le_s, sampled=True)
    return {"gaps": gaps, "steps": np.arange(s["num_logs"] + 1) * log_every,
            "sampled_steps": np.arange(s["sampled_num_logs"] + 1) * le_s}


def lowest_gap_control(s: dict) -> dict:
    """Stage ``lowest-gap-control``: EGPO at ``CONTROL_LR_FACTOR`` times its learning rate, otherwise as
    stage ``sampled``: gaps ``{"population": (C, G, 1, L), "sampled": (1, G', 1, L')}`` (the control of
    ``egpo-lowest-gap-every-beta`` and ``sampled-egpo-lowest-gap``)."""
    n, f = s["num_responses"], CONTROL_LR_FACTOR
    P, logp_ref = _tabular_games(jax.random.key(0), s["num_games"], n)
    pol = tabular(1, n)
    log_every = _log_every(s)
    slow = [(b, T, lr * f) for b, T, lr in s["configs"]]
    dyn = DYNAMICS.get("sampled-egpo")(pol, mode="population", num_samples=s["num_samples"], bernoulli=False)
    pop = _run(dyn, pol, _tabular_start, slow, n, {"P": P, "logp_ref": logp_ref}, num_steps=s["num_logs"] * log_every,
               log_every=log_every, sampled=False)
    G, (b, Ts, lr) = s["sampled_games"], s["sampled_config"]
    le_s = Ts // s["sampled_num_logs"]
    dyn = DYNAMICS.get("sampled-egpo")(pol, mode="sampled", num_samples=s["num_samples"], bernoulli=False)
    smp = _run(dyn, pol, _tabular_start, [(b, Ts, lr * f)], n, {"P": P[:G], "logp_ref": logp_ref[:G]},
               num_steps=s["sampled_num_logs"] * le_s, log_every=le_s, sampled=True)
    return {"population": pop, "sampled": smp}


def noise_floor(s: dict) -> dict:
    """Stage ``sampled-floor``: sampled EGPO's gap curves ``{K: (G, L)}`` at the floor config for
    each number ``K`` of samples per step, and (``control``) sampled Nash-MD-PG's at the smallest
    and largest K."""
    n = s["num_responses"]
    fT = s["floor_config"][1]
    log_every = max(fT // 50, 1)
    num_logs = fT // log_every
    P, logp_ref = (a[: s["floor_games"]] for a in _tabular_games(jax.random.key(0), s["num_games"], n))
    pol = tabular(1, n)
    curves = {}
    for K in s["floor_samples"]:
        dyn = S.sampled_egpo(pol, mode="sampled", num_samples=K, bernoulli=False)
        curves[str(K)] = _run(dyn, pol, _tabular_start, [s["floor_config"]], n, {"P": P, "logp_ref": logp_ref},
                              num_steps=num_logs * log_every, log_every=log_every, sampled=True)[0, :, 0]
    control = {}
    for K in (min(s["floor_samples"]), max(s["floor_samples"])):  # the control: sampled Nash-MD-PG
        dyn = DYNAMICS.get("sampled-nash-md-pg")(pol, mode="sampled", num_samples=K, bernoulli=False)
        control[str(K)] = _run(dyn, pol, _tabular_start, [s["floor_config"]], n, {"P": P, "logp_ref": logp_ref},
                               num_steps=num_logs * log_every, log_every=log_every, sampled=True)[0, :, 0]
    return {"curves": curves, "control": control, "steps": np.arange(num_logs + 1) * log_every}


def mixture_sweep(s: dict) -> dict:
    """Stage ``nash-md-pg-mixture``: population Nash-MD-PG at the smallest-beta config for each
    mixture coefficient ``m`` of ``mixtures`` (opponent ``pi^(1-m) pi_ref^m``): gaps ``(M, G, L)``."""
    n, cfg, ms = s["num_responses"], tuple(s["configs"][-1]), np.asarray(s["mixtures"], np.float64)
    P, logp_ref = _tabular_games(jax.random.key(0), s["num_games"], n)
    pol = tabular(1, n)
    grid = _grid([cfg] * len(ms), n, {"P": P, "logp_ref": logp_ref})
    grid.hparams["mixture"] = np.repeat(ms, s["num_games"])
    le = cfg[1] // 100
    dyn = DYNAMICS.get("sampled-nash-md-pg")(pol, mode="population")
    res = run_sweep(_program(dyn, pol, _tabular_start), grid, num_steps=cfg[1], log_every=le, key_impl=PRNG_IMPL)
    gap = res.metrics["gap"][:, 0]
    return {"gaps": gap.reshape(len(ms), s["num_games"], -1), "steps": np.arange(gap.shape[-1]) * le}


def inpo_bernoulli(s: dict) -> dict:
    """Stage ``inpo-bernoulli``: sampled INPO's gap curves ``{run: (G, L)}`` learning from Bernoulli
    outcomes (``bernoulli``), from the probabilities ``P`` (``probabilities``) and, the control, from
    outcomes independent of the pair (``shuffled``: every comparison a fair coin, ``P = 1/2``)."""
    n, G = s["num_responses"], s["inpo_games"]
    P, logp_ref = (a[:G] for a in _tabular_games(jax.random.key(0), max(G, s["num_games"]), n))
    pol = tabular(1, n)
    T = s["inpo_config"][1]
    le = T // s["inpo_num_logs"]
    base = {"P": P, "logp_ref": logp_ref, "eta": np.full(G, s["inpo_eta"])}
    names = HPARAMS + ("eta",)
    curves = {}
    for run, bern, data in (("bernoulli", True, base), ("probabilities", False, base),
                            ("shuffled", True, dict(base, P_feedback=np.full(np.shape(P), 0.5)))):
        dyn = DYNAMICS.get("sampled-inpo")(pol, mode="sampled", num_samples=s["num_samples"], bernoulli=bern,
                                           round_length=s["inpo_round"])
        curves[run] = _run(dyn, pol, _tabular_start, [s["inpo_config"]], n, data, num_steps=s["inpo_num_logs"] * le,
                           log_every=le, sampled=True, names=names)[0, :, 0]
    return {"curves": curves, "steps": np.arange(s["inpo_num_logs"] + 1) * le}


def neural(s: dict) -> dict:
    """Stage ``neural``: EGPO and (the control) Nash-MD-PG (population loss, plain SGD) with an MLP
    policy, gaps ``{"egpo", "nash-md-pg"}: (G, L)`` at ``steps``."""
    nn_n, nn_g, d = s["neural_responses"], s["neural_games"], s["neural_features"]
    npol = mlp(d, nn_n, width=s["neural_width"], depth=s["neural_depth"])
    kp, kx, ki = jax.random.split(jax.random.key(2), 3)
    data = {"P": jax.vmap(lambda k: random_game(k, nn_n))(jax.random.split(kp, nn_g))[:, None],
            "x": jax.random.normal(kx, (nn_g, 1, d)),
            "init_key": jax.random.key_data(jax.random.split(ki, nn_g))}

    def start(h):  # pi_ref = the MLP's initial policy
        params0 = npol.init(jax.random.wrap_key_data(h["init_key"]))
        return h["x"], params0, npol.log_probs(params0, h["x"])

    num_logs = min(s["num_logs"], 100)
    log_every = s["neural_steps"] // num_logs
    gaps = {}
    for key, name in (("egpo", "sampled-egpo"), ("nash-md-pg", "sampled-nash-md-pg")):  # the second: the control
        dyn = DYNAMICS.get(name)(npol, mode="population", optimizer=optax.identity())  # plain SGD, as the authors
        # One device: a few rows need no sharding (and a single device keeps the last bits identical).
        gaps[key] = _run(dyn, npol, start, [(s["neural_beta"], s["neural_steps"], s["neural_lr"])], nn_n, data,
                         num_steps=num_logs * log_every, log_every=log_every, sampled=False,
                         devices=jax.devices()[:1])[0, :, 0]
    return {"gaps": gaps, "steps": np.arange(num_logs + 1) * log_every}


# -------------------------------------------------------------------------------------- claims
def _spec(claim_id: str) -> C.ClaimSpec:
    """The declared part-B claim ``claim_id``."""
    return C.by_id(SAMPLED_CLAIMS, claim_id)


def _final(s: dict, main: dict) -> dict:
    """``{algo: (C, G)}`` population-loss gaps at each config's last iteration."""
    idx = [int(round(T / _log_every(s))) for _, T, _ in s["configs"]]
    return {a: np.stack([g[c, :, 0, i] for c, i in enumerate(idx)]) for a, g in main["gaps"]["population"].items()}


def tail_floor(curves: np.ndarray) -> np.ndarray:
    """Per game of ``curves (G, L)``: the mean gap over the last 20% of the logged run (the noise floor)."""
    num_logs = curves.shape[-1] - 1
    return curves[:, -max(num_logs // 5, 1):].mean(-1)


def ratio_of_medians(x: np.ndarray) -> float:
    """``median(x[:, 0]) / median(x[:, 1])`` over the units (rows)."""
    return float(np.median(x[:, 0]) / max(np.median(x[:, 1]), 1e-300))


def decreasing_ratio_of_medians(x: np.ndarray) -> float:
    """``x (G, K)`` (floors per game, K ascending): ``median(x[:, 0]) / median(x[:, -1])`` when the medians
    strictly decrease along K, else 0 (v2's check of sampled-egpo-noise-floor-shrinks as one number)."""
    med = np.median(x, axis=0)
    return float(med[0] / med[-1]) if np.all(np.diff(med) < 0) else 0.0


def lowest_ratio(x: np.ndarray) -> float:
    """``x (G, A[, C])`` with the subject first along A: max over C of median_G(subject) / min over
    the others of median_G(other) (1 or less: the subject is lowest at every C)."""
    med = np.median(x, axis=0)  # (A[, C])
    med = med.reshape(med.shape[0], -1)
    return float(np.max(med[0] / np.maximum(med[1:].min(0), 1e-300)))


def claims(s: dict, main: dict, floor: dict, nn: dict, ib: dict, mx: dict, lc: dict) -> list[dict]:
    """Part B's claims from the stages ``sampled``, ``sampled-floor``, ``nash-md-pg-mixture``,
    ``inpo-bernoulli``, ``neural`` and ``lowest-gap-control`` (units of every interval: games)."""
    out = []
    pop = _final(s, main)
    init = {a: g[:, :, 0, 0] for a, g in main["gaps"]["population"].items()}  # (C, G)
    ratio = {a: pop[a] / init[a] for a in ALGOS}  # (C, G) final / initial per game
    Ks = sorted(s["floor_samples"])
    fl = {K: tail_floor(floor["curves"][str(K)]) for K in Ks}
    fl_c = {K: tail_floor(floor["control"][str(K)]) for K in (Ks[0], Ks[-1])}
    out.append(C.evaluate(
        _spec("sampled-egpo-noise-floor-shrinks"), C.measure(np.stack([fl[Ks[0]], fl[Ks[-1]]], 1), ratio_of_medians),
        C.measure(np.stack([fl_c[Ks[0]], fl_c[Ks[-1]]], 1), ratio_of_medians),
        measured={f"median_floor_K{K}": float(np.median(v)) for K, v in fl.items()},
        note="floor = per game, mean gap over the last 20% of the run; ratio of the medians over games."))
    C.judge_old_check(out[-1], C.measure(np.stack([fl[K] for K in Ks], 1), decreasing_ratio_of_medians))

    small = len(s["configs"]) - 1
    stall = np.stack([ratio["sampled-online-ipo-2"][small], ratio["sampled-nash-md-pg"][small]], 1)  # (G, 2)
    min_med = lambda x: float(np.min(np.median(x, axis=0)))
    out.append(C.evaluate(
        _spec("online-ipo2-nash-md-pg-stall-small-beta"), C.measure(stall, min_med),
        C.measure(ratio["sampled-egpo"][small][:, None], min_med),
        measured={f"{ALGOS[a]} median final/initial": float(np.median(ratio[a][small])) for a in ALGOS},
        note="median over games of final gap / initial gap at the authors' budget. The paper's stall concerns the "
             "loss-driven online IPO 2 and Nash-MD-PG, not the exact OMD (INPO's update), which at eta*beta = 8e-5 is "
             "merely slow."))

    others = [a for a in ALGOS if a != "sampled-egpo"]
    idx = [int(round(T / _log_every(s))) for _, T, _ in s["configs"]]
    pop_ctl = np.stack([lc["population"][c, :, 0, i] for c, i in enumerate(idx)])  # (C, G): EGPO at lr/10
    table = lambda first: np.stack([np.maximum(first, 1e-11).T] + [np.maximum(pop[a], 1e-11).T for a in others], 1)
    # v2's compound (both stall AND EGPO's ratio < 0.1) as one number: min(A, 0.2 - B) > 0.1 iff A > 0.1 and B < 0.1
    C.judge_old_check(out[-1], C.measure(np.concatenate([stall, ratio["sampled-egpo"][small][:, None]], 1),
                                                  lambda x: min(min_med(x[:, :2]), 0.2 - float(np.median(x[:, 2])))))

    out.append(C.evaluate(
        _spec("egpo-lowest-gap-every-beta"), C.measure(table(pop["sampled-egpo"]), lowest_ratio),
        C.measure(table(pop_ctl), lowest_ratio),
        measured={**{f"beta={c[0]}": {ALGOS[a]: float(np.median(pop[a][i])) for a in ALGOS}
                     for i, c in enumerate(s["configs"])},
                  "EGPO at lr/10 (control), median final gap by beta": {
                      str(c[0]): float(np.median(pop_ctl[i])) for i, c in enumerate(s["configs"])}},
        note="median over games of the gap at each config's last iteration, clipped at the float32 floor 1e-11."))

    sfl = {a: tail_floor(g[0, :, 0]) for a, g in main["gaps"]["sampled"].items()}
    sfl_ctl = tail_floor(lc["sampled"][0, :, 0])
    stab = lambda first: np.stack([first] + [sfl[a] for a in others], 1)  # (G, A)
    out.append(C.evaluate(
        _spec("sampled-egpo-lowest-gap"), C.measure(stab(sfl["sampled-egpo"]), lowest_ratio),
        C.measure(stab(sfl_ctl), lowest_ratio),
        measured={"median_floor_gap": {ALGOS[a]: float(np.median(v)) for a, v in sfl.items()},
                  "EGPO at lr/10 (control), median floor gap": float(np.median(sfl_ctl))},
        note="with a constant learning rate every sampled method ends at a noise floor, so this compares floors; "
             "EGPO and online IPO 1 are within a few percent, so few games leave the verdict open. Sampled Nash-MD "
             "(geometric-mixture opponent) is not registered as a sampled dynamic and is not run."))
    fin = {a: g[0, :, 0, -1] for a, g in main["gaps"]["sampled"].items()}  # v1's statistic: the last logged point
    v1 = C.measure(np.stack([fin["sampled-egpo"]] + [fin[a] for a in others], 1), lowest_ratio)
    h = out[-1]["history"][1]
    h["old_subject"] = v1.as_dict()
    h["old_verdict"] = C.verdict(_spec("sampled-egpo-lowest-gap").history[1].old, v1)[0]

    mr = (mx["gaps"][:, :, -1] / mx["gaps"][:, :, 0]).T  # (G, M)
    out.append(C.evaluate(
        _spec("nash-md-pg-stall-every-mixture"), C.measure(mr, min_med),
        C.measure(ratio["sampled-nash-md-pg"][0][:, None], min_med),
        measured={f"m={m:g}": float(v) for m, v in zip(s["mixtures"], np.median(mr, 0))},
        note="population losses. The mixture barely matters: with lr = 2e-4 and a gradient weighted by pi(y), "
             "Nash-MD-PG's logits move too little at beta = 0.001 whatever its opponent. m = 2 lr/N = 4e-5 is the "
             "run of online-ipo2-nash-md-pg-stall-small-beta (the same number); this claim adds the other five m. "
             "Read the control's verdict: where it holds too, Nash-MD-PG also falls by less than 10x at the "
             "authors' beta = 0.1 budget (1000 iterations), so the stall is Nash-MD-PG's slowness at the authors' "
             "budgets rather than something specific to small beta (the control was declared before its run and "
             "is kept)."))

    ri = {k: c[:, -1] / c[:, 0] for k, c in ib["curves"].items()}
    mxf = lambda x: float(np.max(x))
    out.append(C.evaluate(
        _spec("sampled-inpo-bernoulli-feedback"), C.every_unit(ri["bernoulli"], mxf), C.every_unit(ri["shuffled"], mxf),
        measured={"median_final_gap": float(np.median(ib["curves"]["bernoulli"][:, -1])),
                  "max_final_over_initial_with_probabilities_as_labels": float(ri["probabilities"].max())},
        note="Bernoulli outcomes only add variance (the loss is affine in the outcome): the run with P's probabilities "
             "as labels is reported, and it behaves the same, so a failure here is the step regime, not the feedback. "
             "Mechanism: INPO's update is OMD without extragradient, log pi_(t+1) = (1 - eta beta) log pi_t + eta beta "
             "log pi_ref + eta (A pi_t); at tau = 2.5e-3 and eta beta = 1/3 the step on the payoff is eta = 133, and "
             "the skew payoff's rotation (modulus ~ (1 - eta beta) sqrt(1 + eta^2 lambda^2) > 1) makes the last "
             "iterate cycle on random games; v2's eta beta = 0.1 at eta = 1 converged (gap down 10x on every game). "
             "INPO's own eta and tau could not be verified in the paper (third-party defaults); its experiments are "
             "on LLMs, whose payoffs are win rates near 1/2 (smaller lambda)."))

    nr = {k: g[:, -1] / g[:, 0] for k, g in nn["gaps"].items()}
    med = lambda x: float(np.median(x))
    out.append(C.evaluate(
        _spec("neural-egpo-reduces-gap"), C.measure(nr["egpo"], med), C.measure(nr["nash-md-pg"], med),
        measured={"median_initial": float(np.median(nn["gaps"]["egpo"][:, 0])),
                  "median_final": float(np.median(nn["gaps"]["egpo"][:, -1]))},
        note="pi_ref = the MLP's initial policy (the learner starts as a copy of the reference, grid_search.py:87). "
             "Differences: tanh hidden layers and LeCun-normal weights (alignjax.policies.mlp) where the authors use "
             "ReLU and Xavier-normal (policies.py:28-58)."))
    return out


# ------------------------------------------------------------------------------ plots and tables
def tabular_plots(ctx: SuiteContext, s: dict, main: dict) -> None:
    """``sampled_tabular.png`` (population losses per config; sampled losses at the authors' empirical
    config), ``sampled_tabular_final.csv`` and ``sampled_tabular_curves.csv``."""
    import matplotlib.pyplot as plt

    configs, steps, ssteps = s["configs"], main["steps"], main["sampled_steps"]
    fin = _final(s, main)
    sb, sT, slr = s["sampled_config"]
    rows, curve_rows = [], []
    for a, g in main["gaps"]["population"].items():
        for c, (beta, T, lr) in enumerate(configs):
            rows += [dict(algorithm=ALGOS[a], mode="population", beta=beta, iterations=T, learning_rate=lr, game=gi,
                          initial_gap=g[c, gi, 0, 0], final_gap=fin[a][c, gi]) for gi in range(g.shape[1])]
            curve_rows += [dict(algorithm=ALGOS[a], mode="population", beta=beta, step=int(steps[i]),
                                median_gap=float(np.median(g[c, :, 0, i]))) for i in range(len(steps)) if steps[i] <= T]
    for a, g in main["gaps"]["sampled"].items():
        rows += [dict(algorithm=ALGOS[a], mode="sampled", beta=sb, iterations=sT, learning_rate=slr, game=gi,
                      initial_gap=g[0, gi, 0, 0], final_gap=g[0, gi, 0, -1]) for gi in range(g.shape[1])]
        curve_rows += [dict(algorithm=ALGOS[a], mode="sampled", beta=sb, step=int(ssteps[i]),
                            median_gap=float(np.median(g[0, :, 0, i]))) for i in range(len(ssteps))]
    ctx.write_csv("sampled_tabular_final.csv", rows)
    ctx.write_csv("sampled_tabular_curves.csv", curve_rows)

    fig, axes = plt.subplots(1, len(configs) + 1, figsize=(4.2 * (len(configs) + 1), 3.8), squeeze=False)
    panels = [("population", c, beta, T, lr, steps) for c, (beta, T, lr) in enumerate(configs)]
    panels.append(("sampled", 0, sb, sT, slr, ssteps))
    for ax, (mode, c, beta, T, lr, st) in zip(axes[0], panels):
        keep = st <= T
        for a, g in main["gaps"][mode].items():
            med = np.median(g[c, :, 0], axis=0)
            lo, hi = np.quantile(g[c, :, 0], [0.25, 0.75], axis=0)
            ax.plot(st[keep], med[keep], label=ALGOS[a])
            ax.fill_between(st[keep], lo[keep], hi[keep], alpha=0.2)
        ax.set_yscale("log")
        ax.set_title(f"{mode}: beta={beta}, lr={lr}" + (f", {s['num_samples']} samples/step" if mode == "sampled" else ""))
        ax.set_xlabel("iteration")
        ax.set_ylabel("duality gap (median, IQR)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "sampled_tabular.png")


def floor_plots(ctx: SuiteContext, s: dict, floor: dict) -> None:
    """``sampled_noise_floor.png`` and ``sampled_noise_floor.csv``."""
    import matplotlib.pyplot as plt

    fb, fT, flr = s["floor_config"]
    ctx.write_csv("sampled_noise_floor.csv", [dict(samples_per_step=K, beta=fb, learning_rate=flr, iterations=fT,
                                                   floor_gap=float(np.median(tail_floor(floor["curves"][str(K)]))))
                                              for K in s["floor_samples"]])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for K in s["floor_samples"]:
        ax.plot(floor["steps"], np.median(floor["curves"][str(K)], axis=0), label=f"{K} samples/step")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("duality gap (median over games)")
    ax.set_title(f"sampled EGPO, beta={fb}, lr={flr}")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "sampled_noise_floor.png")


def mixture_plots(ctx: SuiteContext, s: dict, mx: dict) -> None:
    """``sampled_nash_md_pg_mixture.png``: population Nash-MD-PG's median gap per mixture coefficient."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for m, g in zip(s["mixtures"], mx["gaps"]):
        ax.plot(mx["steps"], np.median(g, 0), label=f"m = {m:g}")
    ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_ylabel("duality gap (median)")
    b, T, lr = s["configs"][-1]
    ax.set_title(f"Nash-MD-PG (population), beta={b}, lr={lr}")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "sampled_nash_md_pg_mixture.png")


def inpo_plots(ctx: SuiteContext, s: dict, ib: dict) -> None:
    """``sampled_inpo_bernoulli.png``: sampled INPO's gap (median, min-max) per feedback kind."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for run, c in ib["curves"].items():
        line, = ax.plot(ib["steps"], np.median(c, 0), label=run)
        ax.fill_between(ib["steps"], c.min(0), c.max(0), alpha=0.15, color=line.get_color())
    ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_ylabel("duality gap")
    ax.set_title(f"sampled INPO, beta={s['inpo_config'][0]}, eta={s['inpo_eta']:.4g}")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "sampled_inpo_bernoulli.png")


def neural_plots(ctx: SuiteContext, s: dict, nn: dict) -> None:
    """``sampled_neural.png`` and ``sampled_neural.csv``."""
    import matplotlib.pyplot as plt

    ng, nc = nn["gaps"]["egpo"], nn["gaps"]["nash-md-pg"]
    ctx.write_csv("sampled_neural.csv", [dict(game=gi, initial_gap=ng[gi, 0], final_gap=ng[gi, -1],
                                              final_gap_nash_md_pg=nc[gi, -1]) for gi in range(ng.shape[0])])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for gi in range(ng.shape[0]):
        ax.plot(nn["steps"], ng[gi], color="C0", alpha=0.5, label="EGPO" if gi == 0 else None)
        ax.plot(nn["steps"], nc[gi], color="C1", alpha=0.5, ls="--", label="Nash-MD-PG (control)" if gi == 0 else None)
    ax.legend(fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("duality gap")
    ax.set_title(f"neural EGPO (MLP), N={s['neural_responses']}, beta={s['neural_beta']}, SGD lr={s['neural_lr']}")
    ctx.savefig(fig, "sampled_neural.png")


# ----------------------------------------------------------------------------------- reproduce
def sampled_claims(ctx: SuiteContext) -> list[dict]:
    """Part B of ``nash-games``: the stages ``sampled``, ``sampled-floor``, ``neural``; plots, tables, claims."""
    import matplotlib

    matplotlib.use("Agg")
    s = _settings(ctx.scale)
    ctx.config["sampled"] = dict(s, configs=[list(c) for c in s["configs"]], sampled_config=list(s["sampled_config"]),
                                 floor_config=list(s["floor_config"]), bernoulli=False, mixture="2*lr/N",
                                 stall_threshold=STALL, optimizer_tabular="sgd", optimizer_neural="sgd",
                                 neural_reference="initial MLP policy")
    main = ctx.stage("sampled", lambda: tabular_runs(s))
    tabular_plots(ctx, s, main)
    floor = ctx.stage("sampled-floor", lambda: noise_floor(s))
    floor_plots(ctx, s, floor)
    mx = ctx.stage("nash-md-pg-mixture", lambda: mixture_sweep(s))
    mixture_plots(ctx, s, mx)
    ib = ctx.stage("inpo-bernoulli", lambda: inpo_bernoulli(s))
    inpo_plots(ctx, s, ib)
    nn = ctx.stage("neural", lambda: neural(s))
    neural_plots(ctx, s, nn)
    lc = ctx.stage("lowest-gap-control", lambda: lowest_gap_control(s))
    return claims(s, main, floor, nn, ib, mx, lc)
