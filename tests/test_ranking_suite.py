"""The ranking-accuracy suite (Chen et al. 2024): its pieces, and the quick path end to end (slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alignjax import losses as L
from alignjax.metrics import ranking as rk
from alignjax.registry import SUITES
from alignjax.results import SuiteContext
from alignjax_experiments import ranking_accuracy as ra


def test_suite_is_registered():
    assert "ranking-accuracy" in SUITES.names()


def test_combined_loss_selects_each_registered_loss():
    k = jax.random.split(jax.random.key(0), 4)
    pc, pr, rc, rr = (-5.0 * jax.random.uniform(kk, (6,)) for kk in k)
    nc, nr = jnp.full(6, 3.0), jnp.full(6, 5.0)
    base = {"beta": jnp.float32(0.7), "gamma": jnp.float32(0.3), "eps": jnp.float32(0.1),
            "simpo_gamma": jnp.float32(0.5), "eta_sft": jnp.float32(0.005)}
    expected = {
        "dpo": L.dpo(pc, pr, rc, rr, beta=0.7), "ipo": L.ipo(pc, pr, rc, rr, beta=0.7),
        "cdpo": L.cdpo(pc, pr, rc, rr, beta=0.7, eps=0.1), "rdpo": L.rdpo(pc, pr, rc, rr, beta=0.7, eps=0.1),
        "simpo": L.simpo(pc, pr, beta=0.7, gamma=0.5, chosen_lengths=nc, rejected_lengths=nr),
        "rpo": L.rpo(pc, pr, rc, rr, beta=0.7, eta_sft=0.005), "gamma_dpo": L.gamma_dpo(pc, pr, rc, rr, beta=0.7, gamma=0.3),
    }
    for i, name in enumerate(ra.LOSS_NAMES):
        got = ra._combined_loss(pc, pr, rc, rr, nc, nr, {**base, "loss_id": jnp.int32(i)})
        np.testing.assert_allclose(got, expected[name], rtol=1e-6, err_msg=name)


def test_tabular_soft_label_dpo_reaches_the_thm31_optimum():
    rc = jnp.array([-3.0, -1.0, -2.0, -6.0])
    rr = jnp.array([-1.0, -2.0, -2.5, -1.0])
    alpha = jnp.array([0.6, 1.0, 0.8, 1.0])
    betas = np.array([0.1, 1.0, 5.0], np.float32)
    traj = np.asarray(ra._tabular_thm31(rc, rr, alpha, betas, 3000))
    learned = traj[:, -1, :, 0] - traj[:, -1, :, 1]
    target = np.asarray(rk.idealized_log_ratio(rc[None], rr[None], alpha[None], betas[:, None]))
    np.testing.assert_allclose(learned, target, rtol=1e-3, atol=1e-3)
    # step 0 is the reference
    np.testing.assert_allclose(traj[:, 0, :, 0] - traj[:, 0, :, 1], np.broadcast_to(rc - rr, (3, 4)))


def test_rows_cover_every_loss_once_per_beta():
    rows, hp = ra._rows(ra.SETTINGS["quick"])
    names = {r[0] for r in rows}
    assert names == set(ra.LOSS_NAMES)
    assert all(len(v) == len(rows) for v in hp.values())
    assert [r[1] for r in rows if r[0] == "dpo"] == list(ra.PAPER_BETAS)


@pytest.mark.slow
def test_preference_train_starts_at_the_reference_and_logs():
    from alignjax.policies.sequence import sequence_policy
    from alignjax.sft import make_preference_train

    pol = sequence_policy(5, 2, 4, dim=8, depth=1, heads=2)
    ref = pol.init(jax.random.key(0))
    x = jax.random.randint(jax.random.key(1), (16, 2), 1, 5)
    yc, mc = pol.sample(ref, x, jax.random.key(2))
    yr, mr = pol.sample(ref, x, jax.random.key(3))
    rc, _ = pol.sequence_logps(ref, x, yc, mc)
    rr, _ = pol.sequence_logps(ref, x, yr, mr)
    data = {"prompts": x, "chosen": yc, "chosen_mask": mc, "rejected": yr, "rejected_mask": mr,
            "ref_chosen": rc, "ref_rejected": rr}
    loss = lambda pc, pr, a, b, nc, nr, h: L.dpo(pc, pr, a, b, beta=h["beta"])
    train = make_preference_train(pol, loss, lambda h: optax.adam(h["learning_rate"]), num_steps=8,
                                  batch_size=8, log_every=4)
    hp = {"beta": jnp.array([0.1, 1.0]), "learning_rate": jnp.array([1e-2, 1e-2])}
    _, logged = jax.jit(jax.vmap(train, in_axes=(None, 0, None, None, 0)))(
        ref, hp, data, (data,), jax.random.split(jax.random.key(4), 2))
    pc, pr = logged["logps"][0]
    assert pc.shape == (2, 3, 16)
    np.testing.assert_allclose(pc[:, 0], np.broadcast_to(rc, (2, 16)), rtol=1e-5)
    h = (pc - rc[None, None]) - (pr - rr[None, None])
    assert float(jnp.mean(h[:, -1])) > float(jnp.mean(h[:, 0]))   # DPO raises the mean margin


def test_smoke_settings_shrink_quick_and_keep_its_theorem_checks():
    quick, smoke = ra.SETTINGS["quick"], ra.SETTINGS["smoke"]
    assert set(smoke) == set(quick) == set(ra.SETTINGS["full"])
    assert smoke["tabular_steps"] == quick["tabular_steps"]  # Thm 3.1 converges at every scale
    assert smoke["num_train"] < quick["num_train"] and smoke["sft_steps"] < quick["sft_steps"]
    assert min(smoke["betas"], key=lambda b: abs(b - 0.1)) == 0.1  # the flip claims read beta = 0.1
    rows, _ = ra._rows(smoke)
    assert {r[0] for r in rows} == set(ra.LOSS_NAMES)  # every loss still runs
    spe = smoke["num_train"] // smoke["batch_size"]
    assert spe % smoke["logs_per_epoch"] == 0 and smoke["online_steps"] >= 1


# ---- the quick setting (the numbers of papers/ranking_accuracy.md), run once for the tests below
QUICK_HOLDS = ("thm31-dpo-optimum", "thm41-flip-iff-loss-below-threshold", "ipo-flip-analogue",
               "flipped-pairs-are-easy")
"""Claims that hold at the quick budget and in the full run. The three theorem checks are exact at
any scale (also asserted at smoke scale in tests/test_suites_smoke.py). Not here:
``winrate-ranking-correlation`` (holds in quick, not in full: not robust with 70-110 noisy points)
and the three that do not hold in our setting (``alignment-gap``, ``few-misranked-pairs-flip``,
``alignment-gap-other-methods``; see the paper notes)."""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranking-quick")
    ctx = SuiteContext(out_dir=out, quick=True, progress=False)
    claims = ra.reproduce(ctx)
    return ctx, {c.id: c for c in claims}, [c.id for c in claims], out


@pytest.mark.slow
def test_quick_suite_end_to_end(quick_run):
    ctx, by_id, ids, out = quick_run
    assert len(ids) == len(set(ids)) >= 7
    assert by_id["thm41-flip-iff-loss-below-threshold"].measured["agreement"] == 1.0
    for f in ("alignment_gap.csv", "winrate_points.csv", "alignment_gap_and_flips.png", "winrate_vs_ranking.png"):
        assert (out / f).exists()
    assert ctx.config["offline_rows"] == len(ra._rows(ra.SETTINGS["quick"])[0])
    assert ctx.config["scale"] == "quick"


@pytest.mark.slow
@pytest.mark.parametrize("claim_id", QUICK_HOLDS)
def test_quick_claim_holds(quick_run, claim_id):
    c = quick_run[1][claim_id]
    assert c.holds, c.measured
