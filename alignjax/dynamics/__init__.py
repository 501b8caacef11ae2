"""Preference-game dynamics: exact tabular updates and sampled (loss-driven) algorithms.

* :mod:`alignjax.dynamics.exact` — full-information tabular rules (OMD/INPO, Nash-MD, EGPO,
  OMWU, MPO, MWU/SPPO, BT-RLHF): factories of ``(init, update)`` pairs taking a mapping of
  hyperparameters, registered in ``alignjax.registry.DYNAMICS`` with ``meta["kind"] == "exact"``;
  :func:`exact_dynamics` builds one (``name, **static``); :func:`simulate` runs any of them
  through the engine, batched over games and hyperparameters (one compile);
  :func:`check_hparams` applies an entry's declared hyperparameter condition (e.g.
  ``eta * beta <= 1`` for omd, nash-md, egpo, omwu) and raises ``ValueError`` before any compute.
* :mod:`alignjax.dynamics.sampled` — loss-driven algorithms on policy parameters.
"""

from alignjax.dynamics.base import (  # noqa: F401
    ExactDynamics, ExactState, check_hparams, check_static, exact_dynamics, exact_names, simulate)
from alignjax.dynamics import exact, sampled  # noqa: F401  (importing registers the algorithms)
