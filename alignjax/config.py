"""Parsing command-line overrides (``--set k=v``) and sweep specs (``--sweep k=...``).

All parsing happens before any compute and raises ``ValueError`` with one clear line.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

__all__ = ["parse_assignment", "coerce", "apply_overrides", "parse_sweep"]


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

    Only continuous hyperparameters can be swept (static settings change the program).
    """
    key, spec = parse_assignment(text)
    if key not in hparams:
        known = ", ".join(sorted(hparams))
        raise ValueError(f"cannot sweep {key!r}: not a continuous hyperparameter; sweepable: {known}")
    try:
        if ":" in spec:
            parts = spec.split(":")
            if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("log", "lin")):
                raise ValueError
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
            if n < 1 or not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError
            if len(parts) == 4 and parts[3] == "log":
                if lo <= 0 or hi <= 0:
                    raise ValueError
                values = np.geomspace(lo, hi, n)
            else:
                values = np.linspace(lo, hi, n)
            if not np.all(np.isfinite(values)):  # e.g. -1e308:1e308 overflows in between
                raise ValueError
        else:
            values = np.array([float(v) for v in spec.split(",")])
            if not np.all(np.isfinite(values)):
                raise ValueError
    except ValueError:
        raise ValueError(f"bad sweep spec {text!r}: use key=v1,v2,... or key=lo:hi:n[:log] "
                         "(log needs lo, hi > 0)") from None
    return key, values
