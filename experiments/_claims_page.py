"""Markdown tables of contract-v3 claims for ``papers/*.md``, read from runs' ``summary.json``.

Not a suite (the leading underscore keeps :func:`alignjax.registry.load_plugins` from importing it as
one). Two tables:

* :func:`verdict_table`: per claim, the check, the subject and the control (value and 95% interval
  over units) and both verdicts, at the quick and the full setting, and the range of thresholds over
  which the full run's verdict would stay the same (:func:`threshold_range`);
* :func:`restated_table`: per claim of contract v2, its old statement, check and verdicts, the v3
  claim (its declared statement and check) with the verdicts measured now, and why it changed.

Every number comes from the summaries; only the v2 history (old statements, checks and verdicts) is
given by the caller, from the v2 page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence


def load_summary(folder) -> dict:
    """The ``summary.json`` of a suite's run folder."""
    return json.loads((Path(folder) / "summary.json").read_text())


def interval(m: Mapping | None) -> str:
    """``value [low, high] (n units)``; ``value (every unit of n)`` for an extreme over units (exact, its
    bounds shown where one is open); ``value`` alone where there is nothing to aggregate."""
    if not m:
        return "absent"
    v, lo, hi, n = float(m["value"]), float(m["low"]), float(m["high"]), int(m["units"])
    if m.get("interval") == "every unit" and n > 1:
        return f"{v:.4g} (every unit of {n})" if lo == hi else f"{v:.4g} [{lo:.4g}, {hi:.4g}] (every unit of {n})"
    return f"{v:.4g}" if n == 1 or lo == hi else f"{v:.4g} [{lo:.4g}, {hi:.4g}] ({n})"


def check_text(c: Mapping) -> str:
    """``metric op threshold`` of a check record."""
    return f"{c['metric']} {c['op']} {c['threshold']:g}"


def threshold_range(rec: Mapping) -> str:
    """The thresholds for which the full run's verdict stays what it is, read from the record alone.

    For ``metric > t`` (or ``>=``) the verdict is ``holds`` for every ``t`` below ``low``, ``fails`` for
    every ``t`` at or above ``high`` and ``inconclusive`` in between (mirrored for ``<``, ``<=``): how far a
    conventional threshold could move before the verdict changes.
    """
    c, m = rec["check"], rec["subject"]
    lo, hi, up = float(m["low"]), float(m["high"]), c["op"] in (">", ">=")
    v = rec["verdict"]
    if v == "holds":
        return f"holds for t {'<' if up else '>'} {lo if up else hi:.3g}"
    if v == "fails":
        return f"fails for t {'>' if up else '<'} {hi if up else lo:.3g}"
    return f"inconclusive for t in [{lo:.3g}, {hi:.3g}]"


def _by_id(summary: Mapping | None) -> dict:
    return {c["id"]: c for c in (summary or {}).get("claims", [])}


def verdict_table(quick: Mapping, full: Mapping) -> list[str]:
    """Markdown lines: one row per claim of the full run, the quick run beside it."""
    q, f = _by_id(quick), _by_id(full)
    lines = ["| claim | check (threshold t) | subject, quick | subject, full | verdict quick / full | "
             "verdict for other t (full) | control, quick | control, full | control verdict quick / full |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cid, cf in f.items():
        cq = q.get(cid, {})
        lines.append(
            f"| `{cid}` | {check_text(cf['check'])} | {interval(cq.get('subject'))} | {interval(cf['subject'])} | "
            f"{cq.get('verdict', 'absent')} / {cf['verdict']} | {threshold_range(cf)} | {interval(cq.get('control'))} | "
            f"{interval(cf['control'])} | {cq.get('control', {}).get('verdict', 'absent')} / "
            f"{cf['control']['verdict']} |")
    return lines


def agreement_text(quick: Mapping, full: Mapping) -> str:
    """One sentence, computed: whether quick and full give the same verdicts (subject and control), and for
    every inconclusive verdict how many units the framework estimates would resolve it."""
    q, f = _by_id(quick), _by_id(full)
    differ = [cid for cid, c in f.items()
              if (q.get(cid, {}).get("verdict"), q.get(cid, {}).get("control", {}).get("verdict"))
              != (c["verdict"], c["control"]["verdict"])]
    text = ("Quick and full give the same verdict on every claim and control." if not differ else
            "Quick and full differ on: " + ", ".join(f"`{c}`" for c in differ) + ".")
    both = [cid for cid, c in f.items() if c["verdict"] == c["control"]["verdict"] == "holds"]
    if both:
        text += (" Not discriminated at full (the subject holds and so does its control: the check does not tell "
                 "them apart, so this 'holds' is weak evidence): " + ", ".join(f"`{c}`" for c in both) + ".")
    for scale, runs in (("quick", q), ("full", f)):
        for cid, c in runs.items():
            if c["verdict"] == "inconclusive":
                need = c.get("units_to_resolve")
                text += (f" `{cid}` is inconclusive at {scale} ({c['subject']['units']} units; about "
                         f"{need} would resolve it if the interval shrank as 1/sqrt(units))." if need else
                         f" `{cid}` is inconclusive at {scale}.")
    return text


def history_lines(full: Mapping) -> list[str]:
    """Markdown bullets: every check changed after a run, with the old check's verdict on the full run."""
    out, extremes, why = [], [], ""
    for c in full.get("claims", []):
        for h in c.get("history", []):
            old = h["old_check"]
            on = f" (on its own metric: {interval(h['old_subject'])})" if "old_subject" in h else ""
            if old == c["check"]:  # the same check, another statistic (claims.every_unit)
                extremes.append(f"`{c['id']}` (bootstrap {interval(h.get('old_subject'))}: {h['old_verdict']}; "
                                f"now {c['verdict']})")
                why = h["why"]
                continue
            out.append(f"- `{c['id']}`: was `{check_text(old)}` (commit {h['commit']}; the change made the check "
                       f"{'easier' if h['easier'] else 'not easier'}); the old check's verdict at full: "
                       f"**{h['old_verdict']}**{on}. Why: {h['why']}")
    if extremes:
        out.append("- Extremes over units, judged unit by unit since 2026-12-07 (same checks; full run): "
                   + "; ".join(extremes) + f". Why: {why}")
    return out


def restated_table(rows: Sequence[Mapping], quick: Mapping, full: Mapping) -> list[str]:
    """Markdown lines of the table "claims restated in v3".

    ``rows``: one mapping per v2 claim with ``id``, ``old_statement``, ``old_check``, ``old_verdict``
    (the v2 page's, quick and full), ``new_id`` (the v3 claim, or None when it moved to a unit test),
    ``new`` (where the v3 claim is not a run: e.g. the unit test's name) and ``why``.
    """
    q, f = _by_id(quick), _by_id(full)
    lines = ["| v2 claim | old statement and check | old verdict (v2) | v3 statement and check | "
             "new verdict quick / full (control) | why |", "|---|---|---|---|---|---|"]
    for r in rows:
        new_id = r.get("new_id")
        if new_id and new_id in f:
            cf, cq = f[new_id], q.get(new_id, {})
            new = f"`{new_id}`: {cf['statement']} Check: `{check_text(cf['check'])}`."
            verdict = (f"{cq.get('verdict', 'absent')} / {cf['verdict']} (control "
                       f"{cq.get('control', {}).get('verdict', 'absent')} / {cf['control']['verdict']})")
        else:
            new, verdict = r.get("new", "removed"), "n/a (no run)"
        lines.append(f"| `{r['id']}` | {r['old_statement']} Check: {r['old_check']} | {r['old_verdict']} | {new} | "
                     f"{verdict} | {r['why']} |")
    return lines


def escaped(x):
    """``x`` with every ``|`` in its strings written ``\\|`` (a markdown table cell must not contain a bare pipe)."""
    if isinstance(x, dict):
        return {k: escaped(v) for k, v in x.items()}
    if isinstance(x, list):
        return [escaped(v) for v in x]
    return x.replace("|", "\\|") if isinstance(x, str) else x


def suite_tables(full_dir, quick_dir, restated: Sequence[Mapping]) -> str:
    """A suite page's claims sections from a full and a quick run's ``summary.json`` (pipes escaped): the
    verdict table, the agreement line, the checks changed after a run, and "claims restated in v3"."""
    full, quick = escaped(load_summary(full_dir)), escaped(load_summary(quick_dir))
    lines = [*verdict_table(quick, full), "", agreement_text(quick, full), "", *history_lines(full), "",
             "### Claims restated in v3", "", *restated_table(escaped(list(restated)), quick, full)]
    return "\n".join(lines) + "\n"
