"""Every declared claim says where its threshold comes from, and the place exists (claims contract v3).

The contract asks that a check's threshold come from "the paper's number, or a derivation in
docs/". A claim's ``check.origin`` passes when it cites a place in a paper (it names a section,
table, figure, theorem, equation, appendix or the abstract) or when it points to a section of a
``docs/`` page (``docs/FILE.md#anchor``) that exists, the anchor computed from the page's headings
as GitHub computes it. Every ``docs/...md#anchor`` an origin names must resolve, whatever else the
origin says. So a new claim cannot land with an origin that points nowhere, and renaming a
section of ``docs/thresholds.md`` breaks the test instead of the link.
"""

import re
from pathlib import Path

import pytest

from alignjax.registry import SUITES

ROOT = Path(__file__).resolve().parents[1]
PAPER_PLACES = ("Sec.", "Table", "Fig.", "Thm", "Eq.", "abstract", "§", "App.")
DOCS_REF = re.compile(r"docs/([\w./-]+?\.md)#([\w-]+)")


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped (letters, digits,
    ``_``, ``-`` and spaces kept), spaces to ``-``; a repeated anchor gets ``-1``, ``-2``, ...
    Headings inside fenced code blocks are not headings."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link's text, not its target
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def origin_problems(origin: str) -> list[str]:
    """Why ``origin`` fails the rule (empty when it passes)."""
    problems, refs = [], DOCS_REF.findall(origin)
    for name, anchor in refs:
        page = ROOT / "docs" / name
        if not page.is_file():
            problems.append(f"docs/{name} does not exist")
        elif anchor not in github_anchors(page.read_text(encoding="utf-8")):
            problems.append(f"docs/{name} has no section #{anchor}")
    if not refs and not any(p in origin for p in PAPER_PLACES):
        problems.append(f"cites no paper place ({', '.join(PAPER_PLACES)}) and no docs/FILE.md#anchor")
    return problems


def _declaring_suites():
    return [n for n in SUITES.names() if SUITES.entry(n).meta.get("claims")]


@pytest.mark.parametrize("name", _declaring_suites())
def test_every_origin_cites_a_paper_place_or_an_existing_docs_section(name):
    bad = {s.id: origin_problems(s.check.origin) for s in SUITES.entry(name).meta["claims"]}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{name}: origins pointing nowhere: {bad}"


def test_the_suites_the_rule_covers_are_registered():
    names = set(_declaring_suites())
    assert {"nash-games", "atlas", "ranking-accuracy", "preference-models", "coverage", "dpo-bandit"} <= names


def test_every_claim_section_of_thresholds_md_is_a_declared_claim():
    """A ``###`` section of docs/thresholds.md is named by a claim id; a renamed or dropped claim leaves
    a stale section, which this catches."""
    ids = {s.id for n in _declaring_suites() for s in SUITES.entry(n).meta["claims"]}
    text = (ROOT / "docs" / "thresholds.md").read_text(encoding="utf-8")
    sections = re.findall(r"^### (\S+)\s*$", text, flags=re.M)
    assert sections and not set(sections) - ids, f"sections without a declared claim: {set(sections) - ids}"


def test_origins_that_point_to_thresholds_md_point_to_their_own_claim():
    for n in _declaring_suites():
        for s in SUITES.entry(n).meta["claims"]:
            for name, anchor in DOCS_REF.findall(s.check.origin):
                if name == "thresholds.md":
                    assert anchor == s.id, f"{n}/{s.id}: origin points to #{anchor}"


@pytest.mark.parametrize("heading, anchor", [
    ("## The authors' simulation budgets, in decades", "the-authors-simulation-budgets-in-decades"),
    ("### 6.1 Diverse and non-transitive preferences: MaxMin-RLHF", "61-diverse-and-non-transitive-preferences-maxmin-rlhf"),
    ("### `egpo-lowest-gap-every-beta`", "egpo-lowest-gap-every-beta"),
    ("# Notes [see here](x.md)", "notes-see-here"),
])
def test_github_anchors(heading, anchor):
    assert anchor in github_anchors(heading)
    assert github_anchors("# a\n# a\n") == {"a", "a-1"}
    assert github_anchors("```\n# not a heading\n```\n") == set()


@pytest.mark.parametrize("origin, ok", [
    ("Table 1: the smallest min", True),
    ("NLHF Thm 1", True),
    ("docs/thresholds.md#gpm-fits-cycles: twice the expected shortfall", True),
    ("docs/thresholds.md#no-such-section: x", False),
    ("docs/no_such_page.md#x: y", False),
    ("docs/thresholds.md#no-such-section, Sec. 3", False),  # a docs reference must resolve even beside a paper place
    ("v2's factor 100, fixed before v2's first run", False),
    ("derivation in experiments/nash_games.py (docstring)", False),
])
def test_origin_rule(origin, ok):
    assert (origin_problems(origin) == []) is ok
