"""Any registered exact game dynamic as a sweepable experiment (``alignjax run nash-dynamics``).

This puts the exact tabular dynamics of :mod:`alignjax.dynamics` (OMD/INPO, Nash-MD, EGPO,
OMWU, MPO, MWU, BT-RLHF, and any a fork registers) behind the generic sweep runner, so a sweep
over ``beta x eta x games`` is one compiled, device-sharded, checkpointable program::

    alignjax run nash-dynamics --set algorithm=egpo --sweep beta=1e-3:1:32:log --seeds 10
    alignjax run nash-dynamics --set algorithm=mpo --set mpo.reset_every=20
    alignjax run nash-dynamics --set algorithm=omd --sweep beta=0,0.01,0.1

``algorithm`` is a component (:class:`~alignjax.experiment.Experiment`): the chosen dynamic's
hyperparameters other than ``beta``/``eta`` and its static knobs become settings named
``ALGORITHM.NAME`` (``alignjax list nash-dynamics`` after ``--set algorithm=...``).

Each seed draws one game (static ``game``): ``"random"`` is the EGPO simulation's random game
(``P[i,j] ~ U(0,1)`` for ``i > j``) with ``num_responses`` actions; ``"rps"``, ``"dice"`` and
``"three-rater"`` (NLHF §3.2, parameter ``rater_e``) are the fixed cyclic games. The reference
is ``softmax(N(0,1))`` (``reference="random"``) or uniform, and ``pi_0 = pi_ref``.

Observed at every logged step: EGPO's regularised duality gap
``2 beta logsumexp(log pi_ref + P pi / beta) + 2 beta KL(pi || pi_ref) - 1`` (>= 0, zero exactly
at the regularised equilibrium; at ``beta = 0`` its limit, the unregularised duality gap
``2 max_y (P pi)[y] - 1``), the unregularised exploitability ``2 max_y (P pi)[y] - 1``,
``KL(pi || pi_ref)`` and the policy ``pi`` itself (``(N,)``, saved to ``arrays.npz``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignjax import games, prefs
from alignjax.dynamics import check_hparams, check_static, exact_dynamics, exact_names
from alignjax.experiment import Component, Experiment, Program, namespaced, static_of
from alignjax.registry import DYNAMICS, EXPERIMENTS

GAMES = ("random", "rps", "dice", "three-rater")
HPARAMS = {"beta": 0.1, "eta": 0.4, "rater_e": 0.1}


def _game(kind: str, n: int, key: jax.Array, rater_e: jax.Array) -> jax.Array:
    if kind == "random":
        return prefs.random_game(key, n)
    if kind == "rps":
        return prefs.rock_paper_scissors()
    if kind == "dice":
        return prefs.intransitive_dice()
    return prefs.three_rater_cycle(rater_e)


def make_program(config) -> Program:
    """Program for a static ``config`` (``algorithm``, ``game``, ``num_responses``, ``reference``
    and the algorithm's static knobs ``ALGORITHM.KNOB``).

    State: the dynamic's own state plus the game ``P (N, N)`` and ``log pi_ref (N,)`` drawn
    from the run's key; one step is one ``update`` of the dynamic with its hyperparameters
    ``{name: hparams[key]}`` (:func:`alignjax.experiment.namespaced`).
    """
    entry = DYNAMICS.entry(config["algorithm"])
    dyn = exact_dynamics(entry.name, **static_of(entry, config))
    keys = namespaced(entry, HPARAMS)
    kind, ref_kind = config["game"], config["reference"]
    n = int(config["num_responses"]) if kind == "random" else 3

    def dyn_hp(hp):
        return {h: hp[k] for h, k in keys.items()}

    def init(hp, key):
        k_game, k_ref = jax.random.split(key)
        P = _game(kind, n, k_game, hp["rater_e"])
        logits = jax.random.normal(k_ref, (n,)) if ref_kind == "random" else jnp.zeros(n)
        log_ref = jax.nn.log_softmax(logits)
        return {"dyn": dyn.init(log_ref, P, log_ref, dyn_hp(hp)), "P": P, "log_ref": log_ref}

    def step(state, hp):
        return {**state, "dyn": dyn.update(state["dyn"], state["P"], state["log_ref"], dyn_hp(hp))}

    def observe(state, hp):
        pi, pi_ref, beta = jnp.exp(state["dyn"].log_pi), jnp.exp(state["log_ref"]), hp["beta"]
        expl = games.exploitability(state["P"], pi)
        reg = games.regularized_gap(state["P"], pi, pi_ref, jnp.where(beta > 0, beta, 1.0))
        return {"gap": jnp.where(beta > 0, reg, expl), "exploitability": expl, "kl_ref": games.kl(pi, pi_ref), "pi": pi}

    return Program(init, step, observe)


def validate(config, hparams):
    """Known exact algorithm (its static knobs checked), known game and reference, ``N >= 2``,
    ``|rater_e| <= 1/3``, ``beta >= 0`` (the observed gap's coefficient), and the algorithm's own
    condition on every grid row's hyperparameters (:func:`alignjax.dynamics.check_hparams` in the
    default float dtype the sweep runs in, e.g. ``eta * beta <= 1`` for egpo), so
    ``--set eta=40`` is refused before any compute."""
    if config["algorithm"] not in exact_names():
        raise ValueError(f"algorithm {config['algorithm']!r} is not an exact dynamic; exact: {', '.join(exact_names())}")
    entry = DYNAMICS.entry(config["algorithm"])
    check_static(entry.name, static_of(entry, config))
    if config["game"] not in GAMES:
        raise ValueError(f"game must be one of {', '.join(GAMES)}; got {config['game']!r}")
    if config["reference"] not in ("random", "uniform"):
        raise ValueError(f"reference must be 'random' or 'uniform'; got {config['reference']!r}")
    if int(config["num_responses"]) < 2:
        raise ValueError(f"num_responses must be >= 2; got {config['num_responses']}")
    e = np.asarray(hparams["rater_e"])
    if np.any(np.abs(e) > 1.0 / 3.0):
        raise ValueError(f"rater_e must lie in [-1/3, 1/3]; got {e.tolist()}")
    if np.any(np.asarray(hparams["beta"]) < 0):
        raise ValueError(f"beta must be >= 0; got {float(np.min(hparams['beta'])):g}")
    check_hparams(entry.name, {h: hparams[k] for h, k in namespaced(entry, HPARAMS).items()})


EXPERIMENTS.register("nash-dynamics", Experiment(
    name="nash-dynamics",
    description="any exact game dynamic (egpo, omd, nash-md, omwu, mpo, mwu, bt-rlhf, ...) on random or cyclic games",
    config={"algorithm": "egpo", "game": "random", "num_responses": 10, "reference": "random",
            "num_steps": 1000, "log_every": 50},
    hparams=HPARAMS,
    make_program=make_program,
    validate=validate,
    components={"algorithm": Component(DYNAMICS, lambda e: e.meta.get("kind") == "exact")},
    positive=("eta",),
))
