"""A check shared by the suites' control tests (claims contract v3)."""


def assert_controls_are_runs(first: dict, second: dict, ids) -> None:
    """Every claim's control is measured from data, not typed in: it changes when the data it is
    computed from change (``first`` and ``second``: ``{id: record}`` from two different draws of
    the stage data), and it is never the subject's own number."""
    for cid in ids:
        assert first[cid]["control"]["value"] != second[cid]["control"]["value"], cid
        assert first[cid]["control"]["value"] != first[cid]["subject"]["value"], cid
