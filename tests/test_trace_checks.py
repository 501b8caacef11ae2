"""Issue 24, item 6: shape and dtype checks at trace time on the public math, and runnable examples.

The losses (:mod:`alignjax.losses`) and the game quantities (:mod:`alignjax.games`) check their inputs
with ``chex`` when they are traced (under ``jit`` too, at no cost per step): floating log-probabilities
that broadcast to one shape; a floating ``(..., N, N)`` game and ``(..., N)`` policies of the same ``N``.
Every example in their docstrings runs here (``doctest``), so the numbers they show are the numbers the
code computes.
"""

from __future__ import annotations

import doctest
import inspect

import jax
import jax.numpy as jnp
import pytest

from alignjax import games, losses

EXAMPLED_GAMES = ("win_rate", "kl", "regularized_best_response", "regularized_value", "regularized_gap",
                  "exploitability", "fixed_point_residual", "regularized_nash", "nash")


@pytest.mark.parametrize("module", [losses, games], ids=lambda m: m.__name__)
def test_the_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0, result


def test_every_loss_and_game_quantity_has_an_example():
    names = [n for n in losses.__all__ if inspect.isfunction(getattr(losses, n))] + list(EXAMPLED_GAMES)
    for n in names:
        fn = getattr(losses, n, None) or getattr(games, n)
        assert ">>> " in (inspect.getdoc(fn) or ""), f"{n} has no runnable example"


def _pairs(shape=(3,), dtype=jnp.float32):
    return [jnp.full(shape, -1.0, dtype) for _ in range(4)]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_losses_refuse_integer_or_mismatched_log_probs_at_trace_time(jit):
    def call(fn, *args, **kw):
        return (jax.jit(lambda *a: fn(*a, **kw)) if jit else (lambda *a: fn(*a, **kw)))(*args)

    pc, pr, rc, rr = _pairs()
    assert call(losses.dpo, pc, pr, rc, rr, beta=0.1).shape == (3,)
    assert call(losses.dpo, pc[:, None], pr[None, :], rc[:, None], rr[None, :], beta=0.1).shape == (3, 3)  # broadcast
    with pytest.raises(AssertionError, match="assert_type"):
        call(losses.dpo, pc.astype(jnp.int32), pr, rc, rr, beta=0.1)
    with pytest.raises(AssertionError, match="do not broadcast"):
        call(losses.ipo, pc, pr[:2], rc, rr, beta=0.1)
    with pytest.raises(AssertionError, match="assert_type"):
        call(losses.kto_unpaired, pc, rc.astype(jnp.int32), True, beta=0.1, z0=0.0, lambda_d=1.0, lambda_u=1.0)
    with pytest.raises(AssertionError, match="do not broadcast"):
        call(losses.simpo, pc, pr[:2], beta=0.1, gamma=0.5)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_game_quantities_refuse_bad_shapes_and_dtypes_at_trace_time(jit):
    P = jnp.full((4, 4), 0.5)
    pi = jnp.full(4, 0.25)

    def call(fn, *args):
        return (jax.jit(fn) if jit else fn)(*args)

    assert call(games.regularized_gap, P, pi, pi, jnp.float32(0.1)).shape == ()
    with pytest.raises(AssertionError, match="assert_axis_dimension"):  # not square
        call(games.win_rate, P[:, :3], pi[:3], pi[:3])
    with pytest.raises(AssertionError, match="assert_axis_dimension"):  # a policy over another N
        call(games.exploitability, P, pi[:3])
    with pytest.raises(AssertionError, match="assert_rank"):  # a vector is not a game
        call(games.exploitability, pi, pi)
    with pytest.raises(AssertionError, match="assert_type"):
        call(games.win_rate, P.astype(jnp.int32), pi, pi)
    with pytest.raises(AssertionError, match="assert_axis_dimension"):
        call(games.kl, pi, pi[:3])


# -- exact game dynamics: the state is a scan carry ------------------------------------------------
def _planted(update_log_pi):
    """An exact dynamic whose update returns ``update_log_pi(log_pi)`` (a planted bug or not)."""
    from alignjax.dynamics.base import ExactDynamics, ExactState

    def init(log_pi0, P, log_pi_ref, hp):
        return ExactState(log_pi0, jnp.zeros((), jnp.int32), ())

    def update(s, P, log_pi_ref, hp):
        return ExactState(update_log_pi(s.log_pi), s.t + 1, ())

    return ExactDynamics(init, update)


@pytest.mark.parametrize("bug, match", [
    (lambda lp: lp[None] - 0.0, "update"),                  # broadcast against a new axis
    (lambda lp: jnp.stack([lp, lp]).mean(0).astype(jnp.float16), "update"),  # dtype changed
    (None, None),                                            # no bug: passes
])
def test_an_exact_dynamic_whose_state_changes_shape_or_dtype_fails_at_trace_time_by_name(bug, match):
    from alignjax.dynamics.base import checked

    dyn = checked("my-rule", _planted(bug or (lambda lp: jax.nn.log_softmax(lp + 0.1))))
    P = jnp.array([[0.5, 0.7, 0.2], [0.3, 0.5, 0.6], [0.8, 0.4, 0.5]])
    log_ref = jnp.log(jnp.full(3, 1 / 3))
    step = jax.jit(lambda s: dyn.update(s, P, log_ref, {}))
    s = dyn.init(log_ref, P, log_ref, {})
    if bug is None:
        assert step(s).log_pi.shape == (3,)
        return
    with pytest.raises(AssertionError, match=f"exact dynamic 'my-rule', {match}"):
        step(s)


def test_an_exact_dynamic_rejects_a_game_and_policy_of_different_sizes_by_name():
    from alignjax.dynamics.base import exact_dynamics

    dyn = exact_dynamics("omwu")
    P = jnp.full((3, 3), 0.5)
    with pytest.raises(AssertionError, match="exact dynamic 'omwu', init"):
        dyn.init(jnp.zeros(4), P, jnp.zeros(4), {"beta": jnp.asarray(0.1), "eta": jnp.asarray(0.1)})
