"""Declared hyperparameter domains (alignjax/domains.py): the type, its probe points, the registry's
use of it, the agreement of every built-in declaration with the entry's own check function, and the
command line's refusal of a value outside a domain (one line, exit 2, before any compute).

The probing itself (every loss and exact dynamic evaluated at its domains' probe points) is part of
the registry-wide contracts in ``tests/test_registry.py``; that it catches a NaN inside a declared
domain is shown on the broken fork fixtures (``tests/test_fork_fixtures.py``).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from alignjax.domains import INSIDE, Condition, Domain, check_values, describe_point, probe_points
from alignjax.registry import DYNAMICS, GAME_LOSSES, LOSSES, TRAINERS, Entry, Registry

INF = math.inf


# ----------------------------------------------------------------------------- the type
def test_contains_is_vectorised_and_respects_open_and_infinite_ends():
    d = Domain(0.1, 0.0, 0.5, upper_open=True)
    x = np.array([[-1e-9, 0.0, 0.25], [0.5 - 1e-12, 0.5, np.nan]])
    np.testing.assert_array_equal(d.contains(x), [[False, True, True], [True, False, False]])
    assert d.contains(0.0) is True and d.contains(0.5) is False
    pos = Domain.positive(0.4)
    np.testing.assert_array_equal(pos.contains([0.0, 1e-300, 1e300, np.inf, -np.inf]), [False, True, True, False, False])
    everything = Domain.from_default(0.5)
    assert np.all(everything.contains([-1e30, 0.0, 1e30])) and not np.any(everything.contains([np.nan, np.inf]))


@pytest.mark.parametrize("domain, text, requirement", [
    (Domain(0.1, 0.0, 0.5, upper_open=True), "[0, 0.5)", "in [0, 0.5)"),
    (Domain.positive(0.4), "(0, inf)", "> 0"),
    (Domain.nonnegative(0.1), "[0, inf)", ">= 0"),
    (Domain(0.5, 0.0, 1.0), "[0, 1]", "in [0, 1]"),
    (Domain(-1.0, upper=0.0, upper_open=True), "(-inf, 0)", "< 0"),
    (Domain.from_default(2.0), "(-inf, inf)", "finite"),
])
def test_text(domain, text, requirement):
    assert str(domain) == text and domain.requirement() == requirement


def test_refusal_names_the_entry_the_hyperparameter_the_value_and_the_domain():
    d = Domain(0.1, 0.0, 0.5, upper_open=True, why="label smoothing")
    assert d.refusal("cdpo", "eps", 0.7, "cdpo.eps") == "cdpo needs eps in [0, 0.5) (label smoothing); got cdpo.eps = 0.7"
    assert Domain.positive(0.1).refusal("mpo", "beta", 0.0) == "mpo needs beta > 0 (domain (0, inf)); got beta = 0"


def test_corners_closed_exactly_open_just_inside_infinite_at_the_probe_limit():
    assert Domain(0.1, 0.0, 0.5, upper_open=True).corners() == (0.0, 0.5 - INSIDE)
    assert Domain.positive(0.4, probe_upper=10.0).corners() == (INSIDE, 10.0)
    assert Domain(0.0, lower_open=False, probe_lower=-3.0, probe_upper=7.0).corners() == (-3.0, 7.0)
    assert Domain(2.0).corners() == (-200.0, 200.0)  # undeclared probe limits: -+ 100 max(1, |default|)
    assert Domain(0.5, 0.0, 1.0, lower_open=True, probe_lower=0.01).corners() == (0.01, 1.0)


def test_interior_points_linear_or_geometric():
    np.testing.assert_allclose(Domain(0.5, 0.0, 1.0).interior(3), [0.25, 0.5, 0.75])
    np.testing.assert_allclose(Domain(1.0, 1e-3, 1e3, log=True).interior(3), [1e-1 / 3.1622776601683795, 1.0, 31.622776601683793])
    # a log scale closed at 0: the geometric spacing starts at probe_lower, which is probed too
    d = Domain.nonnegative(0.1, probe_upper=100.0, smallest=1e-4)
    np.testing.assert_allclose(d.interior(3), [1e-4, 1e-2, 1.0])
    np.testing.assert_allclose(d.probes(3), [0.0, 1e-4, 1e-2, 0.1, 1.0, 100.0])
    # an open 0: the corner is just inside, the spacing starts there
    np.testing.assert_allclose(Domain.positive(0.4, probe_upper=100.0).probes(3), [1e-6, 1e-4, 1e-2, 0.4, 1.0, 100.0])


def test_a_plain_float_is_accepted_everywhere_and_probed_between_0_and_the_default():
    """The inferred rule (alignjax.domains): accept every finite value, probe [min(0, x0), max(0, x0)]."""
    for d0, probes in ((0.5, [0.0, 0.125, 0.25, 0.375, 0.5]), (-2.0, [-2.0, -1.5, -1.0, -0.5, 0.0]), (0.0, [0.0])):
        d = Domain.from_default(d0)
        assert d.inferred and d.lower == -INF and d.upper == INF
        np.testing.assert_allclose(d.probes(3), probes)
    reg = Registry("widget")
    reg.register("w", lambda: None, hparams={"lam": 0.5, "tau": Domain(1.0, 0.0, 2.0)})
    e = reg.entry("w")
    assert e.hparams == {"lam": 0.5, "tau": 1.0}
    assert e.domains["lam"].inferred and not e.domains["tau"].inferred
    hand = Entry("h", None, {"gamma": 0.3})  # an entry built by hand gets the inferred domains
    assert hand.domains["gamma"] == Domain.from_default(0.3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(default=0.7, lower=0.0, upper=0.5), "outside"),
    (dict(default=0.5, lower=0.0, upper=0.5, upper_open=True), "outside"),
    (dict(default=1.0, lower=2.0, upper=1.0), "lower < upper"),
    (dict(default=1.0, lower=-1.0, upper=2.0, log=True), "log-scaled"),
    (dict(default=0.5, lower=0.0, upper=1.0, probe_lower=0.1), "probe_lower"),
    (dict(default=0.5, lower=0.0, probe_upper=0.1), "probe_upper"),
    (dict(default=float("nan")), "must be a number"),
])
def test_bad_domains_are_refused_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Domain(**kwargs)


def test_condition_holds_within_its_slack_and_names_the_quantity():
    c = Condition("eta*beta", lambda hp: hp["eta"] * hp["beta"], upper=1.0, slack=1e-6, why="a weight >= 0")
    hp = {"eta": np.array([10.0, 10.00001, 40.0]), "beta": np.array(0.1)}
    np.testing.assert_array_equal(c.holds(hp), [True, True, False])
    assert c.requirement() == "eta*beta <= 1"
    assert c.refusal("egpo", 4.0) == "egpo needs eta*beta <= 1 (a weight >= 0); got eta*beta = 4"
    doms = {"beta": Domain.nonnegative(0.1), "eta": Domain.positive(0.4)}
    with pytest.raises(ValueError, match=re.escape("egpo needs eta*beta <= 1 (a weight >= 0); got eta*beta = 4")):
        check_values("egpo", doms, (c,), hp)
    with pytest.raises(ValueError, match=re.escape("egpo needs eta > 0 (domain (0, inf)); got egpo.eta = -1")):
        check_values("egpo", doms, (c,), {"beta": 0.1, "eta": np.array([0.4, -1.0])}, {"eta": "egpo.eta"})


def test_probe_points_one_at_a_time_joint_corners_and_the_conditions_boundary():
    doms = {"beta": Domain.nonnegative(0.1, smallest=1e-4), "eta": Domain.positive(0.4)}
    cond = Condition("eta*beta", lambda hp: hp["eta"] * hp["beta"], upper=1.0)
    points, varied = probe_points(doms, (cond,))
    beta, eta = points["beta"], points["eta"]
    assert varied[0] == () and (beta[0], eta[0]) == (0.1, 0.4)  # the defaults first
    for h, d in doms.items():
        assert np.all(d.contains(points[h]))
        alone = [points[h][k] for k, v in enumerate(varied) if v == (h,)]
        # every probe of h with the other at its default, projected onto eta*beta <= 1 where needed
        assert set(np.round(alone, 9)) >= set(np.round([p for p in d.probes() if p != d.default and
                                                         (p * (0.4 if h == "beta" else 0.1)) <= 1], 9))
    assert np.all(beta * eta <= 1.0 + 1e-12)
    assert np.any(np.isclose(beta * eta, 1.0)), "the boundary eta*beta = 1 is probed"
    assert np.any((beta == 0.0) & (eta == 100.0)) and np.any((beta == 100.0) & (eta == INSIDE))  # joint corners
    assert len({(b, e) for b, e in zip(beta, eta)}) == len(beta)  # distinct
    k = next(i for i, v in enumerate(varied) if v == ("eta",))
    assert describe_point(points, varied, k) == f"eta = {eta[k]:g} (the others at their defaults: beta = 0.1)"


def test_registering_defaults_that_break_a_condition_is_refused():
    reg = Registry("widget")
    cond = Condition("eta*beta", lambda hp: hp["eta"] * hp["beta"], upper=1.0)
    with pytest.raises(ValueError, match="defaults break a declared condition"):
        reg.register("bad", lambda: None, hparams={"beta": 1.0, "eta": 2.0}, conditions=[cond])
    with pytest.raises(ValueError, match="defaults break a declared condition"):  # names a missing hyperparameter
        reg.register("bad", lambda: None, hparams={"beta": 1.0}, conditions=[cond])
    with pytest.raises(TypeError, match="float default or a Domain"):
        reg.register("bad", lambda: None, hparams={"beta": True})
    assert "bad" not in reg


# ----------------------------------------------------------------------------- built-in declarations
def _builtin(registry) -> list:
    return [e for e in registry if getattr(e.obj, "__module__", "").startswith("alignjax.")]


@pytest.mark.parametrize("registry", [LOSSES, DYNAMICS, TRAINERS, GAME_LOSSES], ids=lambda r: r.kind)
def test_every_builtin_hyperparameter_declares_its_domain(registry):
    entries = _builtin(registry)
    assert entries
    for e in entries:
        for h, d in e.domains.items():
            assert not d.inferred, f"{registry.kind} {e.name!r}: {h} has no declared Domain"
            assert d.default == e.hparams[h]
            for v in d.probes():  # probes lie in the domain
                assert d.contains(v), (e.name, h, v)


def _outside(d: Domain) -> list[float]:
    """Values just outside each finite end (the end itself if it is open)."""
    out = []
    if math.isfinite(d.lower):
        out.append(d.lower if d.lower_open else d.lower - 1e-3 * max(1.0, abs(d.lower)))
    if math.isfinite(d.upper):
        out.append(d.upper if d.upper_open else d.upper + 1e-3 * max(1.0, abs(d.upper)))
    return out


def _agrees(entry, check) -> None:
    """``check(values)`` (the entry's own check function) accepts every probe point of the declared
    domains and refuses every value just outside a domain, as the domains do."""
    points, varied = entry.probe_points()
    for k in range(len(varied)):
        check({h: np.asarray(points[h][k]) for h in points})  # accepted
    for h, d in entry.domains.items():
        for v in _outside(d):
            bad = {**{n: np.asarray(x) for n, x in entry.hparams.items()}, h: np.asarray(v)}
            with pytest.raises(ValueError):
                entry.check_values(bad)
            with pytest.raises(ValueError):
                check(bad)
    for c in entry.conditions:  # a condition's outside: scale one hyperparameter past its bound
        hp = dict(entry.hparams)
        q = float(c.values(hp))
        bad = {n: np.asarray(v * (2.0 * c.upper / q if n == "eta" else 1.0)) for n, v in hp.items()}
        assert not np.all(c.holds(bad))
        with pytest.raises(ValueError):
            check(bad)


@pytest.mark.parametrize("name", [e.name for e in _builtin(DYNAMICS) if e.meta.get("kind") == "exact"])
def test_exact_dynamic_domains_agree_with_their_check(name):
    entry = DYNAMICS.entry(name)
    _agrees(entry, lambda hp: entry.meta["check"](hp, np.float32))


@pytest.mark.parametrize("name", [e.name for e in _builtin(DYNAMICS) if e.meta.get("kind") == "sampled"])
def test_sampled_dynamic_domains_agree_with_validate_hparams(name):
    from alignjax.dynamics.sampled import validate_hparams

    entry = DYNAMICS.entry(name)
    _agrees(entry, lambda hp: validate_hparams(entry.meta["loss"], hp))


@pytest.mark.parametrize("name", [e.name for e in _builtin(TRAINERS)])
def test_trainer_domains_agree_with_rlhf_check_hparams(name):
    from alignjax.rlhf import check_hparams

    entry = TRAINERS.entry(name)
    _agrees(entry, lambda hp: check_hparams(hp, tuple(entry.hparams)))


# ----------------------------------------------------------------------------- the command line
def _refused(argv, tmp_path, capsys, *contains):
    from alignjax.cli import main

    out = tmp_path / "run"
    capsys.readouterr()
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignjax: error:") and err.count("\n") == 1, err
    for text in contains:
        assert text in err, err
    assert not out.exists()
    return err


@pytest.mark.parametrize("argv, contains", [
    (["dpo-bandit", "--set", "loss=cdpo", "--set", "cdpo.eps=0.7"], ("cdpo needs eps in [0, 0.5)", "got cdpo.eps = 0.7")),
    (["dpo-bandit", "--set", "loss=rdpo", "--sweep", "rdpo.eps=0.1,0.5"], ("rdpo needs eps in [0, 0.5)", "got rdpo.eps = 0.5")),
    (["dpo-bandit", "--set", "loss=fdpo_alpha", "--sweep", "fdpo_alpha.alpha=0:1.5:4"],
     ("fdpo_alpha needs alpha in [0, 1]", "got fdpo_alpha.alpha = 1.5")),
    (["dpo-bandit", "--set", "loss=kto", "--set", "kto.lambda_u=-1"], ("kto needs lambda_u >= 0", "domain [0, inf)",
                                                                       "got kto.lambda_u = -1")),
    (["nash-dynamics", "--set", "algorithm=mpo", "--set", "beta=0"], ("mpo needs beta > 0", "domain (0, inf)", "got beta = 0")),
    (["nash-dynamics", "--set", "algorithm=omd", "--sweep", "eta=0.1,-1"], ("omd needs eta > 0", "got eta = -1")),
    (["nash-dynamics", "--set", "algorithm=omwu", "--sweep", "eta=1,20"], ("omwu needs eta*beta <= 1", "got eta*beta = 2")),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_the_cli_refuses_a_value_outside_the_domain_before_any_compute(argv, contains, tmp_path, capsys):
    _refused(["run", *argv], tmp_path, capsys, *contains)


def test_a_value_inside_the_domain_passes_the_check(tmp_path):
    from alignjax.registry import EXPERIMENTS
    from alignjax.sweep import make_grid

    exp = EXPERIMENTS.get("dpo-bandit")
    cfg = {**exp.config, "loss": "cdpo"}
    exp.check(cfg, make_grid(exp.hparams_for(cfg), {"cdpo.eps": [0.0, 0.25, 0.499]}).hparams)
    with pytest.raises(ValueError, match="missing hyperparameters \\['cdpo.eps'\\]"):  # built from the base only
        exp.check(cfg, make_grid(exp.hparams).hparams)


def test_game_losses_declare_the_domains_the_sampled_dynamics_and_validate_hparams_use():
    """Each sampled dynamic's domains are its game loss's (declared once, in GAME_LOSSES) and the learning
    rate's; ``validate_hparams`` refuses with the same one-line message as the domain."""
    from alignjax.dynamics.sampled import LEARNING_RATE, LEARNING_RATE_IPO1, validate_hparams

    for e in _builtin(GAME_LOSSES):
        assert set(e.domains) == set(e.obj.hparams), e.name
    for e in _builtin(DYNAMICS):
        if e.meta.get("kind") == "sampled":
            game = GAME_LOSSES.entry(e.meta["loss"])
            lr = LEARNING_RATE_IPO1 if e.meta["loss"] == "online_ipo_1" else LEARNING_RATE  # a square loss: lr <= N/4
            assert e.domains == {**game.domains, "learning_rate": lr}, e.name
    with pytest.raises(ValueError, match=re.escape("online_ipo_1 needs learning_rate in (0, 0.5]")):
        validate_hparams("online_ipo_1", {"beta": 1.0, "learning_rate": 10.0})
    with pytest.raises(ValueError, match=re.escape("nash_md_pg needs mixture in [0, 1]; got mixture = 1.5")):
        validate_hparams("nash_md_pg", {"beta": 1.0, "learning_rate": 0.1, "mixture": 1.5})
    with pytest.raises(ValueError, match=re.escape("xpo needs learning_rate > 0")):
        validate_hparams("xpo", {"beta": 1.0, "learning_rate": 0.0, "alpha": 0.1})
    with pytest.raises(ValueError, match="missing hyperparameter 'alpha'"):
        validate_hparams(GAME_LOSSES["xpo"], {"beta": 1.0, "learning_rate": 0.1})
