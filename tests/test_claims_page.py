"""experiments/_claims_page.py: the claims tables of papers/*.md, computed from summary records."""

import numpy as np
import pytest

from alignjax import claims as C
from alignjax_experiments import _claims_page as page


@pytest.mark.parametrize("op", [">", ">=", "<", "<="])
@pytest.mark.parametrize("per_unit", [[0.1, 0.2, 0.3, 0.25], [0.9, 1.1, 1.0, 1.05], [0.4, 0.6, 0.5, 0.55]])
def test_threshold_range_says_where_the_verdict_would_change(op, per_unit):
    """The range printed for a record is right: moving the threshold inside it keeps the verdict, crossing
    the interval's end changes it (recomputed by the framework)."""
    m = C.measure(per_unit)
    rec = C.evaluate(C.ClaimSpec("x", "s", "src", 1, "setting", C.Check("m", op, 0.5, "o"), "other run"), m,
                     C.measure(np.asarray(per_unit) + 1))
    text = page.threshold_range(rec)
    assert text.startswith(rec["verdict"])
    bound = float(text.split()[-1].strip("]")) if rec["verdict"] != "inconclusive" else None
    if bound is not None:
        inside = "<" in text.split("t")[1][:3]
        for t in (bound - 0.05, bound + 0.05):
            keeps = (t < bound) == inside
            again = C.verdict(C.Check("m", op, t, "o"), m)[0]
            assert (again == rec["verdict"]) == keeps, (text, t, again)


def test_verdict_table_has_one_row_per_full_claim_and_the_threshold_column():
    spec = C.ClaimSpec("a", "s", "src", 1, "setting", C.Check("m", ">", 0.0, "o"), "other run")
    full = {"claims": [C.evaluate(spec, C.measure([1.0, 2.0]), C.measure([-1.0, -2.0]))]}
    quick = {"claims": [C.evaluate(spec, C.measure([1.0, 3.0]), C.measure([-1.0, 1.0]))]}
    lines = page.verdict_table(quick, full)
    assert len(lines) == 3 and lines[0].count("|") == lines[2].count("|")
    assert "holds for t < 1" in lines[2] and "holds / holds" in lines[2]
