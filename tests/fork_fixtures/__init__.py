"""Fork fixtures: modules a research fork could drop into ``experiments/``, kept here so that the
whole default test run can be executed WITH them registered.

* :mod:`fork_fixtures.my_optimistic`: issue 27's exact dynamic with a hyperparameter of its own
  (``lam``), verbatim; it broke ``test_results_do_not_depend_on_device_count`` (a grid built from
  the experiment's base ``hparams`` lacked ``my-optimistic.lam``).
* :mod:`fork_fixtures.my_margin_loss`: a loss with a hyperparameter of its own (``delta``), declared
  by a plain float like most forks do.

``ALIGNJAX_FORK_FIXTURES=1 python -m pytest -q -n 2`` runs the default suite with both registered:
``tests/conftest.py`` names their files in ``ALIGNJAX_PLUGINS`` (imported by
:func:`alignjax.registry.load_plugins`), so subprocesses the tests start (``alignjax run ...`` on 1
and 4 devices) register them too, whatever their ``PYTHONPATH``.

The deliberately broken variants (:mod:`fork_fixtures.broken_loss`, :mod:`fork_fixtures.broken_dynamic`)
are never loaded that way: ``tests/test_fork_fixtures.py`` registers them for one test each and
removes them, to show that the domain probes name the entry, the hyperparameter and the value.
"""

from pathlib import Path

GOOD = ("fork_fixtures.my_optimistic", "fork_fixtures.my_margin_loss")
BROKEN = ("fork_fixtures.broken_loss", "fork_fixtures.broken_dynamic")
ENTRIES = {"fork_fixtures.my_optimistic": ("dynamics", "my-optimistic"),
           "fork_fixtures.my_margin_loss": ("loss", "my_margin_dpo"),
           "fork_fixtures.broken_loss": ("loss", "broken_nan_above_one"),
           "fork_fixtures.broken_dynamic": ("dynamics", "broken-optimistic")}


def fixture_file(module: str) -> str:
    """The absolute path of a fixture module's file (``fork_fixtures.my_optimistic`` -> ``.../my_optimistic.py``)."""
    return str(Path(__file__).resolve().parent / (module.rsplit(".", 1)[1] + ".py"))
