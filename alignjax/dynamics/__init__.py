"""Preference-game dynamics: exact tabular updates and sampled (loss-driven) algorithms.

* :mod:`alignjax.dynamics.exact` — full-information tabular rules (OMD/INPO, Nash-MD, EGPO,
  OMWU, MPO, MWU/SPPO, BT-RLHF), ``(init, update)`` pairs registered in
  ``alignjax.registry.DYNAMICS`` with ``meta["kind"] == "exact"``;
  :func:`simulate` runs any of them batched over games and hyperparameters (one compile);
  :func:`check_hparams` applies an entry's declared hyperparameter condition (e.g.
  ``eta * beta <= 1`` for omd, nash-md, egpo, omwu) and raises ``ValueError`` before any compute.
* :mod:`alignjax.dynamics.sampled` — loss-driven algorithms on policy parameters.
"""

from alignjax.dynamics.base import ExactDynamics, ExactState, check_hparams, exact_names, simulate  # noqa: F401
from alignjax.dynamics import exact, sampled  # noqa: F401  (importing registers the algorithms)
