"""End-to-end quick run of the nash-games suite (slow: minutes on 2 shared cores)."""

import json

import pytest

from alignjax.registry import SUITES
from alignjax.results import SuiteContext, summary_dict, write_json

PART_A_IDS = {
    "egpo-exact-linear-rate", "nash-md-constant-step-plateaus", "which-stall-at-small-beta",
    "nash-md-theorem-bound", "mwu-last-iterate-cycles-average-converges", "optimistic-extragradient-last-iterate",
    "mpo-magnet-reset-converges", "bt-rlhf-exploitable-on-mixtures", "bt-rlhf-loses-to-nash-on-mixtures",
    "three-rater-bt-jumps-nash-continuous",
}


def test_suite_is_registered():
    assert "nash-games" in SUITES.names()


@pytest.mark.slow
def test_quick_suite_end_to_end(tmp_path):
    ctx = SuiteContext(out_dir=tmp_path, quick=True)
    claims = SUITES.get("nash-games")(ctx)
    write_json(tmp_path / "summary.json", summary_dict("nash-games", ctx.config, 0.0, claims))
    summary = json.loads((tmp_path / "summary.json").read_text())
    ids = [c["id"] for c in summary["claims"]]
    assert PART_A_IDS <= set(ids) and len(ids) == len(set(ids))
    for c in summary["claims"]:
        assert set(c) == {"id", "statement", "source", "paper_value", "measured", "holds", "note"}
        assert isinstance(c["holds"], bool) and c["statement"] and c["source"]
    # claims that hold by construction of the mathematics (not thresholds on rates)
    by_id = {c["id"]: c for c in summary["claims"]}
    assert by_id["nash-md-theorem-bound"]["holds"]
    assert by_id["three-rater-bt-jumps-nash-continuous"]["holds"]
    for name in ("egpo_exact_gap.png", "nash_md_theorem.png", "last_vs_average.png", "why_nlhf.png",
                 "egpo_exact_final.csv", "three_rater.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert "eta_mapping" in summary["config"]
