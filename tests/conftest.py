"""Test-wide JAX settings: strict rank promotion catches silent broadcasting bugs; the
persistent compilation cache (see alignjax.compile_cache) makes a second run compile less.

``ALIGNJAX_FORK_FIXTURES=1`` runs the whole suite with the fork fixtures of
``tests/fork_fixtures/`` registered (a dynamic and a loss with hyperparameters of their own): they
are named in ``ALIGNJAX_PLUGINS`` (imported by ``alignjax.registry.load_plugins`` at the first
registry lookup, i.e. before collection) and ``tests/`` joins ``PYTHONPATH``, so subprocesses
started by tests register them too.
"""

import os
import sys
from pathlib import Path

import jax

from alignjax.compile_cache import enable

TESTS = str(Path(__file__).resolve().parent)


def _with_fork_fixtures() -> None:
    from fork_fixtures import GOOD

    plugins = [m for m in os.environ.get("ALIGNJAX_PLUGINS", "").split(",") if m.strip()]
    os.environ["ALIGNJAX_PLUGINS"] = ",".join([*plugins, *(m for m in GOOD if m not in plugins)])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if TESTS not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([TESTS, *paths])


if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
if os.environ.get("ALIGNJAX_FORK_FIXTURES", "") not in ("", "0"):
    _with_fork_fixtures()

jax.config.update("jax_numpy_rank_promotion", "raise")
enable()
