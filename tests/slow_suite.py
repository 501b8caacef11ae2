"""A script for the signal tests and ``benchmarks/faults.py``: registers the suite
``test-slow-suite`` (a table, a quick first stage, then a stage that computes for about a
minute in one jit call) and runs the CLI with the script's arguments.

    python tests/slow_suite.py reproduce test-slow-suite --out DIR [...]

``SLOW_SUITE_SPIN=N`` sets the second stage's loop length (default 1e10: about a minute on one core
at ~6 ns per iteration).
JAX is imported inside the stages, so that (as with the ``alignjax`` command) the CLI's
signal handling is in place a few tens of milliseconds after the interpreter starts.
"""

import os
import sys

from alignjax.cli import main
from alignjax.registry import SUITES

SPIN = int(float(os.environ.get("SLOW_SUITE_SPIN", "1e10")))


def _spin():
    import jax
    import jax.numpy as jnp

    inner, outer = min(SPIN, 10**8), max(1, SPIN // 10**8)  # int32 loop counters: nest past 1e8

    def body(i, v):
        return v * 0.999999 + 1e-6

    f = jax.jit(lambda x: jax.lax.fori_loop(0, outer, lambda j, v: jax.lax.fori_loop(0, inner, body, v), x))
    return {"v": f(jnp.float32(1.0))}


def slow(ctx):
    """The suite: a table, stage ``first`` (instant), stage ``second`` (long), one claim."""
    import numpy as np

    from alignjax.results import claim

    ctx.write_csv("table.csv", [{"x": 1.0}])
    ctx.stage("first", lambda: {"x": np.arange(3.0)})
    second = ctx.stage("second", _spin)
    return [claim("c", "the loop ends", "test", "-", float(second["v"]), True)]


if __name__ == "__main__":
    SUITES.register("test-slow-suite", slow, meta={"description": "test only"}, replace=True)
    sys.exit(main(sys.argv[1:]))
