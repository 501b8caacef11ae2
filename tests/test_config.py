"""Parsing ``--sweep`` specs and ``--set`` overrides (alignjax.config): values, types, refusals."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignjax.config import apply_overrides, coerce, parse_assignment, parse_sweep

HP = {"beta": 0.1, "eta": 1.0}
# finite bounds whose difference cannot overflow (see the report: lo:hi:n does not check it)
bound = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)
count = st.integers(min_value=1, max_value=40)


@settings(max_examples=25, deadline=None)
@given(lo=bound, hi=bound, n=count)
def test_linear_range_is_linspace(lo, hi, n):
    key, values = parse_sweep(f"beta={lo!r}:{hi!r}:{n}", HP)
    assert key == "beta"
    np.testing.assert_array_equal(values, np.linspace(lo, hi, n))
    _, lin = parse_sweep(f"beta={lo!r}:{hi!r}:{n}:lin", HP)
    np.testing.assert_array_equal(lin, values)


@settings(max_examples=25, deadline=None)
@given(lo=positive, hi=positive, n=count)
def test_log_range_is_geomspace(lo, hi, n):
    key, values = parse_sweep(f"eta={lo!r}:{hi!r}:{n}:log", HP)
    assert key == "eta"
    np.testing.assert_array_equal(values, np.geomspace(lo, hi, n))


def test_log_range_is_not_linear():
    _, values = parse_sweep("beta=0.01:100:5:log", HP)
    np.testing.assert_allclose(values, [0.01, 0.1, 1.0, 10.0, 100.0], rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(bound, min_size=1, max_size=8))
def test_comma_list_keeps_values_and_order(xs):
    _, values = parse_sweep("beta=" + ",".join(repr(x) for x in xs), HP)
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, np.array(xs))


def test_single_value_and_spaces():
    np.testing.assert_array_equal(parse_sweep("beta=0.5", HP)[1], [0.5])
    np.testing.assert_array_equal(parse_sweep(" beta = 1 : 2 : 3 ", HP)[1], [1.0, 1.5, 2.0])


@pytest.mark.parametrize("spec", [
    "beta=1:2",            # no count
    "beta=1:2:3:4:5",      # too many parts
    "beta=1:2:3:cubic",    # unknown scale
    "beta=1:2:0",          # no values
    "beta=1:2:-3",
    "beta=1:2:2.5",        # count not an integer
    "beta=a:2:3",
    "beta=1:inf:3",
    "beta=nan:2:3",
    "beta=-1:2:3:log",     # log needs lo, hi > 0
    "beta=1:0:3:log",
    "beta=0:1:3:log",
    "beta=0.1,nan",
    "beta=0.1,inf",
    "beta=0.1,,0.2",
    "beta=0.1,x",
])
def test_bad_sweep_spec_raises(spec):
    with pytest.raises(ValueError, match="bad sweep spec"):
        parse_sweep(spec, HP)


@pytest.mark.parametrize("spec, match", [
    ("gamma=1,2", "cannot sweep 'gamma'"),
    ("beta", "malformed override"),
    ("beta=", "malformed override"),
    ("=1", "malformed override"),
])
def test_unknown_or_malformed_sweep_raises(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_sweep(spec, HP)


CONFIG = {"num_steps": 100, "pairs": "all", "verbose": False}


@pytest.mark.parametrize("text, key, value", [
    ("verbose=true", "verbose", True), ("verbose=Yes", "verbose", True), ("verbose=on", "verbose", True),
    ("verbose=1", "verbose", True), ("verbose=FALSE", "verbose", False), ("verbose=no", "verbose", False),
    ("verbose=off", "verbose", False), ("verbose=0", "verbose", False),
    ("num_steps=250", "num_steps", 250), ("num_steps= 7 ", "num_steps", 7),
    ("pairs=sampled", "pairs", "sampled"), ("pairs=a=b", "pairs", "a=b"),
])
def test_overrides_coerce_to_the_default_type(text, key, value):
    config, hparams = apply_overrides(CONFIG, HP, [text])
    assert config[key] == value and type(config[key]) is type(value)
    assert hparams == HP
    assert {k: v for k, v in config.items() if k != key} == {k: v for k, v in CONFIG.items() if k != key}


def test_hparam_overrides_are_floats_and_inputs_are_not_mutated():
    config_in, hp_in = dict(CONFIG), {"beta": 0.1, "eta": 2}  # an int default still gives floats
    config, hparams = apply_overrides(config_in, hp_in, ["beta=3", "eta=1e-3", "beta=0.25"])
    assert hparams == {"beta": 0.25, "eta": 0.001}
    assert all(type(v) is float for v in hparams.values())
    assert config == CONFIG
    assert config_in == CONFIG and hp_in == {"beta": 0.1, "eta": 2}


@pytest.mark.parametrize("text, match", [
    ("verbose=maybe", "bad value for verbose"),
    ("verbose=2", "bad value for verbose"),
    ("num_steps=2.5", "bad value for num_steps"),
    ("num_steps=true", "bad value for num_steps"),
    ("beta=abc", "bad value for beta"),
    ("beta=nan", "bad value for beta"),
    ("beta=inf", "bad value for beta"),
    ("beta=-inf", "bad value for beta"),
    ("gamma=1", "unknown setting 'gamma'"),
    ("beta", "malformed override"),
    ("beta=", "malformed override"),
])
def test_bad_overrides_raise(text, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(CONFIG, HP, [text])


def test_unknown_setting_lists_every_known_name():
    with pytest.raises(ValueError) as info:
        apply_overrides(CONFIG, HP, ["gamma=1"])
    assert str(info.value).endswith("known: " + ", ".join(sorted([*CONFIG, *HP])))


def test_parse_assignment_and_coerce():
    assert parse_assignment(" k = v=w ") == ("k", "v=w")
    assert coerce("x", "3", 1.5) == 3.0 and type(coerce("x", "3", 1.5)) is float
    assert coerce("x", "True", True) is True
    assert coerce("x", "3", "s") == "3"
