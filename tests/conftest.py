"""Test-wide JAX settings: strict rank promotion catches silent broadcasting bugs; the
persistent compilation cache (see alignjax.compile_cache) makes a second run compile less.

``ALIGNJAX_FORK_FIXTURES=1`` runs the whole suite with the fork fixtures of
``tests/fork_fixtures/`` registered (a dynamic and a loss with hyperparameters of their own): their
files are named in ``ALIGNJAX_PLUGINS`` (imported by ``alignjax.registry.load_plugins`` at the
first registry lookup, i.e. before collection), which subprocesses started by tests inherit, so
they register them too, whatever their ``PYTHONPATH``.

The ``alignjax`` commands that tests start run on one CPU device (``ALIGNJAX_CPU_DEVICES=1``, the
count ``--cpu-devices auto`` takes): two pytest workers already fill the cores, and the
invariance over device counts has tests of its own (``tests/test_cpu_devices.py``, the 4-device
runs, whose ``XLA_FLAGS`` take precedence).
"""

import os
import sys
from pathlib import Path

import jax

from alignjax.compile_cache import enable

TESTS = str(Path(__file__).resolve().parent)


def _with_fork_fixtures() -> None:
    from fork_fixtures import GOOD, fixture_file

    plugins = [m for m in os.environ.get("ALIGNJAX_PLUGINS", "").split(",") if m.strip()]
    os.environ["ALIGNJAX_PLUGINS"] = ",".join([*plugins, *(f for f in map(fixture_file, GOOD) if f not in plugins)])


if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
if os.environ.get("ALIGNJAX_FORK_FIXTURES", "") not in ("", "0"):
    _with_fork_fixtures()

os.environ.setdefault("ALIGNJAX_CPU_DEVICES", "1")
jax.config.update("jax_numpy_rank_promotion", "raise")
enable()
