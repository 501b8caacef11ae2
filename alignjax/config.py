"""Parsing command-line overrides (``--set k=v``) and sweep specs (``--sweep k=...``).

All parsing happens before any compute and raises ``ValueError`` with one clear line.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["parse_assignment", "coerce", "apply_overrides", "parse_sweep", "MAX_SWEEP_VALUES"]

# the most values one ``--sweep`` axis may have: checked from the spec, before anything is allocated
MAX_SWEEP_VALUES = 1_000_000


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``"key=value"``; ``ValueError`` if malformed."""
    if "=" not in text:
        raise ValueError(f"malformed override {text!r}: expected key=value")
    key, value = text.split("=", 1)
    key, value = key.strip(), value.strip()
    if not key or not value:
        raise ValueError(f"malformed override {text!r}: expected key=value")
    return key, value


def coerce(key: str, value: str, default: Any) -> Any:
    """Parse ``value`` as the type of ``default`` (bool, int, float or str)."""
    try:
        if isinstance(default, bool):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            f = float(value)
            if not math.isfinite(f):
                raise ValueError
            return f
    except ValueError:
        raise ValueError(f"bad value for {key}: {value!r} is not a valid {type(default).__name__}") from None
    return value


def apply_overrides(config: Mapping[str, Any], hparams: Mapping[str, float],
                    assignments: list[str], expand: Any = None) -> tuple[dict, dict]:
    """Apply ``key=value`` strings to copies of ``(config, hparams)``; unknown keys are errors.

    ``expand(config, hparams) -> (config, hparams)`` (an experiment's
    :meth:`~alignjax.experiment.Experiment.expand`) adds the settings of the components the
    config chooses: the assignments to the base settings (e.g. ``loss=simpo``) are applied
    first, then the expansion, then every assignment (e.g. ``simpo.gamma=0.3``).
    """
    config, hparams = dict(config), dict(hparams)
    if expand is not None:
        base = {}
        for text in assignments:
            key, value = parse_assignment(text)
            if key in config:
                base[key] = coerce(key, value, config[key])
        config, hparams = expand({**config, **base}, hparams)
    for text in assignments:
        key, value = parse_assignment(text)
        if key in config:
            config[key] = coerce(key, value, config[key])
        elif key in hparams:
            hparams[key] = coerce(key, value, float(hparams[key]))
        else:
            known = ", ".join(sorted([*config, *hparams]))
            raise ValueError(f"unknown setting {key!r}; known: {known}")
    return config, hparams


def parse_sweep(text: str, hparams: Mapping[str, float]) -> tuple[str, np.ndarray]:
    """Parse a sweep axis: ``key=v1,v2,...`` or ``key=lo:hi:n`` (linear) or ``key=lo:hi:n:log``.

    Only continuous hyperparameters can be swept (static settings change the program). The
    count ``n`` may be written in float notation when it is a whole number (``1e3``); it must
    lie in ``[1, MAX_SWEEP_VALUES]``, checked before any value is computed (the product over
    axes and seeds is checked by :func:`alignjax.sweep.check_grid_size` before the grid is built).
    """
    key, spec = parse_assignment(text)
    if key not in hparams:
        known = ", ".join(sorted(hparams))
        raise ValueError(f"cannot sweep {key!r}: not a continuous hyperparameter; sweepable: {known}")
    bad = ValueError(f"bad sweep spec {text!r}: use key=v1,v2,... or key=lo:hi:n[:log] (log needs lo, hi > 0)")
    if ":" not in spec:
        try:
            values = np.array([float(v) for v in spec.split(",")])
        except ValueError:
            raise bad from None
    else:
        try:
            lo, hi, n, log = _range(spec)
        except ValueError:
            raise bad from None
        if n > MAX_SWEEP_VALUES:  # from the spec alone: nothing is allocated yet
            raise ValueError(f"bad sweep spec {text!r}: {n:.3g} values, more than the {MAX_SWEEP_VALUES} one axis "
                             "may have; lower n")
        values = np.geomspace(lo, hi, n) if log else np.linspace(lo, hi, n)
    if not np.all(np.isfinite(values)):  # nan/inf given, or e.g. -1e308:1e308 overflows in between
        raise bad
    return key, values


def _range(spec: str) -> tuple[float, float, int, bool]:
    """``(lo, hi, n, log)`` of ``lo:hi:n[:log|:lin]``; ``ValueError`` when malformed."""
    parts = spec.split(":")
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("log", "lin")):
        raise ValueError(spec)
    lo, hi, n = float(parts[0]), float(parts[1]), _count(parts[2])
    log = len(parts) == 4 and parts[3] == "log"
    if n < 1 or not (math.isfinite(lo) and math.isfinite(hi)) or (log and (lo <= 0 or hi <= 0)):
        raise ValueError(spec)
    return lo, hi, n, log


def _count(text: str) -> int:
    """A sweep's value count: an integer, or a whole number in float notation (``3e8``); ``ValueError`` else."""
    try:
        return int(text)
    except ValueError:
        f = float(text)  # ValueError when not a number
        if not f.is_integer():  # 2.5, inf, nan
            raise ValueError(f"not a whole number: {text!r}") from None
        return int(f)
