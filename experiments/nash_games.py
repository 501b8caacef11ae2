"""Suite ``nash-games``: non-transitive preference games, exact tabular dynamics (part A).

Papers: NLHF / Nash-MD (Munos et al., arXiv 2312.00886), EGPO (Zhou et al., arXiv 2503.08942),
INPO (Zhang et al., arXiv 2407.00617), MPO (Wang et al., arXiv 2410.16714), and for the
``beta = 0`` last-iterate results Daskalakis & Panageas (arXiv 1807.04252) and Wei et al.
(arXiv 2006.09517). See ``papers/nash_games.md`` for each claim, the paper's statement and our
numbers. Each claim is declared as data (``CLAIMS``, claims contract v3), checked in the regime
its paper states it for, with a budget long enough to decide (exact scans of 10^6 steps take
about a second), and carries a control of its own: the same check applied to another run.

1. EGPO simulation, exact tabular part (authors' setup, authors' budgets in quick and full):
   random games ``N = 10``, ``pi_0 = pi_ref = softmax(N(0, 1))``; configs ``(beta, iterations,
   SGD lr)`` = ``(0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, 100000, 2e-4)``; the exact step
   is ``eta = 4 lr / (N beta)`` (one SGD step of size ``lr`` on tabular logits of the online-IPO
   squared loss, mean over the ``N^2`` ordered pairs, is the exact step with that ``eta``; the
   authors' code uses ``2 lr / (N beta)`` as Nash-MD's mixture weight). Also plotted: SPPO
   (= MWU, no reference) at the same ``eta`` and INPO's exact update at ``eta beta = 1/3``.
2. Nash-MD's theorem (``eta_t = 2/(beta (t+2))``): the order of the rate, in float64.
3. ``beta = 0``: MWU vs OMWU / extragradient at one step size inside Wei et al.'s condition.
4. MPO: a fixed magnet (linear convergence to ``pi*_beta``) and magnet updates (exploitability
   of the original game to 0), with a sweep over the reset period.
5. EGPO on the original game through a small beta.
6. Why NLHF: annotator mixtures, the three-rater example, and the dependence of a BT fit on the
   distribution the comparisons are sampled from.
Then part B's sampled claims (``experiments/_nash_sampled.py``).

Thresholds (derivations behind the declared checks):

* Fitted linear rate. EGPO's exact step (and OMD's) is ``log pi_(t+1) = (1 - eta beta) log pi_t +
  eta beta log pi_ref + eta (A pi) + const``: the previous iterate is weighted by ``1 - eta beta``,
  so near ``pi*_beta`` the distance contracts at least like ``(1 - eta beta)^t`` (extragradient
  damps the rotation of the skew payoff to O(eta^2)); the duality gap is at least linear (near the
  equilibrium quadratic) in that distance, so the least-squares slope of ``log gap`` per step over
  the points above the float floor is at most ``log(1 - eta beta)``: slope / log(1 - eta beta) >= 1
  (about 2 if the gap is quadratic). MMD (MPO's fixed magnet) weights ``log pi_t`` by
  ``1/(1 + eta beta)``: the same check with that contraction.
* Linear vs polynomial. ``e_t = C rho^t`` has ``d log e / d log t = t log rho``, which falls below
  -2 once ``t > 2/|log rho|``; a polynomial ``t^-a`` has slope ``-a``, and the O(1/T) and O(1/T^2)
  rates of mirror-descent methods give ``a <= 2``: a last-decade slope <= -2 separates the two.
* Small beta. At the linear rate ``1 - eta beta`` (fixed eta), reaching ``eps`` proportional to
  beta from ``e_0`` takes ``T(beta) = log(e_0/eps)/(eta beta)``, so ``d log T / d log(1/beta) = 1 +
  1/log(e_0/eps)``, at most 1.5 once ``e_0/eps >= e^2``; a larger exponent is a slower polynomial.
  ``eps(beta) = 2 beta log(1/min pi_ref)`` bounds the exploitability of ``pi*_beta``: at
  ``pi*_beta``, ``(A pi*)(y) = beta log(pi*(y)/pi_ref(y)) - beta KL(pi*||pi_ref) <= beta
  log(1/pi_ref(y))`` and the exploitability is ``2 max_y (A pi*)(y)``.

Layout: settings, then one computation per stage (each through the engine, via
:func:`alignjax.dynamics.simulate`, inside ``ctx.stage``), then the claims, then the plots and
tables, then :func:`reproduce`. Stages: ``egpo-simulation``, ``theorem``, ``beta0``, ``mpo``,
``small-beta``, ``why-nlhf`` (then part B's ``sampled``, ``sampled-floor``, ``neural``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import claims as C
from alignjax import games, prefs
from alignjax.dynamics import simulate
from alignjax.registry import DYNAMICS, SUITES
from alignjax.results import SuiteContext, scale_name
from alignjax_experiments import _inpo_regime as INPO
from alignjax_experiments import _nash_sampled

NLHF = "Munos et al. 2023, NLHF (arXiv 2312.00886)"
EGPO = "Zhou et al. 2025, EGPO (arXiv 2503.08942)"
MPO = "Wang et al. 2024, MPO (arXiv 2410.16714)"
OMWU_THEORY = ("Daskalakis & Panageas 2019, ITCS (arXiv 1807.04252), Thm 1.1 (OMWU's last iterate converges "
               "for a unique equilibrium and a small constant step); Wei et al. 2021, ICLR (arXiv 2006.09517), "
               "Thm 3 (OMWU: linear last-iterate rate for a unique equilibrium, constant step eta <= 1/8 for "
               "payoffs in [-1, 1])")

# key -> (registered exact dynamic, display label, step rule): "config" = the config's eta = 4 lr/(N beta);
# "inpo" = eta beta = 1/3 (the ratio tau/eta of INPO's defaults as reimplemented by a third party)
EGPO_ALGOS = {"egpo": ("egpo", "EGPO", "config"), "omd": ("omd", "OMD (= online IPO 1 exact)", "config"),
              "nash-md": ("nash-md", "Nash-MD (constant step)", "config"), "omwu": ("omwu", "OMWU", "config"),
              "mpo": ("mpo", "MPO (magnet resets)", "config"), "sppo": ("mwu", "SPPO (= MWU, no reference)", "config"),
              "inpo": ("omd", "INPO exact, eta*beta = 1/3", "inpo")}
# beta = 0 runs: key -> (registered exact dynamic, average iterate?)
BETA0_RUNS = {"mwu-last": ("mwu", False), "mwu-average": ("mwu", True), "omwu-last": ("omwu", False),
              "egpo-last": ("egpo", False)}
BETA0_LABELS = {"mwu-last": "MWU last", "mwu-average": "MWU average", "omwu-last": "OMWU last",
                "egpo-last": "extragradient last"}
BETA0_FAMILIES = {"rps": "RPS", "random": "random"}  # game family -> display label
FIXED_MAGNET = 2 ** 30   # an MPO reset period longer than any run: the magnet stays pi_ref

# Thresholds, fixed before running (see papers/nash_games.md):
PLOT_CUT = 1e-6          # the authors' plots stop each curve at the first gap below 1e-6 (utils.py:76-170)
FLOOR = 1e-10            # float32 floor of the gap: points below are not used for rates
PLATEAU_FACTOR = 100.0   # Nash-MD's final gap > 100x EGPO's = "plateaus above EGPO"
THEOREM_ORDER = -1.0     # NLHF Thm 1: KL = O(1/T): slope of log KL vs log T over the last decade <= -1
SLOPE_TOL = 0.05         # ... up to this (fit noise)
CYCLE_FACTOR = 10.0      # MWU: last-iterate tail exploitability > 10x the average iterate's, per game
DECADE_FACTOR = 0.1      # "converges": exploitability at T <= 0.1 x at T/10 (or at the float floor) ...
EXPL_FLOOR = 1e-4        # float32 floor of the exploitability (converged runs sit between 4e-7 and 1.3e-5)
EXPL_SMALL = 1e-2        # ... and below 1e-2 at T
EXPL_LARGE = 0.1         # BT-RLHF's median exploitability on cyclic mixtures is "large"
WIN_TOL = 1e-6           # float tolerance on P(pi > pi_Nash) <= 1/2
FLIP_FRACTION = 0.1      # the BT fit "depends on the sampling distribution": its top response changes on >= 10% of games


# ---------------------------------------------------------------------------------------------
# The suite's claims, declared before any measurement (claims contract v3). Thresholds come from
# the papers' statements or from the derivations in this module's docstring ("Thresholds").
# v2's `nothing-beats-the-nash-policy` (P(pi > pi_Nash) <= 1/2: the definition of the LP's
# equilibrium) and `three-rater-bt-jumps-nash-continuous` (a closed form) are identities: they are
# unit tests now (tests/test_nash_suite.py), not claims. Part B's claims are declared at the top of
# experiments/_nash_sampled.py (SAMPLED_CLAIMS) and appended here.
# ---------------------------------------------------------------------------------------------
RATE_MULTIPLE = 1.0      # fitted per-step log-decay of the gap / log(1 - eta beta): >= 1 (docstring, Thresholds)
POLY_SLOPE = -2.0        # "linear" exploitability: log-log slope over the last decade above the floor <= -2
SMALL_BETA_EXPONENT = 1.5  # iterations to an eps(beta)-NE grow at most like beta^-1.5 (docstring, Thresholds)
TV_DEPENDS = 0.1         # the BT-RLHF policy moves by TV > 0.1 (median over games) when the sampling distribution changes
_LIN_ORIGIN = ("docs/thresholds.md#egpo-regularized-linear-rate: the regularised mirror step weights log pi_t by "
               "1 - eta beta and the gap is at most linear in the distance to pi*_beta, so fitted slope of log gap "
               "per step / log(1 - eta beta) >= 1")
_SETTING_EGPO = ("authors' exact tabular configs (beta, iterations, lr) = (0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, "
                 "100000, 2e-4) with their iteration counts in quick and full; N = 10, 10 (quick) or 30 (full) random "
                 "games (the bootstrap units), pi_0 = pi_ref = softmax(N(0,1)); exact step eta = 4 lr/(N beta) "
                 "(eta*beta = 4 lr/N = 0.04, 0.008, 8e-5); float32")
_SETTING_BETA0 = ("beta = 0 (original game); RPS and 10 (quick) or 30 (full) random games N = 10 (authors' construction), "
                  "pi_0 = softmax(N(0,1)); one step eta = 0.25 for every method (payoffs P - 1/2 in [-1/2, 1/2]: eta' = "
                  "0.125 for payoffs in [-1, 1], the largest step of Wei et al.'s condition); OMWU and extragradient "
                  "10^7 steps, MWU 10^6")
_SETTING_MPO = ("magnetic mirror descent log pi_(t+1) = lsm((log pi_t + eta beta log m + eta A pi_t)/(1 + eta beta)), "
                "beta = 0.1, eta = 0.1, magnet m = pi_ref = pi_0 = softmax(N(0,1)); RPS and 10 (quick) or 30 (full) "
                "random games N = 10; the paper's reset period could not be confirmed: K = 1000 is ours (sweep plotted)")
_SETTING_MIX = ("300 (quick) or 1000 (full) mixtures of 5 noiseless rankers (rewards ~ 2 N(0,1), shares ~ Dirichlet(1)), "
                "N = 8; the games without a Condorcet winner are the units; BT-RLHF = BT max-likelihood fit on all "
                "pairs, then pi_ref exp(r/beta), beta = 0.01, uniform pi_ref; Nash = LP")

PART_A = [
    C.ClaimSpec(
        id="egpo-regularized-linear-rate",
        statement=("EGPO's last iterate converges linearly to the KL-regularised Nash equilibrium pi*_beta, at a rate "
                   "at least that of the regularised mirror step's contraction 1 - eta beta: on every game and config, "
                   "the least-squares slope of log gap against t (points above the float32 floor 1e-10) is at least "
                   "log(1 - eta beta) per step"),
        source=f"{EGPO}, abstract and Table 1 (last-iterate linear convergence to the regularised equilibrium)",
        paper_value="linear convergence to the regularised NE (Table 1; the constant could not be verified)",
        setting=_SETTING_EGPO,
        check=C.Check("min over games and configs of (fitted slope of log gap per step) / log(1 - eta beta)", ">=",
                      RATE_MULTIPLE, _LIN_ORIGIN),
        control=("OMWU on the same regularised games (same configs and eta; stage egpo-simulation), same fitted "
                 "rate: another last-iterate method that could contract as fast. v3's first control, constant-step "
                 "Nash-MD, plateaus by construction (its fixed point is O(eta) from pi*_beta) and is the subject of "
                 "nash-md-constant-step-plateaus; its rate is reported"),
        history=(C.CheckChange(
            old=C.Check("games (of every config) whose gap leaves the envelope max(10 gap_0 (1 - eta beta)^t, 1e-10) "
                        "or ends above 1e-6", "<=", 0.0, "v2: C = 10 and the 1e-6 cut chosen after a failing run"),
            why=("issue 22: the envelope's C = 10 and the 1e-6 cut were set after a first check failed; v3 fits the "
                 "rate and compares it with 1 - eta beta, the rate the regularised step predicts"),
            commit="v2", easier=False),)),
    C.ClaimSpec(
        id="nash-md-constant-step-plateaus",
        statement=(f"With the constant step of the authors' simulations, Nash-MD plateaus above EGPO: its median final "
                   f"gap is more than {PLATEAU_FACTOR:g}x EGPO's at beta = 0.1 and 0.01"),
        source=(f"beyond the paper: {NLHF} Thm 1 needs the decreasing step eta_t = 2/(beta (t+2)); with a constant "
                f"eta the mixture-then-step map has a fixed point O(eta) away from pi*_beta. Compared as in the "
                f"simulations of {EGPO}, Table 1"),
        paper_value="constant-step Nash-MD is not covered by NLHF Thm 1; EGPO converges linearly",
        setting=_SETTING_EGPO,
        check=C.Check("min over beta in {0.1, 0.01} of median final gap (Nash-MD) / median final gap (EGPO)", ">",
                      PLATEAU_FACTOR, "docs/thresholds.md#nash-md-constant-step-plateaus: runs at the float32 floor differ "
                      "by at most a decade; 100 adds one decade of margin"),
        control="exact OMD (= online IPO 1 exact; its fixed point is pi*_beta) in Nash-MD's place, same ratio to EGPO"),
    C.ClaimSpec(
        id="nash-md-rate-order",
        statement=("Nash-MD with eta_t = 2/(beta (t+2)) converges to pi*_beta at rate O(1/T) in KL(pi*_beta || pi_T): "
                   f"the slope of log KL against log T over the last decade is <= {THEOREM_ORDER:g} (tolerance "
                   f"{SLOPE_TOL}) on every game and beta"),
        source=f"{NLHF}, Theorem 1 (Nash-MD: KL(pi*_beta || pi_T) <= 8/(beta^2 (T+1))) (place not verified)",
        paper_value="KL(pi*_beta || pi_T) <= 8/(beta^2 (T+1)), i.e. O(1/T)",
        setting=("16 (quick) or 32 (full) random games N = 10 (the units), pi_0 = pi_ref = softmax(N(0,1)), betas "
                 "1, 0.3, 0.1, T = 10^4, the theorem's schedule, float64; slope over T in [T/10, T]"),
        check=C.Check("max over games and betas of the log-log slope of KL(pi*_beta || pi_T) over the last decade",
                      "<=", THEOREM_ORDER + SLOPE_TOL, "docs/thresholds.md#nash-md-rate-order: NLHF Thm 1's O(1/T) is slope -1; "
                      "the tolerance 0.05 is a convention"),
        control="Nash-MD with the constant step eta = 0.1 (outside the theorem), same slope"),
    C.ClaimSpec(
        id="mwu-last-iterate-cycles-average-converges",
        statement=("With beta = 0, plain MWU (exact SPPO without a reference) does not converge in the last iterate "
                   "while its average does: on every game with a mixed equilibrium, the last iterate's mean "
                   f"exploitability over the last 10% of the run is more than {CYCLE_FACTOR:g}x the average iterate's"),
        source=(f"{MPO}, §1 (self-play methods such as SPPO guarantee only average-iterate convergence); "
                f"{OMWU_THEORY.split(';')[0]}"),
        paper_value="MWU converges on average, not in the last iterate",
        setting=_SETTING_BETA0,
        check=C.Check("min over games with a mixed equilibrium of (MWU last-iterate tail-mean exploitability) / "
                      "(MWU average iterate's final exploitability)", ">", CYCLE_FACTOR,
                      "docs/thresholds.md#mwu-last-iterate-cycles-average-converges: one decade, a convention (set in v2 "
                      "after v1's absolute check failed)"),
        control=("OMWU's last iterate at the smaller step eta = 0.1 (10^6 steps, its own run in stage beta0) in "
                 "place of MWU's, against MWU's average iterate: it passes if last iterates cycle whatever the "
                 "method. v3's first control, OMWU's 10^7-step run, is omwu-extragradient-last-iterate-beta0's subject"),
        history=(C.CheckChange(
            old=C.Check("min over games with a mixed equilibrium of min(last-iterate tail-mean exploitability - 0.1, "
                        "0.05 - average iterate's final exploitability)", ">", 0.0,
                        "v1: absolute levels (last iterate above 0.1, average below 0.05 on every game)"),
            why=("recorded 2026-12-07 (docs/thresholds.md found it missing): v2 replaced v1's absolute levels by the "
                 "ratio after v1 failed (one game's last iterate at 0.069 quick, 0.080 full); the old check's verdict "
                 "on this run is reported"),
            commit="316e1df", easier=True),)),
    C.ClaimSpec(
        id="omwu-extragradient-last-iterate-beta0",
        statement=("With beta = 0 and a constant step inside the theorems' condition, OMWU and extragradient converge "
                   "in the last iterate: on every game the exploitability at T is below 1e-2 and at most 1/10 of its "
                   "value at T/10 (or below the float32 floor 1e-4)"),
        source=OMWU_THEORY + f"; extragradient at beta = 0 is EGPO's update without regularisation ({EGPO}, §3)",
        paper_value="last-iterate convergence (OMWU: linear rate after a burn-in, instance-dependent constant)",
        setting=_SETTING_BETA0,
        check=C.Check("max over games and {OMWU, extragradient} of the convergence score max(e_T / 1e-2, "
                      "min((e_T / e_(T/10)) / 0.1, e_T / 1e-4))", "<=", 1.0,
                      "docs/thresholds.md#omwu-extragradient-last-iterate-beta0: a decade per decade of time is a rate at "
                      "least 1/T; 1e-4 is the float32 floor; 1e-2 is a convention"),
        control=("plain MWU's last iterate at the smaller step eta = 0.1 (10^6 steps, its own run in stage beta0), "
                 "same score: it passes if any multiplicative-weights last iterate converges at beta = 0. v3's first "
                 "control, MWU's last iterate at eta = 0.25, is mwu-last-iterate-cycles-average-converges' subject"),
        history=(C.CheckChange(
            old=C.Check("max over games and {OMWU, extragradient} of the final exploitability", "<", 1e-3,
                        "v1: converged = exploitability below 1e-3 (after 10^4 quick / 5x10^4 full steps)"),
            why=("recorded 2026-12-07 (docs/thresholds.md found it missing): v1 failed on random games (0.036 and "
                 "0.048); v2 ran 10^7 steps and set the decade criterion, whose level 1e-2 is 10x looser than v1's; "
                 "the old check's verdict on this run (10^7 steps) is reported"),
            commit="316e1df", easier=True),)),
    C.ClaimSpec(
        id="mpo-fixed-magnet-linear-rate",
        statement=("With the magnet fixed, MPO (magnetic mirror descent) converges linearly to the regularised "
                   "equilibrium of the magnet at least at the contraction 1/(1 + eta beta) of its step: fitted slope of "
                   "log gap per step (gap w.r.t. the magnet) / log(1/(1 + eta beta)) >= 1 on every game"),
        source=f"{MPO}, §3-4 (built on Magnetic Mirror Descent: linear last-iterate convergence to the magnet-"
               "regularised equilibrium) (place not verified)",
        paper_value="linear convergence to the magnet-regularised equilibrium",
        setting=_SETTING_MPO + "; the fit uses a 3,000-step run logged every 10 steps",
        check=C.Check("min over games of (fitted slope of log gap per step) / log(1/(1 + eta beta))", ">=",
                      RATE_MULTIPLE, "docs/thresholds.md#mpo-fixed-magnet-linear-rate: MMD's step weights log pi_t "
                      "by 1/(1 + eta beta) and the gap is at most linear in the distance to the magnet's equilibrium, "
                      "so fitted slope of log gap per step / log(1/(1 + eta beta)) >= 1"),
        control="MPO with the magnet reset every 100 steps (its target moves), same fitted rate of the gap w.r.t. pi_ref",
        history=(C.CheckChange(
            old=C.Check("games whose gap leaves the envelope max(10 gap_0 (1 + eta beta)^-t, 1e-10) or ends above 1e-6",
                        "<=", 0.0, "v2: egpo-regularized-linear-rate's envelope"),
            why="the envelope of egpo-regularized-linear-rate (C = 10, cut 1e-6, set after a failing run) is replaced "
                "by the fitted rate there; this claim used the same envelope",
            commit="v2", easier=False),)),
    C.ClaimSpec(
        id="mpo-magnet-updates-converge-original",
        statement=("With the magnet reset to the current policy every K steps, MPO's last iterate converges linearly "
                   "to the Nash equilibrium of the original game: on every game the log-log slope of exploitability "
                   f"over the last decade above the float floor is <= {POLY_SLOPE:g} (a linear rate's slope -t|log rho| "
                   "falls without bound; a polynomial rate's stays constant)"),
        source=f"{MPO}, abstract (last-iterate convergence to the NE of the original game; linear rate)",
        paper_value="last-iterate convergence to the original NE, linear rate (abstract)",
        setting=_SETTING_MPO + "; T = 10^7 logged every 10^4",
        check=C.Check("max over games of the log-log slope of exploitability over the last decade above 1e-3", "<=",
                      POLY_SLOPE, "docs/thresholds.md#mpo-magnet-updates-converge-original: C rho^t has log-log slope "
                      "-ln(C/e_t), below -2 past a factor e^2; the polynomial rates O(1/T) to O(1/T^2) stay >= -2"),
        control=("MPO with the magnet reset every 10 steps (the smallest K of the reset sweep, stage mpo: same "
                 "games, pi_0, beta and eta; its 10^6-step run logged every 10^3), same slope: a broken schedule whose "
                 "magnet follows the iterate, so the regularisation stops acting; it passes if MPO converges "
                 "linearly whatever K. v3's first control, the fixed magnet, could not pass (its limit pi*_beta "
                 "keeps a positive exploitability); OMWU's last iterate, tried next, is another claim's subject"),
        history=(C.CheckChange(
            old=C.Check("games where exploitability at T > 1/3 x at T/10 (and above 1e-4) or >= 1e-2", "<=", 0.0,
                        "v2: 1/3 per decade (a 1/T rate gives 0.1); floor raised 1e-5 -> 1e-4 after a failing run"),
            why="issue 22: the paper says linear; v2 checked convergence at any rate. v3 fits the rate's shape",
            commit="v2", easier=False),)),
    C.ClaimSpec(
        id="egpo-original-game-small-beta",
        statement=("EGPO converges to the Nash equilibrium of the original game at a polynomial rate by running on the "
                   "game regularised with a small beta: the iterations T(beta) to reach exploitability eps(beta) = 2 "
                   "beta log(1/min pi_ref) grow polynomially in 1/beta, with exponent at most "
                   f"{SMALL_BETA_EXPONENT:g} (fitted over beta in 0.1 .. 0.001)"),
        source=(f"{EGPO}, abstract and Table 1 (polynomial last-iterate convergence to the NE of the original game) "
                "(exponent not verified); the bound 1.5 on the exponent is beyond the paper: ours, derived from the "
                "regularised game's linear rate (docs/thresholds.md), so a failure can be the bound's"),
        paper_value="polynomial convergence to the original NE (iteration count polynomial in 1/eps)",
        setting=("10 (quick) or 30 (full) random games N = 10 (the units), pi_0 = pi_ref = softmax(N(0,1)), betas 0.1, "
                 "0.03, 0.01, 0.003, 0.001, eta = 0.1, T = 10^6 logged every 100"),
        check=C.Check("max over games of the exponent a in T(beta) ~ beta^-a (least squares of log T on log 1/beta)",
                      "<=", SMALL_BETA_EXPONENT,
                      "docs/thresholds.md#egpo-original-game-small-beta: at the linear rate 1 - eta beta, d log T / "
                      "d log(1/beta) = 1 + 1/log(e_0/eps) <= 1.5 once e_0/eps >= e^2 (the small-beta limit)"),
        control="exact OMD (online IPO 1 exact: the regularised step without extragradient) at the same betas and eta",
        history=(C.CheckChange(
            old=C.Check("max over games and betas of final exploitability / (2 beta log(1/min pi_ref))", "<=", 1.0,
                        "v2: the exploitability bound of pi*_beta (derived)"),
            why="issue 22: weaker than the paper (a bias bound after 10^6 steps, no rate); the paper states a "
                "polynomial rate: v3 measures iterations to the target as beta shrinks, and the exponent",
            commit="v2", easier=False),)),
    C.ClaimSpec(
        id="bt-rlhf-exploitable-on-mixtures",
        statement=("On annotator mixtures with transitive raters but no Condorcet winner, the BT-RLHF policy is "
                   f"exploitable: median exploitability > {EXPL_LARGE}"),
        source=(f"{NLHF}, §3 (a reward model cannot express non-transitive preferences; the Nash policy is preferred "
                "to any other) (place not verified)"),
        paper_value="the Nash policy is unexploitable; a reward-model policy is not",
        setting=_SETTING_MIX,
        check=C.Check("median over cyclic mixtures of the BT-RLHF policy's exploitability", ">", EXPL_LARGE,
                      "docs/thresholds.md#bt-rlhf-exploitable-on-mixtures: a tenth of the exploitability range [0, 1], "
                      "a convention"),
        control=("Nash-MD (eta_t = 2/(beta (t+2)), 10^4 steps, the same beta = 0.01 and uniform reference) on the same "
                 "cyclic mixtures, same median exploitability")),
    C.ClaimSpec(
        id="bt-rlhf-depends-on-sampling-distribution",
        statement=("The BT reward fit, and so the BT-RLHF policy, changes with the distribution the compared pairs are "
                   "sampled from when preferences are not transitive: the median over cyclic mixtures of TV(BT-RLHF "
                   f"under uniform pairs, under pairs weighted mu(y) mu(y')) exceeds {TV_DEPENDS}"),
        source=(f"{NLHF}, §3 (the reward model learnt from comparisons depends on the distribution of the compared "
                "responses; the Nash policy does not) (place not verified)"),
        paper_value="a BT reward model, and the policy optimising it, depend on the sampling distribution",
        setting=_SETTING_MIX + "; mu ~ Dirichlet(1) per game; weighted BT max-likelihood (Newton)",
        check=C.Check("median over cyclic mixtures of TV(BT-RLHF policy under uniform pairs, under mu-weighted pairs)",
                      ">", TV_DEPENDS, "docs/thresholds.md#bt-rlhf-depends-on-sampling-distribution: a tenth of the TV "
                      "range, a convention; near-deterministic policies make the verdict insensitive to it"),
        control=("the same pipeline on the same cyclic mixtures with a more concentrated sampling distribution, "
                 "mu ~ Dirichlet(0.3) instead of Dirichlet(1) (new BT fits), same median TV against the uniform-pair "
                 "policy"),
        history=(C.CheckChange(
            old=C.Check("fraction of cyclic mixtures whose BT argmax changes between the two sampling distributions",
                        ">=", FLIP_FRACTION, "v2: replaced the median TV after the smoke run found it 0"),
            why=("issue 22: the check was changed after a failing run; v3 restores the first draft (median TV > 0.1) "
                 "and reports v2's fraction in measured; v2's control (BT-consistent games, 0 by construction) is "
                 "replaced by the mixtures with a Condorcet winner, and that one (which could not pass either and "
                 "was the exploitability claim's control too) by the same pipeline with mu ~ Dirichlet(0.3)"),
            commit="v2", easier=False),)),
]

PART_A.append(INPO.SPEC)  # inpo-last-iterate-paper-regime (Zhang et al. 2024): experiments/_inpo_regime.py

CLAIMS = C.declared(PART_A + list(_nash_sampled.SAMPLED_CLAIMS))


# ------------------------------------------------------------------------------------ settings
def mpo_reset_every() -> int:
    """MPO's magnet reset period, the registered entry's static default."""
    return int(DYNAMICS.entry("mpo").static["reset_every"])


def _settings(scale) -> dict:
    """Part A's settings for ``scale`` (see :class:`~alignjax.results.SuiteContext`).

    Quick and full run the same budgets (the authors' iteration counts; 10^6 steps where a
    rate is instance dependent); full draws three times as many games. Smoke (tests only) cuts
    every budget to a few hundred steps: every stage, plot and claim runs, the rates do not.
    """
    scale = scale_name(scale)
    quick = scale != "full"
    s = dict(
        num_responses=10, num_games=10 if quick else 30, seed=0,
        configs=[(0.1, 1000, 0.1), (0.01, 5000, 0.02), (0.001, 100000, 2e-4)], log_every=20,
        theorem_games=16 if quick else 32, theorem_betas=[1.0, 0.3, 0.1], theorem_steps=10000,
        theorem_log_every=10, theorem_const_eta=0.1,
        beta0_games=10 if quick else 30, beta0_steps=1_000_000, beta0_log_every=1000, beta0_eta=0.25, beta0_eta_small=0.1,
        long_steps=10_000_000, long_log_every=10_000,
        mpo_beta=0.1, mpo_eta=0.1, mpo_reset_every=1000, mpo_reset_sweep=[10, 100, 1000, 10000],
        small_betas=[0.1, 0.03, 0.01, 0.003, 0.001], small_eta=0.1, small_steps=1_000_000, small_log_every=100,
        mpo_short_steps=3000, mpo_short_log_every=10, mpo_short_reset=100,
        mixture_games=300 if quick else 1000, mixture_responses=8, mixture_raters=5, bt_beta=0.01, control_mu_concentration=0.3,
        control_nash_md_steps=10_000,
        random_policies=1000,
        three_rater_e=np.round(np.linspace(-0.3, 0.3, 61), 4).tolist(), three_rater_delta=0.01,
        inpo_steps=1_000_000, inpo_log_every=10_000,
    )
    if scale == "smoke":
        s.update(num_games=3, configs=[(0.1, 200, 0.1), (0.01, 400, 0.02), (0.001, 400, 2e-4)],
                 theorem_games=4, beta0_games=3, beta0_steps=2000, beta0_log_every=20, long_steps=20000, long_log_every=200,
                 mpo_reset_sweep=[10, 100], mpo_reset_every=100, small_steps=2000, small_log_every=20,
                 small_betas=[0.1, 0.03, 0.01],
                 mixture_games=100, random_policies=50,
                 three_rater_e=np.round(np.linspace(-0.3, 0.3, 13), 4).tolist(), three_rater_delta=0.05,
                 inpo_steps=2000, inpo_log_every=20)
    return s


def egpo_games(key, num_games, n):
    """``P (G, N, N)`` and ``pi_ref (G, N)`` as in the authors' simulation (same construction as
    ``experiments/_nash_sampled.py``: random_game per split key; ``softmax(N(0, 1))`` reference)."""
    kp, kr = jax.random.split(key)
    P = jax.vmap(lambda k: prefs.random_game(k, n))(jax.random.split(kp, num_games))
    return P, jax.nn.softmax(jax.random.normal(kr, (num_games, n)), axis=-1)


def _beta0_games(s: dict) -> dict:
    """``{family: (P (G, N, N), pi0 (G, N))}``: RPS and the random games of the beta = 0 and MPO runs."""
    Pr, _ = egpo_games(jax.random.key(s["seed"] + 2), s["beta0_games"], s["num_responses"])
    out = {}
    for fam, Pg in {"rps": prefs.rock_paper_scissors()[None], "random": Pr}.items():
        out[fam] = (Pg, jax.nn.softmax(jax.random.normal(jax.random.key(s["seed"] + 3), (Pg.shape[0], Pg.shape[-1])),
                                       axis=-1))
    return out


# -------------------------------------------------------------------------------- computations
def egpo_simulation(s: dict) -> dict:
    """Stage ``egpo-simulation``: regularised gaps ``{algo: (C, G, L)}`` at ``steps`` (every
    ``log_every`` up to the longest budget; each config is read up to its own) and the etas."""
    n, G = s["num_responses"], s["num_games"]
    P, ref = egpo_games(jax.random.key(s["seed"]), G, n)
    betas = np.array([c[0] for c in s["configs"]])
    etas = np.array([4 * c[2] / (n * c[0]) for c in s["configs"]])
    T = max(c[1] for c in s["configs"])
    gaps = {}
    for key, (name, _, rule) in EGPO_ALGOS.items():
        eta = etas if rule == "config" else 1.0 / (3.0 * betas)
        pis = simulate(name, P[None], ref[None], beta=jnp.asarray(betas)[:, None], eta=jnp.asarray(eta)[:, None],
                       num_steps=T, log_every=s["log_every"])  # (C, G, L, N): one program
        gaps[key] = np.asarray(games.regularized_gap(P[None, :, None], pis, ref[None, :, None],
                                                     jnp.asarray(betas, jnp.float32)[:, None, None]), np.float64)
    return {"gaps": gaps, "steps": np.arange(T // s["log_every"] + 1) * s["log_every"], "etas": etas}


def theorem(s: dict) -> dict:
    """Stage ``theorem``: ``KL(pi*_beta || pi_T)`` ``(B, G, L)`` of Nash-MD with eta_t = 2/(beta (t+2))
    and, as the control, with the constant step ``theorem_const_eta``; in float64 (the KL falls
    below float32's resolution within a few hundred steps)."""
    n, G = s["num_responses"], s["theorem_games"]
    P, ref = egpo_games(jax.random.key(s["seed"] + 1), G, n)
    with jax.enable_x64():
        P64 = np.asarray(P, np.float64)[None]
        ref64 = np.asarray(ref, np.float64)
        ref64 = (ref64 / ref64.sum(-1, keepdims=True))[None]
        betas = np.asarray(s["theorem_betas"], np.float64)[:, None]
        star = games.regularized_nash(P64, ref64, betas)
        kl = {}
        for key, name, eta in (("schedule", "nash-md-schedule", None), ("constant", "nash-md", s["theorem_const_eta"])):
            kw = {} if eta is None else {"eta": np.float64(eta)}
            pis = simulate(name, P64, ref64, beta=betas, num_steps=s["theorem_steps"], log_every=s["theorem_log_every"],
                           **kw)
            kl[key] = np.asarray(games.kl(star.pi[:, :, None], pis), np.float64)
        resid = np.asarray(star.residual, np.float64)
    return {"kl": kl, "steps": np.arange(s["theorem_steps"] // s["theorem_log_every"] + 1) * s["theorem_log_every"],
            "equilibrium_residual": resid}


def _run_steps(s: dict, run: str) -> tuple[int, int]:
    """``(num_steps, log_every)`` of a beta = 0 run: the last-iterate methods run ``long_steps``
    (instance-dependent burn-in: a game whose equilibrium has a support action of probability
    ~1e-3 needs ~10^7 steps), MWU ``beta0_steps``."""
    if run in ("omwu-last", "egpo-last"):
        return s["long_steps"], s["long_log_every"]
    return s["beta0_steps"], s["beta0_log_every"]


def beta0(s: dict) -> dict:
    """Stage ``beta0``: exploitability ``{family: {run: (G, L)}}`` of the beta = 0 runs (one step
    size for all; logged at ``steps``, or ``steps_long`` for OMWU and extragradient) and the
    equilibrium support sizes of every game."""
    T, le = s["beta0_steps"], s["beta0_log_every"]
    expl, support = {}, {}
    for fam, (Pg, pi0) in _beta0_games(s).items():
        expl[fam] = {}
        for run, (name, average) in BETA0_RUNS.items():
            Tr, ler = _run_steps(s, run)
            pis = simulate(name, Pg, pi0, beta=0.0, eta=s["beta0_eta"], num_steps=Tr, log_every=ler, average=average)
            expl[fam][run] = np.asarray(games.exploitability(Pg[:, None], pis), np.float64)  # (G, L)
        for run in ("omwu-last", "egpo-last", "mwu-last"):  # the same at a smaller step (reported; MWU's: a control)
            name = BETA0_RUNS[run][0]
            pis = simulate(name, Pg, pi0, beta=0.0, eta=s["beta0_eta_small"], num_steps=T, log_every=le)
            expl[fam][run + "-small-eta"] = np.asarray(games.exploitability(Pg[:, None], pis), np.float64)
        support[fam] = np.array([int((games.nash(Pg[i]) > 1e-6).sum()) for i in range(Pg.shape[0])])
    return {"exploitability": expl, "steps": np.arange(T // le + 1) * le, "equilibrium_support": support,
            "steps_long": np.arange(s["long_steps"] // s["long_log_every"] + 1) * s["long_log_every"]}


def mpo_stage(s: dict) -> dict:
    """Stage ``mpo``: MPO (magnetic mirror descent) with the magnet fixed at ``pi_ref = pi_0`` and
    with the magnet reset every ``K`` steps (``K`` in ``mpo_reset_sweep``): exploitability of the
    original game ``{family: {K: (G, L)}}`` and the regularised gap w.r.t. ``pi_ref``; the fixed
    magnet and the claim's ``K`` run ``long_steps`` (logged at ``steps_long``), the sweep ``beta0_steps``."""
    T, le, beta = s["beta0_steps"], s["beta0_log_every"], s["mpo_beta"]
    expl, gap, short = {}, {}, {}
    Ks = [FIXED_MAGNET] + sorted(set(s["mpo_reset_sweep"]) | {s["mpo_reset_every"]})
    for fam, (Pg, pi0) in _beta0_games(s).items():
        expl[fam], gap[fam], short[fam] = {}, {}, {}
        for K in Ks:
            long = K in (FIXED_MAGNET, s["mpo_reset_every"])  # the claims' runs: 10^7 steps (see _run_steps)
            pis = simulate("mpo", Pg, pi0, beta=beta, eta=s["mpo_eta"], static={"reset_every": K},
                           num_steps=s["long_steps"] if long else T, log_every=s["long_log_every"] if long else le)
            expl[fam][str(K)] = np.asarray(games.exploitability(Pg[:, None], pis), np.float64)
            gap[fam][str(K)] = np.asarray(games.regularized_gap(Pg[:, None], pis, pi0[:, None], beta), np.float64)
        # the fitted-rate check of the fixed magnet needs a fine log: a short run, fixed and with frequent resets
        for K in (FIXED_MAGNET, s["mpo_short_reset"]):
            pis = simulate("mpo", Pg, pi0, beta=beta, eta=s["mpo_eta"], static={"reset_every": K},
                           num_steps=s["mpo_short_steps"], log_every=s["mpo_short_log_every"])
            short[fam][str(K)] = np.asarray(games.regularized_gap(Pg[:, None], pis, pi0[:, None], beta), np.float64)
    return {"exploitability": expl, "gap": gap, "steps": np.arange(T // le + 1) * le,
            "short": {"gap": short, "steps": np.arange(s["mpo_short_steps"] // s["mpo_short_log_every"] + 1)
                      * s["mpo_short_log_every"]},
            "steps_long": np.arange(s["long_steps"] // s["long_log_every"] + 1) * s["long_log_every"]}


def small_beta(s: dict) -> dict:
    """Stage ``small-beta``: last-iterate exploitability of the ORIGINAL game ``(B, G, L)`` of EGPO and
    (the control) exact OMD for each beta of ``small_betas`` (step ``small_eta``), and
    ``log(1 / min_y pi_ref(y))`` per game."""
    n = s["num_responses"]
    P, ref = egpo_games(jax.random.key(s["seed"] + 5), s["beta0_games"], n)
    betas = jnp.asarray(s["small_betas"])[:, None]
    run = lambda name: np.asarray(games.exploitability(P[None, :, None], simulate(
        name, P[None], ref[None], beta=betas, eta=s["small_eta"], num_steps=s["small_steps"],
        log_every=s["small_log_every"])), np.float64)
    return {"exploitability": run("egpo"), "exploitability_omd": run("omd"),
            "ref_exploitability": np.asarray(games.exploitability(P, ref), np.float64),
            "log_inv_ref_min": np.asarray(-jnp.log(ref.min(-1)), np.float64),
            "steps": np.arange(s["small_steps"] // s["small_log_every"] + 1) * s["small_log_every"]}


def _weighted_bt(P, W, num_steps: int = 60):
    """Bradley–Terry rewards fitted to comparisons sampled with pair weights ``W[y, y'] = mu(y) mu(y')``:
    ``argmax_r sum_{y, y'} W[y, y'] P[y, y'] log sigmoid(r_y - r_y')`` (Newton, centred, tiny ridge);
    ``grad_k = sum_y' W[k, y'] (P[k, y'] - sigmoid(r_k - r_y'))``."""
    n = P.shape[-1]
    eye, gauge = jnp.eye(n), jnp.ones((n, n)) / n

    def one(Pi, Wi):
        def step(r, _):
            sg = jax.nn.sigmoid(r[:, None] - r[None, :])
            g = jnp.sum(Wi * (Pi - sg), -1) - 1e-8 * r
            w = Wi * sg * (1 - sg)
            H = jnp.diag(w.sum(-1)) - w + 1e-8 * eye + gauge * jnp.mean(Wi)
            dr = jnp.linalg.solve(H, g)
            r = r + dr / jnp.maximum(1.0, jnp.max(jnp.abs(dr)))
            return r - r.mean(), None

        return jax.lax.scan(step, jnp.zeros(n), None, length=num_steps)[0]

    return jax.vmap(one)(P, W)


def why_nlhf(s: dict) -> dict:
    """Stage ``why-nlhf``: BT-RLHF vs Nash policies on cyclic annotator mixtures (exploitabilities,
    win rates of BT-RLHF, pure and random policies against the Nash policy), the BT-RLHF policy
    under two sampling distributions of the comparisons (and on BT-consistent games, the control),
    and the three-rater example."""
    G, n, K = s["mixture_games"], s["mixture_responses"], s["mixture_raters"]
    kr, kw, kp, km, kt = jax.random.split(jax.random.key(s["seed"] + 4), 5)
    rewards = jax.random.normal(kr, (G, K, n)) * 2.0
    weights = jax.random.dirichlet(kw, jnp.ones(K), (G,))
    P = prefs.annotator_mixture(rewards, weights, temperature=None)  # hard (noiseless) transitive raters
    Pn = np.asarray(P, np.float64)
    cyclic = np.array([not np.any(np.all((Pn[i] > 0.5) | np.eye(n, dtype=bool), axis=1)) for i in range(G)])
    P = P[cyclic]
    Gc = P.shape[0]
    beta = s["bt_beta"]
    uniform = jnp.full((Gc, n), 1.0 / n)
    bt = simulate("bt-rlhf", P, uniform, beta=beta, eta=1.0, num_steps=1)[:, -1]
    nash_pi = jnp.asarray(games.nash(P), jnp.float32)
    rand_pi = jax.random.dirichlet(kp, jnp.ones(n), (s["random_policies"],))  # (R, N)
    win_rand = games.win_rate(P[:, None], rand_pi[None], nash_pi[:, None])  # (Gc, R)
    win_pure = games.win_rate(P[:, None], jnp.eye(n)[None], nash_pi[:, None])  # (Gc, N)
    win_vs_bt = games.win_rate(P[:, None], jnp.eye(n)[None], bt[:, None])  # pure challengers vs BT-RLHF

    # sampling distributions of the comparisons: uniform vs a random mu ~ Dirichlet(1) per game
    mu = jax.random.dirichlet(km, jnp.ones(n), (Gc,))
    W_uni = jnp.ones((Gc, n, n)) / n ** 2
    W_mu = mu[:, :, None] * mu[:, None, :]

    @jax.jit  # one compile per shape (eagerly, every op of the fit compiles on its own)
    def bt_policy(Pm, W):
        r = _weighted_bt(Pm, W)
        return jax.nn.softmax((r - r.max(-1, keepdims=True)) / beta, -1)

    tv = lambda a, b: 0.5 * np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).sum(-1)
    pu, pm = bt_policy(P, W_uni), bt_policy(P, W_mu)
    tv_bt = tv(pu, pm)
    # the sampling-distribution claim's control: the same pipeline (new fits) with a more concentrated mu
    mu_conc = jax.random.dirichlet(jax.random.fold_in(km, 2), jnp.full(n, s["control_mu_concentration"]), (Gc,))
    tv_bt_concentrated = tv(pu, bt_policy(P, mu_conc[:, :, None] * mu_conc[:, None, :]))
    # the exploitability claim's control: Nash-MD (eta_t = 2/(beta (t+2))) on the same cyclic mixtures
    T_md = s["control_nash_md_steps"]
    nash_md = simulate("nash-md-schedule", P, uniform, beta=beta, num_steps=T_md, log_every=T_md)[:, -1]
    flip = np.asarray(jnp.argmax(pu, -1) != jnp.argmax(pm, -1))
    # control: BT-consistent games (one soft BT rater), where the fit recovers the rewards under any mu
    r_true = jax.random.normal(kt, (Gc, n)) * 2.0
    P_bt = jax.nn.sigmoid(r_true[:, :, None] - r_true[:, None, :])
    pu_t, pm_t = bt_policy(P_bt, W_uni), bt_policy(P_bt, W_mu)
    tv_bt_transitive = tv(pu_t, pm_t)
    flip_t = np.asarray(jnp.argmax(pu_t, -1) != jnp.argmax(pm_t, -1))
    bt_t = simulate("bt-rlhf", P_bt, uniform, beta=beta, eta=1.0, num_steps=1)[:, -1]
    # the mixtures WITH a Condorcet winner through the same sampling-distribution pipeline (a control)
    Pc = prefs.annotator_mixture(rewards, weights, temperature=None)[~cyclic]
    mu_c = jax.random.dirichlet(jax.random.fold_in(km, 1), jnp.ones(n), (Pc.shape[0],))
    tv_condorcet = tv(bt_policy(Pc, jnp.ones((Pc.shape[0], n, n)) / n ** 2),
                      bt_policy(Pc, mu_c[:, :, None] * mu_c[:, None, :]))
    bt_c = simulate("bt-rlhf", Pc, jnp.full((Pc.shape[0], n), 1.0 / n), beta=beta, eta=1.0, num_steps=1)[:, -1]

    es = np.asarray(s["three_rater_e"], np.float64)
    P3 = prefs.three_rater_cycle(jnp.asarray(es, jnp.float32))
    bt3 = simulate("bt-rlhf", P3, jnp.full((len(es), 3), 1 / 3), beta=beta, eta=1.0, num_steps=1)[:, -1]
    return {
        "mixtures": {"cyclic": cyclic,
                     "exploitability_bt": np.asarray(games.exploitability(P, bt), np.float64),
                     "exploitability_nash": np.asarray(games.exploitability(P, nash_pi), np.float64),
                     "win_rate_bt_vs_nash": np.asarray(games.win_rate(P, bt, nash_pi), np.float64),
                     "max_win_rate_pure_vs_nash": np.asarray(win_pure.max(-1), np.float64),
                     "max_win_rate_random_vs_nash": np.asarray(win_rand.max(-1), np.float64),
                     "max_win_rate_pure_vs_bt": np.asarray(win_vs_bt.max(-1), np.float64),
                     "tv_bt_uniform_vs_mu": tv_bt, "tv_bt_transitive_uniform_vs_mu": tv_bt_transitive,
                     "argmax_changes": flip, "argmax_changes_transitive": flip_t,
                     "exploitability_bt_transitive": np.asarray(games.exploitability(P_bt, bt_t), np.float64),
                     "exploitability_bt_condorcet": np.asarray(games.exploitability(Pc, bt_c), np.float64),
                     "tv_bt_condorcet_uniform_vs_mu": tv_condorcet, "tv_bt_concentrated_mu": tv_bt_concentrated,
                     "exploitability_nash_md": np.asarray(games.exploitability(P, nash_md), np.float64)},
        "three_rater": {"e": es, "bt_reward": np.asarray(prefs.fit_bradley_terry(P3), np.float64),
                        "bt_pi": np.asarray(bt3, np.float64), "nash_pi": np.asarray(games.nash(P3), np.float64)},
    }


# -------------------------------------------------------------------------------------- claims
def _spec(claim_id: str) -> C.ClaimSpec:
    """The declared claim ``claim_id`` (see CLAIMS)."""
    return C.by_id(CLAIMS, claim_id)


def fitted_log_rate(steps: np.ndarray, g: np.ndarray, floor: float = FLOOR) -> float:
    """Least-squares slope of ``log g_t`` against ``t`` over the logged points with ``g_t > floor``
    (per step; a linear rate ``g_t = C rho^t`` gives ``log rho``). Fewer than three such points (the
    curve fell to the floor between logs) give the slope through the first point and the first point
    below the floor, an upper bound on the decay's slope... and nan when the curve never leaves ``g_0``."""
    keep = np.isfinite(g) & (g > floor)
    if keep.sum() >= 3:
        return float(np.polyfit(steps[keep], np.log(g[keep]), 1)[0])
    below = np.flatnonzero(~keep)
    if below.size == 0 or below[0] == 0:
        return float("nan")
    return float((np.log(floor) - np.log(g[0])) / (steps[below[0]] - steps[0]))


def rate_multiples(steps: np.ndarray, g: np.ndarray, contraction: float) -> np.ndarray:
    """Per curve of ``g (G, L)``: fitted log-rate / ``log(contraction)`` (>= 1: at least that fast)."""
    return np.array([fitted_log_rate(steps, row) / np.log(contraction) for row in g])


def _egpo_curves(s: dict, r: dict, algo: str, c: int):
    """``(steps, gaps (G, L))`` of ``algo`` at config ``c`` up to the config's own budget."""
    keep = r["steps"] <= s["configs"][c][1]
    return r["steps"][keep], r["gaps"][algo][c][:, keep]


def _rate_table(s: dict, r: dict, algo: str) -> np.ndarray:
    """``(G, C)``: rate multiples of ``algo`` per game and config (contraction 1 - eta beta)."""
    cols = []
    for c, (beta, _, _) in enumerate(s["configs"]):
        steps, g = _egpo_curves(s, r, algo, c)
        cols.append(rate_multiples(steps, g, 1.0 - r["etas"][c] * beta))
    return np.stack(cols, 1)


def _nanmin(x: np.ndarray) -> float:
    """Minimum over all entries, a nan counting as 0 (no decay measured)."""
    return float(np.min(np.nan_to_num(x, nan=0.0)))


def egpo_claims(s: dict, r: dict) -> list[dict]:
    """The EGPO simulation (exact): EGPO's fitted linear rate; constant-step Nash-MD's plateau."""
    cfgs = s["configs"]
    rate_e, rate_n, rate_o = _rate_table(s, r, "egpo"), _rate_table(s, r, "nash-md"), _rate_table(s, r, "omwu")
    by_beta = lambda x: {str(b): {"min": _nanmin(x[:, c]), "median": float(np.nanmedian(x[:, c]))}
                         for c, (b, _, _) in enumerate(cfgs)}
    out = [C.evaluate(_spec("egpo-regularized-linear-rate"), C.every_unit(rate_e, _nanmin), C.every_unit(rate_o, _nanmin),
                      measured={"egpo_rate_multiple_by_beta": by_beta(rate_e), "omwu_rate_multiple_by_beta": by_beta(rate_o),
                                "nash_md_rate_multiple_by_beta": by_beta(rate_n), "etas": r["etas"]},
                      note=("rate multiple = (least-squares slope of log gap per step over the logged points above "
                            f"{FLOOR:g}) / log(1 - eta beta); a multiple near 2 is the squared contraction a gap "
                            "quadratic in the distance would show. Gap in float32 (Jensen gap, floor ~1e-12)."))]
    final = lambda a, c: _egpo_curves(s, r, a, c)[1][:, -1]
    c01 = [c for c, (b, _, _) in enumerate(cfgs) if b >= 0.01]
    table = lambda a: np.stack([np.stack([final(a, c), final("egpo", c)], -1) for c in c01], 1)  # (G, C', 2)
    stat = lambda x: float(min(np.median(x[:, c, 0]) / max(np.median(x[:, c, 1]), 1e-30) for c in range(x.shape[1])))
    out.append(C.evaluate(
        _spec("nash-md-constant-step-plateaus"), C.measure(table("nash-md"), stat), C.measure(table("omd"), stat),
        measured={"nash_md_median_final_gap_by_beta": {str(b): float(np.median(final("nash-md", c)))
                                                       for c, (b, _, _) in enumerate(cfgs)},
                  "egpo_median_final_gap_by_beta": {str(b): float(np.median(final("egpo", c)))
                                                    for c, (b, _, _) in enumerate(cfgs)}},
        note="beta = 0.001 reported, not checked (eta*beta = 8e-5: Nash-MD's bias and its distance to pi*_beta are "
             "both still shrinking at the authors' 100,000 steps)."))
    return out


def _slopes(kl: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Least-squares slope of log KL vs log T over the last decade of the run, ``(B, G)``."""
    keep = steps >= steps[-1] / 10
    x = np.log(steps[keep])
    y = np.log(np.maximum(kl[..., keep], 1e-300))
    xc = x - x.mean()
    return ((y - y.mean(-1, keepdims=True)) * xc).sum(-1) / (xc ** 2).sum()


def theorem_claims(s: dict, r: dict) -> list[dict]:
    """Nash-MD's theorem, KL(pi*_beta || pi_T) <= 8 / (beta^2 (T + 1)): the order of the rate (units: games)."""
    steps = r["steps"]
    sl, sl_c = _slopes(r["kl"]["schedule"], steps).T, _slopes(r["kl"]["constant"], steps).T  # (G, B)
    betas = np.asarray(s["theorem_betas"], np.float64)[:, None, None]
    ratio = r["kl"]["schedule"][..., 1:] / (8.0 / (betas ** 2 * (steps[1:] + 1)))
    mx = lambda x: float(np.max(x))
    return [C.evaluate(
        _spec("nash-md-rate-order"), C.every_unit(sl, mx), C.every_unit(sl_c, mx),
        measured={"median_slope_by_beta": {str(b): float(np.median(sl[:, i])) for i, b in enumerate(s["theorem_betas"])},
                  "worst_ratio_kl_over_bound": float(ratio.max()),
                  "equilibrium_max_residual": float(np.max(r["equilibrium_residual"]))},
        note="float64 (the KL falls below float32's resolution within a few hundred steps). The measured order is "
             "1/T^2, one order faster than the bound, which is met with room to spare (worst ratio reported).")]


def _decade(e: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per game: exploitability at T over at T/10 (``(G,)``)."""
    i10 = int(np.argmin(np.abs(steps - steps[-1] / 10)))
    return e[:, -1] / np.maximum(e[:, i10], 1e-30)


def convergence_score(e: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per game: ``max(e_T / EXPL_SMALL, min(decade / DECADE_FACTOR, e_T / EXPL_FLOOR))``; <= 1 iff the
    run ends below EXPL_SMALL and still falls a decade per decade of steps (or sits at the float floor)."""
    eT = e[:, -1]
    return np.maximum(eT / EXPL_SMALL, np.minimum(_decade(e, steps) / DECADE_FACTOR, eT / EXPL_FLOOR))


def _cycle_ratio(last, avg, steps, support) -> np.ndarray:
    """Per game with a mixed equilibrium: last-iterate mean exploitability over the last 10% of the run
    / the average iterate's final exploitability."""
    tail = steps >= 0.9 * steps[-1]
    return (last[:, tail].mean(-1) / np.maximum(avg[:, -1], 1e-30))[support > 1]


def beta0_claims(s: dict, r: dict) -> list[dict]:
    """beta = 0, one step size: MWU's last iterate vs its average; OMWU and extragradient last iterates."""
    expl, steps, sup = r["exploitability"], r["steps"], r["equilibrium_support"]
    st = lambda run: r["steps_long"] if run in ("omwu-last", "egpo-last") else steps
    fams = list(BETA0_FAMILIES)
    cyc = np.concatenate([_cycle_ratio(expl[f]["mwu-last"], expl[f]["mwu-average"], steps, sup[f]) for f in fams])
    # the control: OMWU's last iterate at eta = 0.1 (its own 10^6-step run in stage beta0, MWU's log), its last 10%
    cyc_ctl = np.concatenate([_cycle_ratio(expl[f]["omwu-last-small-eta"], expl[f]["mwu-average"], steps, sup[f])
                              for f in fams])
    score = lambda run: np.concatenate([convergence_score(expl[f][run], st(run)) for f in fams])
    both = np.maximum(score("omwu-last"), score("egpo-last"))
    mn, mx = (lambda x: float(np.min(x))), (lambda x: float(np.max(x)))
    tail = steps >= 0.9 * steps[-1]
    v1_cyc = np.concatenate([np.minimum(expl[f]["mwu-last"][:, tail].mean(-1) - 0.1, 0.05 - expl[f]["mwu-average"][:, -1])
                             [sup[f] > 1] for f in fams])
    v1_final = max(float(expl[f][k][:, -1].max()) for f in fams for k in ("omwu-last", "egpo-last"))
    out = [
        C.evaluate(_spec("mwu-last-iterate-cycles-average-converges"), C.every_unit(cyc, mn), C.every_unit(cyc_ctl, mn),
                   measured={"equilibrium_support_sizes": {f: sup[f].tolist() for f in fams}},
                   note="a tail window (last 10% of the logged run); per game relative to the same run's average "
                        "iterate (cycling is instance dependent). The control's tail is the last 10% of OMWU's own "
                        "10^6-step run at eta = 0.1 (stage beta0, logged as MWU's)."),
        C.evaluate(_spec("omwu-extragradient-last-iterate-beta0"), C.every_unit(both, mx),
                   C.every_unit(np.concatenate([convergence_score(expl[f]["mwu-last-small-eta"], steps) for f in fams]), mx),
                   measured={"max_final_exploitability": {BETA0_LABELS[k]: float(max(expl[f][k][:, -1].max() for f in fams))
                                                          for k in ("omwu-last", "egpo-last")},
                             f"max_score_at_eta_{s['beta0_eta_small']}_10^6_steps": {
                                 k: float(np.concatenate([convergence_score(expl[f][k + "-small-eta"], steps)
                                                          for f in fams]).max()) for k in ("omwu-last", "egpo-last")}},
                   note="rates are instance dependent (games with a small-probability support action take longest), "
                        "hence 10^7 steps. History: at eta = 0.1 and 10^6 steps some games were still in their burn-in "
                        "(reported)."),
    ]
    C.judge_old_check(out[0], C.exact(np.min(v1_cyc)))
    C.judge_old_check(out[1], C.exact(v1_final))
    return out




def decade_slope(e: np.ndarray, steps: np.ndarray, floor: float) -> float:
    """Log-log slope of ``e_t`` over the last decade ``[t2/10, t2]`` before it falls to ``floor``
    (``t2`` = last logged step with ``e_t > floor``); a curve at the floor by its second log point
    has fallen faster than any polynomial: -50 (a sentinel, reported as such)."""
    above = np.flatnonzero((e > floor) & (steps > 0))
    if above.size == 0:
        return -50.0
    t2 = steps[above[-1]]
    keep = (steps >= t2 / 10) & (steps <= t2) & (steps > 0) & (e > floor)
    if keep.sum() < 2:
        return -50.0
    return float(np.polyfit(np.log(steps[keep]), np.log(e[keep]), 1)[0])


def mpo_claims(s: dict, r: dict, b0: dict) -> list[dict]:
    """MPO's two stages: fixed magnet -> pi*_beta linearly; magnet updates -> original equilibrium, linearly
    (the second's control: MPO with the magnet reset every 10 steps, the reset sweep's smallest K; OMWU's last
    iterate from stage ``beta0``, ``b0``, is reported beside it)."""
    expl, steps = r["exploitability"], r["steps_long"]
    expl_short = r["exploitability"]  # the reset sweep's other K run beta0_steps, logged at r["steps"]
    fams = list(BETA0_FAMILIES)
    K, fixed = str(s["mpo_reset_every"]), str(FIXED_MAGNET)
    b = s["mpo_eta"] * s["mpo_beta"]
    sh = r["short"]
    rate = lambda key: np.concatenate([rate_multiples(sh["steps"], sh["gap"][f][key], 1.0 / (1.0 + b)) for f in fams])
    slope = lambda key: np.array([decade_slope(row, steps, 10 * EXPL_FLOOR) for f in fams for row in expl[f][key]])
    mx = lambda x: float(np.max(x))
    sl_k, sl_fixed = slope(K), slope(fixed)
    k_ctl = str(min(s["mpo_reset_sweep"]))
    sl_ctl = np.array([decade_slope(row, r["steps"], 10 * EXPL_FLOOR) for f in fams for row in expl_short[f][k_ctl]])
    sl_omwu = np.array([decade_slope(row, b0["steps_long"], 10 * EXPL_FLOOR) for f in fams
                        for row in b0["exploitability"][f]["omwu-last"]])
    return [
        C.evaluate(_spec("mpo-fixed-magnet-linear-rate"), C.every_unit(rate(fixed), _nanmin),
                   C.every_unit(rate(str(s["mpo_short_reset"])), _nanmin),
                   measured={"max_final_exploitability_original_game": float(max(expl[f][fixed][:, -1].max() for f in fams))},
                   note="the fixed magnet's limit is pi*_beta, not the original equilibrium: its exploitability of the "
                        "original game stays at the regularisation bias (reported)."),
        C.evaluate(_spec("mpo-magnet-updates-converge-original"), C.every_unit(sl_k, mx), C.every_unit(sl_ctl, mx),
                   measured={"slopes": sl_k.tolist(), f"K={k_ctl}_slopes": sl_ctl.tolist(),
                             "omwu_last_iterate_max_slope (beta = 0, stage beta0)": float(np.max(sl_omwu)),
                             "fixed_magnet_max_slope": float(np.max(sl_fixed)), "max_final_exploitability": float(max(expl[f][K][:, -1].max() for f in fams)),
                             "max_final_exploitability_by_K": {k: float(max(expl[f][k][:, -1].max() for f in fams))
                                                               for k in expl["random"] if k != fixed}},
                   note="slope -50 marks a game already below 1e-3 at the second logged step. Every game converges "
                        "(final exploitability reported), but at our K = 1000 the last decade's log-log slopes sit "
                        "between -0.5 and -2 on most games: a polynomial rate, not a linear one (a linear rate's slope "
                        "-t|log rho| would be far below -2 at t ~ 10^6); games with small-probability support actions "
                        "converge slowest. The paper's reset schedule is unknown: the sweep over K is plotted (K = 10 "
                        "diverges like MWU)."),
    ]


def iterations_to_target(e: np.ndarray, steps: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(B, G)``: first logged step with ``e[b, g, t] <= target[b, g]`` (inf if never)."""
    hit = e <= target[..., None]
    first = np.where(hit.any(-1), hit.argmax(-1), -1)
    return np.where(first >= 0, steps[np.maximum(first, 0)], np.inf).astype(np.float64)


def small_beta_exponent(T: np.ndarray, betas: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Per game: ``(a, censored)``, ``a`` the least-squares slope of ``log T(beta)`` on ``x = log(1/beta)``
    over the betas with ``0 < T`` (nan with fewer than two).

    A beta that never reaches its target in the run (``T = inf``) has ``T > horizon``: its point enters
    the fit at ``T = horizon`` and ``censored`` is True. The slope is ``sum_i w_i log T_i`` with
    ``w_i = (x_i - xbar) / sum_j (x_j - xbar)^2``, increasing in every ``T_i`` whose ``x_i > xbar``; when
    every censored beta lies there (the small betas, in practice) ``a`` is a **lower bound** on the
    exponent. A censored game whose bound is not a lower bound gets nan (nothing known).
    """
    out, cens = [], []
    x_all = np.log(1 / betas)
    for g in range(T.shape[1]):
        t = T[:, g]
        keep = t > 0
        c = np.isinf(t) & keep
        if keep.sum() < 2:
            out.append(np.nan), cens.append(bool(c.any()))
            continue
        x = x_all[keep]
        if c.any() and np.any(x_all[c] <= x.mean()):
            out.append(np.nan), cens.append(True)
            continue
        out.append(float(np.polyfit(x, np.log(np.minimum(t[keep], horizon)), 1)[0]))
        cens.append(bool(c.any()))
    return np.array(out), np.array(cens)


def censored_max(a: np.ndarray, censored: np.ndarray, check: C.Check) -> C.Measurement:
    """``max`` over units of ``a``, where a censored unit's ``a`` is a lower bound (:func:`small_beta_exponent`).

    Every-unit semantics (:func:`alignjax.claims.every_unit`): ``value = low = max_i a_i``; ``high``
    is the same unless a censored unit's lower bound satisfies ``a <= threshold``, whose exponent is
    then unknown above it: ``high = inf``, and the verdict cannot be ``holds`` (it is ``fails`` when
    some unit, censored or not, already exceeds the threshold: a counter-example).
    """
    m = C.every_unit(a, lambda x: float(np.nanmax(x)))
    unknown = bool(np.any(censored & ~(a > check.threshold)))
    return C.Measurement(m.value, m.low, float("inf") if unknown else m.high, m.units, m.interval, m.bootstrap)


def small_beta_claims(s: dict, r: dict) -> list[dict]:
    """EGPO on the original game through a small beta: iterations to eps(beta) and their exponent."""
    betas = np.asarray(s["small_betas"], np.float64)
    target = 2 * betas[:, None] * r["log_inv_ref_min"][None, :]  # (B, G)
    T = {k: iterations_to_target(r[k], r["steps"], target) for k in ("exploitability", "exploitability_omd")}
    horizon = float(r["steps"][-1])
    (a, ca), (a_c, cc) = (small_beta_exponent(T[k], betas, horizon) for k in ("exploitability", "exploitability_omd"))
    spec = _spec("egpo-original-game-small-beta")
    return [C.evaluate(
        spec, censored_max(a, ca, spec.check), censored_max(a_c, cc, spec.check),
        measured={"median_iterations_by_beta": {str(b): float(np.median(T["exploitability"][i])) for i, b in enumerate(betas)},
                  "omd_median_iterations_by_beta": {str(b): float(np.median(T["exploitability_omd"][i]))
                                                    for i, b in enumerate(betas)},
                  "exponents": a.tolist(), "censored_games": int(ca.sum()), "omd_exponents": a_c.tolist(),
                  "omd_censored_games": int(cc.sum()), "max_final_exploitability_by_beta":
                      {str(b): float(r["exploitability"][i, :, -1].max()) for i, b in enumerate(betas)}},
        note="eps(beta) = 2 beta log(1/min pi_ref) bounds the exploitability of pi*_beta (at pi*_beta, (A pi*)(y) <= "
             "beta log(1/pi_ref(y)), derived), so it is reachable; betas whose target pi_0 already meets (T = 0) are "
             "left out of the fit; a beta that never reaches its target in 10^6 steps enters the fit at T = 10^6, "
             "which makes that game's exponent a lower bound (a censored game). The "
             "paper's exponent could not be verified. The exponent is near 1.3 on most games (about 1 + "
             "1/log(e_0/eps), as the linear rate predicts); the worst game sits at 1.57, a counter-example "
             "(the check reads every game). The threshold is the small-beta limit of 1 + 1/log(e_0/eps): its premise "
             "e_0/eps >= e^2 fails at beta >= 0.01 on most games, where a pure linear-rate model would give a fitted "
             "exponent near 1.6 (docs/thresholds.md#egpo-original-game-small-beta), so the failing verdict says more "
             "about the threshold's derivation than about EGPO; the check was declared before the run and is kept. "
             "OMD (no extragradient, the control) never reaches the target at beta = 0.001 (it cycles): its exponent "
             "is a lower bound from T = 10^6.")]


def _three_rater_tv(s: dict, r: dict) -> tuple[float, float]:
    """Total variation between e = -delta and e = +delta: of the BT reward maximiser and of the Nash policy."""
    es, rew, nash3 = r["e"], r["bt_reward"], r["nash_pi"]
    d = s["three_rater_delta"]
    im, ip = int(np.argmin(np.abs(es + d))), int(np.argmin(np.abs(es - d)))  # e = -d and +d on the grid
    if not (abs(es[im] + d) < 1e-9 and abs(es[ip] - d) < 1e-9):
        raise ValueError("three_rater_e must contain -delta and +delta")
    tv_bt = 0.5 * np.abs(np.eye(3)[rew[im].argmax()] - np.eye(3)[rew[ip].argmax()]).sum()  # reward maximiser (beta -> 0)
    return float(tv_bt), 0.5 * float(np.abs(nash3[im] - nash3[ip]).sum())


def why_nlhf_claims(s: dict, r: dict) -> list[dict]:
    """BT-RLHF vs the Nash policy: exploitability; dependence on the sampling distribution (units: games)."""
    m = r["mixtures"]
    med = lambda x: float(np.median(x))
    out = [
        C.evaluate(_spec("bt-rlhf-exploitable-on-mixtures"), C.measure(m["exploitability_bt"], med),
                   C.measure(m["exploitability_nash_md"], med),
                   measured={"num_cyclic_games": int(m["cyclic"].sum()),
                             "max_exploitability_nash": float(m["exploitability_nash"].max()),
                             "median_exploitability_bt_bt_consistent_games": float(np.median(m["exploitability_bt_transitive"])),
                             "median_exploitability_bt_condorcet_games (v3's first control)":
                                 float(np.median(m["exploitability_bt_condorcet"])),
                             "max_win_rate_vs_nash": float(max(m["max_win_rate_pure_vs_nash"].max(),
                                                               m["max_win_rate_random_vs_nash"].max()))},
                   note="the Nash policy (LP) is reported, not used as the control (its exploitability is 0 by "
                        "construction); so are BT-RLHF on BT-consistent games and on the mixtures with a Condorcet "
                        "winner (v3's first control; its argmax is the Condorcet winner, exploitability ~0, so it "
                        "could not pass). The control, Nash-MD on the same mixtures, is a run of NLHF's own method: "
                        "it passes only if it stays exploitable after 10^4 steps."),
        C.evaluate(_spec("bt-rlhf-depends-on-sampling-distribution"), C.measure(m["tv_bt_uniform_vs_mu"], med),
                   C.measure(m["tv_bt_concentrated_mu"], med),
                   measured={"fraction_argmax_changes": float(m["argmax_changes"].mean()),
                             "median_tv_condorcet_games (v3's first control)":
                                 float(np.median(m["tv_bt_condorcet_uniform_vs_mu"])),
                             "mean_tv": float(m["tv_bt_uniform_vs_mu"].mean()),
                             "median_tv_bt_consistent_games": float(np.median(m["tv_bt_transitive_uniform_vs_mu"])),
                             "num_condorcet_games": int(len(m["tv_bt_condorcet_uniform_vs_mu"]))},
                   note="at beta = 0.01 BT-RLHF is nearly the argmax of the fitted reward, so its TV per game is ~0 or "
                        "~1: the median is 0 unless more than half the argmaxes move. The dependence is real on the "
                        "games where mu reorders the top two rewards (fraction reported); the Nash policy never sees "
                        "mu. BT-consistent games and the mixtures with a Condorcet winner give TV ~0 (reported; the "
                        "latter was v3's first control, which could not pass)."),
    ]
    # v2's check read another metric (the fraction of argmax changes): its verdict on its own metric, this run
    return out[:1] + [C.judge_old_check(out[1], C.measure(m["argmax_changes"].astype(np.float64)))]


# ------------------------------------------------------------------------------ plots and tables
def egpo_plots(ctx: SuiteContext, s: dict, r: dict) -> None:
    """``egpo_exact_gap.png`` (median and min-max gap per config, every method incl. INPO and SPPO)
    and ``egpo_exact_final.csv``."""
    import matplotlib.pyplot as plt

    cfgs = s["configs"]
    fig, axes = plt.subplots(1, len(cfgs), figsize=(5 * len(cfgs), 3.8))
    rows = []
    for c, (beta, T, lr) in enumerate(cfgs):
        ax = axes[c]
        for a, (_, label, rule) in EGPO_ALGOS.items():
            steps, g = _egpo_curves(s, r, a, c)
            ax.plot(steps, np.maximum(np.median(g, axis=0), 1e-16), label=label, ls="--" if rule == "inpo" else "-")
            ax.fill_between(steps, np.maximum(g.min(0), 1e-16), np.maximum(g.max(0), 1e-16), alpha=0.12)
            eta = r["etas"][c] if rule == "config" else 1.0 / (3.0 * beta)
            rows += [dict(algorithm=label, beta=beta, lr=lr, eta=eta, game=gi, initial_gap=g[gi, 0], final_gap=g[gi, -1],
                          iterations=T) for gi in range(g.shape[0])]
        ax.axhline(PLOT_CUT, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_title(f"beta={beta}, lr={lr} (eta={r['etas'][c]:.3g}), {T} it.")
        ax.set_xlabel("iteration")
        ax.set_ylabel("regularised duality gap (median, min-max)")
    axes[0].legend(fontsize=6)
    ctx.savefig(fig, "egpo_exact_gap.png")
    ctx.write_csv("egpo_exact_final.csv", rows)


def theorem_plot(ctx: SuiteContext, s: dict, r: dict) -> None:
    """``nash_md_theorem.png``: the worst KL over games against the bound, per beta, and the constant step."""
    import matplotlib.pyplot as plt

    steps = r["steps"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for b, beta in enumerate(s["theorem_betas"]):
        line, = ax.plot(steps[1:], r["kl"]["schedule"][b, :, 1:].max(0), label=f"max KL, beta={beta}")
        ax.plot(steps[1:], 8.0 / (beta ** 2 * (steps[1:] + 1)), "--", color=line.get_color(), label="8/(beta^2 (T+1))")
        ax.plot(steps[1:], r["kl"]["constant"][b, :, 1:].max(0), ":", color=line.get_color(),
                label=f"constant eta={s['theorem_const_eta']}")
    ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("T"), ax.set_ylabel("KL(pi*_beta || pi_T) (float64)")
    ax.legend(fontsize=5)
    ctx.savefig(fig, "nash_md_theorem.png")


def beta0_plot(ctx: SuiteContext, s: dict, r: dict, rm: dict) -> None:
    """``last_vs_average.png`` (beta = 0 runs, per family) and ``mpo_stages.png`` (MPO: fixed magnet,
    reset-period sweep: max exploitability over games)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(BETA0_FAMILIES), figsize=(10, 3.8))
    for ax, (f, flabel) in zip(axes, BETA0_FAMILIES.items()):
        for run, label in BETA0_LABELS.items():
            st = r["steps_long"] if run in ("omwu-last", "egpo-last") else r["steps"]
            ax.plot(st[1:], np.maximum(np.median(r["exploitability"][f][run][:, 1:], 0), 1e-12), label=label)
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("iteration"), ax.set_ylabel("exploitability (median)")
        ax.set_title(f"beta = 0, eta = {s['beta0_eta']}, {flabel}")
    axes[0].legend(fontsize=7)
    ctx.savefig(fig, "last_vs_average.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, e in rm["exploitability"]["random"].items():
        lab = "fixed magnet" if k == str(FIXED_MAGNET) else f"reset every {k}"
        st = rm["steps_long"] if k in (str(FIXED_MAGNET), str(s["mpo_reset_every"])) else rm["steps"]  # see mpo_stage
        axes[0].plot(st[1:], np.maximum(e[:, 1:].max(0), 1e-12), label=lab)
        axes[1].plot(st[1:], np.maximum(rm["gap"]["random"][k][:, 1:].max(0), 1e-13), label=lab)
    axes[0].set_ylabel("exploitability, original game (max over games)")
    axes[1].set_ylabel("regularised gap w.r.t. pi_ref (max over games)")
    for ax in axes:
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("iteration")
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"MPO, beta={s['mpo_beta']}, eta={s['mpo_eta']}")
    ctx.savefig(fig, "mpo_stages.png")
    ctx.write_csv("mpo_reset_sweep.csv", [dict(reset_every=k, max_final_exploitability=float(e[:, -1].max()),
                                               median_final_exploitability=float(np.median(e[:, -1])))
                                          for k, e in rm["exploitability"]["random"].items()])


def small_beta_plot(ctx: SuiteContext, s: dict, r: dict) -> None:
    """``egpo_small_beta.png``: EGPO's exploitability of the original game vs beta, with the bound."""
    import matplotlib.pyplot as plt

    betas = np.asarray(s["small_betas"])
    e = r["exploitability"][:, :, -1]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(betas, e.max(1), "o-", label="EGPO last iterate, max over games")
    ax.plot(betas, np.median(e, 1), "s-", label="median")
    ax.plot(betas, 2 * betas * r["log_inv_ref_min"].min(), "k--", label="2 beta log(1/min pi_ref) (smallest)")
    ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("beta"), ax.set_ylabel("exploitability (original game)")
    ax.legend(fontsize=7)
    ctx.savefig(fig, "egpo_small_beta.png")


def why_nlhf_plots(ctx: SuiteContext, s: dict, r: dict) -> None:
    """``why_nlhf.png`` (three-rater policies; win rates vs Nash; TV under two sampling distributions)
    and ``three_rater.csv``."""
    import matplotlib.pyplot as plt

    m, t = r["mixtures"], r["three_rater"]
    es, r3, bt3, nash3 = t["e"], t["bt_reward"], t["bt_pi"], t["nash_pi"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for y in range(3):
        axes[0].plot(es, bt3[:, y], label=f"BT-RLHF pi(y{y}), beta={s['bt_beta']}")
        axes[0].plot(es, nash3[:, y], "--", label=f"Nash pi(y{y})")
    axes[0].set_xlabel("e"), axes[0].set_title("three-rater example"), axes[0].legend(fontsize=6)
    axes[1].hist([m["win_rate_bt_vs_nash"], m["max_win_rate_random_vs_nash"]], bins=20,
                 label=["BT-RLHF vs Nash", "best random policy vs Nash"])
    axes[1].axvline(0.5, color="k", ls="--")
    axes[1].set_xlabel("P(pi > pi_Nash)"), axes[1].legend(fontsize=6)
    axes[1].set_title(f"{int(m['cyclic'].sum())} cyclic mixtures")
    axes[2].hist([m["tv_bt_uniform_vs_mu"], m["tv_bt_transitive_uniform_vs_mu"]], bins=20,
                 label=["cyclic mixtures", "BT-consistent games (control)"])
    axes[2].set_xlabel("TV(BT-RLHF under uniform pairs, under mu pairs)"), axes[2].legend(fontsize=6)
    ctx.savefig(fig, "why_nlhf.png")
    ctx.write_csv("three_rater.csv", [dict(e=e, bt_r0=r3[i, 0], bt_r1=r3[i, 1], bt_r2=r3[i, 2],
                                           **{f"bt_pi{y}": bt3[i, y] for y in range(3)},
                                           **{f"nash_pi{y}": nash3[i, y] for y in range(3)}) for i, e in enumerate(es)])


# ----------------------------------------------------------------------------------- reproduce
def reproduce(ctx: SuiteContext) -> list[dict]:
    """Part A's stages (claims, plots, tables), then part B's (``_nash_sampled``)."""
    import matplotlib

    matplotlib.use("Agg")
    s = _settings(ctx.scale)
    ctx.config.update({"scale": ctx.scale, **s})
    ctx.config["eta_mapping"] = "eta = 4 lr / (N beta) for every algorithm (authors' code: 2 lr/(N beta) for Nash-MD's mixture)"
    claims = []
    r = ctx.stage("egpo-simulation", lambda: egpo_simulation(s))
    egpo_plots(ctx, s, r)
    claims += egpo_claims(s, r)
    r = ctx.stage("theorem", lambda: theorem(s))
    theorem_plot(ctx, s, r)
    claims += theorem_claims(s, r)
    r = ctx.stage("beta0", lambda: beta0(s))
    rm = ctx.stage("mpo", lambda: mpo_stage(s))
    beta0_plot(ctx, s, r, rm)
    ctx.config["beta0_equilibrium_support_sizes"] = {f: [int(v) for v in r["equilibrium_support"][f]]
                                                     for f in BETA0_FAMILIES}
    claims += beta0_claims(s, r)
    claims += mpo_claims(s, rm, r)
    r = ctx.stage("small-beta", lambda: small_beta(s))
    small_beta_plot(ctx, s, r)
    claims += small_beta_claims(s, r)
    r = ctx.stage("why-nlhf", lambda: why_nlhf(s))
    why_nlhf_plots(ctx, s, r)
    claims += why_nlhf_claims(s, r)
    r = ctx.stage("inpo-regime", lambda: INPO.inpo_stage(s, *egpo_games(jax.random.key(s["seed"]), s["num_games"],
                                                                        s["num_responses"])))
    INPO.inpo_plot(ctx, s, r)
    claims.append(INPO.inpo_claim(r))
    return claims + _nash_sampled.sampled_claims(ctx)


SUITES.register("nash-games", reproduce,
                meta={"description": "Non-transitive preference games: EGPO simulation (exact + sampled), Nash-MD "
                                     "theorem, last iterate vs average, MPO's two stages, EGPO via small beta, why "
                                     "NLHF (BT-RLHF vs Nash)", "claims": CLAIMS,
                      "quick_seconds": 195})  # cold-cache seconds, a scheduling hint


# ------------------------------------------------------------------------------------ the page
def _v2(cid, old_statement, old_check, why, new_id="same", new=None):
    """One row of the table 'claims restated in v3' (v2's verdicts: holds at quick and full, control fails)."""
    return {"id": cid, "old_statement": old_statement, "old_check": old_check,
            "old_verdict": "holds (quick and full); control fails", "new_id": cid if new_id == "same" else new_id,
            "new": new, "why": why}


RESTATED = (
    _v2("egpo-regularized-linear-rate", "EGPO's last iterate converges linearly to pi*_beta.",
        "every game and config under the envelope max(10 gap_0 (1 - eta beta)^t, 1e-10), final gap < 1e-6.",
        "issue 22: C = 10 and the 1e-6 cut were set after a failing run; the rate is now fitted and compared with "
        "1 - eta beta. Control: OMWU on the same regularised games (constant-step Nash-MD, the first v3 control, "
        "plateaus by construction and is another claim's subject)."),
    _v2("nash-md-constant-step-plateaus", "Constant-step Nash-MD plateaus above EGPO.",
        "median final gap ratio Nash-MD/EGPO > 100 at beta 0.1 and 0.01.", "the same check, with an interval over games."),
    _v2("nash-md-rate-order", "Nash-MD with eta_t = 2/(beta(t+2)) is O(1/T) in KL.",
        "max log-log slope over the last decade <= -0.95.", "the same check, with an interval over games."),
    _v2("mwu-last-iterate-cycles-average-converges", "MWU's last iterate cycles; its average converges.",
        "on every game with a mixed equilibrium: last-iterate tail mean > 10x average's final.",
        "the same check as one number (the minimum ratio over games), judged on every game; control: OMWU's last "
        "iterate at eta = 0.1, its own run (OMWU's 10^7-step run is the next claim's subject)."),
    _v2("omwu-extragradient-last-iterate-beta0", "OMWU and extragradient converge in the last iterate at beta = 0.",
        "every game: e_T < 1e-2 and (e_T <= 0.1 e_(T/10) or e_T < 1e-4).",
        "the same per-game criterion as one number (the worst convergence score), judged on every game; control: "
        "MWU's last iterate at eta = 0.1, its own run (MWU's eta = 0.25 run is the previous claim's subject)."),
    _v2("mpo-fixed-magnet-linear-rate", "MPO with a fixed magnet converges linearly to the magnet's equilibrium.",
        "every game under the envelope of egpo-regularized-linear-rate with contraction 1/(1 + eta beta).",
        "the envelope (set after a failing run) is replaced by the fitted rate, as for EGPO."),
    _v2("mpo-magnet-updates-converge-original", "MPO with magnet resets converges to the original NE.",
        "every game: e_T <= e_(T/10)/3 (or below the 1e-4 floor, raised from 1e-5 after a failing run) and < 1e-2.",
        "issue 22: the paper says linear; v3 checks the rate's shape (log-log slope <= -2). The control was MPO with "
        "a fixed magnet, which cannot pass (its limit pi*_beta stays exploitable); it is now MPO with the magnet "
        "reset every 10 steps (a broken schedule), which can."),
    _v2("egpo-original-game-small-beta", "EGPO reaches an eps-NE of the original game through a small beta.",
        "final exploitability <= 2 beta log(1/min pi_ref) for every beta and game.",
        "issue 22: weaker than the paper (a bias bound, no rate); v3 measures the iterations to eps(beta) and their "
        "exponent in 1/beta. A game where some beta never reaches its target was a sentinel exponent 99 (so OMD's "
        "control could not pass); it is now the exponent's lower bound from T = the horizon, which can."),
    _v2("bt-rlhf-exploitable-on-mixtures", "BT-RLHF is exploitable on cyclic annotator mixtures.",
        "median exploitability > 0.1 (control: the Nash policy, 0 by construction).",
        "the same check; the control is now Nash-MD on the same cyclic mixtures (NLHF's method, a run; v3's first "
        "control, BT-RLHF on the mixtures with a Condorcet winner, had exploitability ~0 by construction and was the "
        "sampling-distribution claim's control too)."),
    _v2("nothing-beats-the-nash-policy", "No policy beats the Nash policy: P(pi > pi_Nash) <= 1/2.",
        "max win rate of every challenger <= 1/2 + 1e-6.", "issue 22: an identity of the LP's equilibrium.",
        new_id=None, new="unit test `tests/test_nash_suite.py::test_nothing_beats_the_nash_policy`"),
    _v2("three-rater-bt-jumps-nash-continuous", "Three raters: the BT maximiser jumps, the Nash policy is continuous.",
        "TV of the BT maximiser > 0.99 and TV of Nash <= 3 delta.", "issue 22: a closed form.",
        new_id=None, new="unit test `tests/test_nash_suite.py::test_three_rater_bt_jumps_nash_continuous`"),
    _v2("bt-rlhf-depends-on-sampling-distribution", "The BT fit depends on the sampling distribution of the pairs.",
        "fraction of cyclic mixtures whose BT argmax changes >= 10% (replaced the median TV > 0.1 after the smoke "
        "run; control: BT-consistent games, 0 by construction).",
        "issue 22: changed after a failing run; the first draft (median TV > 0.1) is restored. Its first v3 "
        "control, the mixtures with a Condorcet winner, gave TV ~1e-15 (the BT argmax is the Condorcet winner under "
        "either distribution, so it could not pass) and was also the exploitability claim's control; the control is "
        "now the same pipeline with a more concentrated mu ~ Dirichlet(0.3) (new BT fits)."),
    _v2("sampled-egpo-noise-floor-shrinks", "Sampled EGPO's noise floor shrinks with the samples per step.",
        "floors strictly decreasing in K and floor(10) > 3 floor(1000) (control: the same numbers reversed).",
        "one scalar per check; the control (reversed numbers) could not fail: it is now sampled Nash-MD-PG."),
    _v2("online-ipo2-nash-md-pg-stall-small-beta", "Online IPO 2 and Nash-MD-PG stall at beta = 0.001; EGPO does not.",
        "both ratios > 0.1 and EGPO's < 0.1 (control: EGPO's > 0.1, the check negated).",
        "the control could not fail; EGPO moved from the compound check to the control."),
    _v2("egpo-lowest-gap-every-beta", "EGPO ends with the lowest gap at every beta.",
        "EGPO's median <= min of the others x (1 + 1e-6) or < 1e-11 at every beta.",
        "the same check as one ratio with an interval over games; the control is EGPO at a tenth of its learning "
        "rate (its own run; v3's first control, Nash-MD-PG in EGPO's place, was the same runs reordered)."),
    _v2("sampled-egpo-lowest-gap", "EGPO ends at the lowest sampled noise floor.",
        "EGPO's median floor <= the best other's x (1 + 1e-6) (0.97, no interval; the floor replaced the final "
        "point after the order flipped between quick and full).", "issue 22: the ratio now has an interval over games; "
        "the control is sampled EGPO at a tenth of its learning rate (its own run; v3's first control, Nash-MD-PG in "
        "EGPO's place, was the same runs reordered)."),
    _v2("nash-md-pg-stall-every-mixture", "Nash-MD-PG stalls at beta = 0.001 for every mixture m.",
        "median final/initial > 0.1 for every m (control: EGPO, shared with another claim).",
        "the same check as one number; the control is Nash-MD-PG at beta = 0.1 (its own run)."),
    _v2("sampled-inpo-bernoulli-feedback", "INPO learns from Bernoulli feedback.",
        "max final/initial gap < 0.1 at beta 0.1, eta 1 (eta beta = 0.1).",
        "issue 22: weaker than the paper; INPO's own regime eta beta = tau/eta = 1/3 (beta = 2.5e-3)."),
    _v2("neural-egpo-reduces-gap", "EGPO with an MLP policy reduces the gap 10x.",
        "median final/initial < 0.1 (control: a typed constant 1.0).",
        "issue 22: the control was a constant; it is now neural Nash-MD-PG."),
)
"""The suite's v2 claims and how contract v3 restates them (the old verdicts are those of the v2 page)."""


def claims_tables(full_dir, quick_dir) -> str:
    """The markdown of ``papers/nash_games.md``'s claims sections, read from a full and a quick run's
    ``summary.json``: the verdict table, agreement, the checks changed after a run, the table "claims
    restated in v3"."""
    from alignjax_experiments import _claims_page as page

    full, quick = page.escaped(page.load_summary(full_dir)), page.escaped(page.load_summary(quick_dir))
    lines = [*page.verdict_table(quick, full), "", page.agreement_text(quick, full), "", *page.history_lines(full), "",
             "### Claims restated in v3", "", *page.restated_table(RESTATED, quick, full)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m alignjax_experiments.nash_games FULL_DIR QUICK_DIR
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m alignjax_experiments.nash_games FULL_DIR QUICK_DIR")
    print(claims_tables(sys.argv[1], sys.argv[2]), end="")
