"""The atlas suite (experiments/atlas.py): a thin consumer of the registries and the engine.

Checked here: the cyclic tournament is a cyclic game with the uniform Nash equilibrium; the
contrastive test separates margin-only losses from those with a likelihood term; members of a
family's one program do not interact (a member's numbers are those of a family of one); the exact
family reproduces :func:`alignjax.dynamics.simulate`; a newly registered loss gets its row with no
change to the suite; the report names the commit, the date and every algorithm. The claims' own
verdicts at the quick setting are asserted under ``slow``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignjax import dynamics, games
from alignjax.registry import LOSSES, load_plugins
from alignjax.results import SuiteContext

load_plugins()
from alignjax_experiments import atlas as A  # noqa: E402


def test_cyclic_tournament_is_a_cyclic_game_with_the_uniform_equilibrium():
    P = A.cyclic_tournament(5, 0.4)
    np.testing.assert_allclose(P + P.T, np.ones((5, 5)), atol=0)
    # every response is beaten by some other: no Condorcet winner
    assert all(np.any(P[:, y] > 0.5) for y in range(5))
    assert float(games.exploitability(P, np.full(5, 0.2))) == pytest.approx(0.0, abs=1e-7)
    assert float(games.exploitability(P, np.eye(5)[0])) == pytest.approx(2 * 0.4, abs=1e-6)
    with pytest.raises(ValueError, match="odd"):
        A.cyclic_tournament(4, 0.4)


def test_contrastive_losses_are_exactly_the_margin_only_ones():
    for name in ("dpo", "ipo", "cdpo", "simpo", "slic"):
        assert A.is_contrastive(LOSSES.entry(name)), name
    assert not A.is_contrastive(LOSSES.entry("rpo"))  # DPO + NLL of the chosen response


def _tiny_bandit_leaves(cfg, rows=(0, 2)):
    leaves, labels = A.bandit_rows(cfg)
    return {k: v[list(rows)] for k, v in leaves.items()}


def test_members_of_one_family_program_do_not_interact():
    cfg = {**A.settings("smoke"), "num_steps": 40}
    leaves = _tiny_bandit_leaves(cfg)
    X, N = cfg["prompts"], cfg["responses"]
    ents = [LOSSES.entry("dpo"), LOSSES.entry("ipo")]

    def run(es):
        lv = {**leaves, **A._leaves_for(es, {}, len(leaves["beta"]))}
        return A._run(A.family_program("loss", es, cfg, X, N, A.bandit_observe, 40), lv, 40)

    both, alone = run(ents), run(ents[:1])
    for k in both:
        np.testing.assert_allclose(both[k][:, 0], alone[k][:, 0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(both["suboptimality"][:, 0], both["suboptimality"][:, 1])  # dpo and ipo differ


def test_exact_family_reproduces_simulate():
    cfg = A.settings("smoke")
    leaves, _ = A.game_rows(cfg)
    steps = 30
    ents = [e for e in A.members("exact") if e.name in ("egpo", "nash-md")]
    lv = {**leaves, **A._leaves_for(ents, {}, len(leaves["beta"]))}

    def observe(table, h):
        return {"pi": jnp.exp(table)[0]}

    out = A._run(A.game_dynamics_program("exact", ents, 1, cfg["game_responses"], observe, num_steps=steps,
                                         log_every=steps), lv, steps)
    for j, e in enumerate(ents):
        for row in range(len(leaves["beta"])):
            P, lr = leaves["P"][row, 0], leaves["log_pi_ref"][row, 0]
            traj = dynamics.simulate(e.name, P, np.exp(lr), beta=float(leaves["beta"][row]),
                                     eta=float(lv[f"{e.name}.eta"][row]), num_steps=steps, log_every=steps,
                                     pi0=np.exp(lr))
            np.testing.assert_allclose(out["pi"][row, ..., j], np.asarray(traj)[-1], rtol=2e-5, atol=1e-6)


def test_a_newly_registered_loss_gets_a_row(tmp_path):
    name = "atlas_test_scaled_dpo"

    @LOSSES.register(name, hparams={"scale": 2.0})
    def scaled(pc, pr, rc, rr, *, beta, scale):
        return -jax.nn.log_sigmoid(scale * beta * ((pc - rc) - (pr - rr)))

    try:
        assert name in [e.name for e in A.members("loss")]
        cfg = {**A.settings("smoke"), "num_steps": 20}
        leaves = _tiny_bandit_leaves(cfg, rows=(0,))
        out = A.run_families(leaves, cfg, cfg["prompts"], cfg["responses"], A.bandit_observe, 20)
        names = [str(n) for n in out["loss"]["names"]]
        assert name in names
        assert np.all(np.isfinite(out["loss"]["suboptimality"][:, names.index(name)]))
    finally:
        LOSSES._entries.pop(name, None)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas") / "atlas"
    ctx = SuiteContext(out_dir=out, smoke=True, progress=False)
    claims = A.reproduce(ctx)
    return out, claims


def test_report_names_commit_date_and_every_algorithm(smoke_run):
    out, claims = smoke_run
    md = (out / "atlas.md").read_text()
    assert "at commit `" in md and " on 20" in md  # the commit and the ISO date of the run
    for fam in A.FAMILIES:
        for e in A.members(fam):
            if A._applies(e) is None:
                assert f"| {e.name} | {fam} |" in md, (fam, e.name)
    for c in claims:
        assert f"### {c.id}:" in md
    for png in ("ranking.png", "coverage.png", "games.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    rows = (out / "atlas.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(1 for f in A.FAMILIES for e in A.members(f) if A._applies(e) is None)


def test_paper_page_has_the_run_and_both_verdicts(smoke_run, tmp_path):
    from alignjax.results import summary_dict, write_json

    out, claims = smoke_run
    write_json(out / "summary.json", summary_dict("atlas", {}, 1.0, claims))
    page = A.paper(out, out)
    assert page.startswith("# The atlas") and "make atlas-paper" in page
    assert "## Quick and full agree" in page
    for c in claims:
        assert f"| {c.id} | {'holds' if c.holds else 'fails'} | {'holds' if c.holds else 'fails'} |" in page


@pytest.mark.slow
def test_quick_claims_hold(tmp_path):
    claims = A.reproduce(SuiteContext(out_dir=tmp_path / "atlas", quick=True, progress=False))
    assert [c.id for c in claims] == CLAIM_IDS
    for c in claims:
        assert c.holds, (c.id, c.measured)
        assert c.control["holds"] is False, (c.id, c.control)


CLAIM_IDS = ["contrastive-coverage", "offline-exploitable", "general-preference-reaches-nash",
             "ranking-below-idealized"]
HOLD_AT_SMOKE = ["contrastive-coverage", "offline-exploitable", "general-preference-reaches-nash"]  # ranking-below-idealized is statistical: one seed is not enough
MEETS_CLAIMS_CONTRACT = True
