"""The diagonal preconditioner P = h^(-p) of the base optimizers (proofs/09-preconditioning.md): every
rule, in every engine, is the unpreconditioned rule with the learning rate ``lr * h_i^(-p)`` in
coordinate i; p = 0 is the rule itself; ties and averages work over it unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lic_dynamics.validation import InvalidValue
from nqm import closed_form as cf
from nqm import moments as mo
from nqm import montecarlo as mc
from nqm.embedding import Tie
from nqm.problem import Problem
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak

from .strategies import alphas, betas, ks, mus

powers = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
LONG = settings(max_examples=min(settings.default.max_examples, 40))


def wrap(kind: str, base, k: int, beta: float, alpha: float):
    return {
        "base": lambda: base,
        "sma": lambda: SMA(base, k, beta),
        "feedback": lambda: SMA(base, k, beta, feedback=True),
        "ema": lambda: EMA(base, beta),
        "lookahead": lambda: Lookahead(base, k, alpha),
        "polyak": lambda: Polyak(base, k),
    }[kind]()


def with_lr(base, lr: float):
    """The same base optimizer, unpreconditioned, at learning rate ``lr``."""
    return SGD(lr) if isinstance(base, SGD) else Momentum(lr, base.mu)


kinds = st.sampled_from(["base", "sma", "feedback", "ema", "lookahead", "polyak"])


@st.composite
def preconditioned(draw):
    """A stable preconditioned rule and its curvatures: rho_i = lr h_i^(1-p) in (0.01, 1.9)."""
    p = draw(powers)
    h = np.array(draw(st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=4)))
    scale = np.max(h ** (1 - p))
    lr = draw(st.floats(0.01, 1.9)) / scale
    mu = draw(st.one_of(st.none(), mus(0.0, 0.9)))
    base = SGD(lr, precondition=p) if mu is None else Momentum(lr, mu, precondition=p)
    rule = wrap(draw(kinds), base, draw(ks(20)), draw(betas(0.0, 0.95)), draw(alphas(0.05, 1.0)))
    return rule, h


def per_coordinate(rule, lr: float):
    """``rule`` with its base replaced by the unpreconditioned base at ``lr``."""
    base = with_lr(rule.base, lr)
    return base if rule is rule.base else dataclasses.replace(rule, base=base)


@given(preconditioned(), st.integers(1, 40))
def test_each_step_is_the_plain_rule_at_lr_times_p(case, t):
    rule, h = case
    a, b = mo.transition(rule, t, h)
    step = rule.base.step_size(h)
    for i in range(h.size):
        a_i, b_i = mo.transition(per_coordinate(rule, float(step[i])), t, h[i : i + 1])
        np.testing.assert_allclose(a[i], a_i[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b[i], b_i[0], rtol=1e-12, atol=1e-15)


@LONG
@given(preconditioned())
def test_closed_form_is_the_plain_closed_form_at_lr_times_p_and_equals_lyapunov(case):
    rule, h = case
    if isinstance(rule, Polyak):
        return  # no steady state; its finite-n formula is checked below
    sigma2 = np.linspace(0.5, 2.0, h.size)
    try:
        closed = cf.steady_variance(rule, h, sigma2)
    except NotImplementedError:  # Lookahead over momentum: Lyapunov only
        closed = None
    except ValueError:  # Lookahead can be stable where SGD is not; the engines must agree on it
        with pytest.raises(ValueError):
            mo.stationary_variance(rule, h, sigma2)
        return
    lyapunov = mo.stationary_variance(rule, h, sigma2)
    step = rule.base.step_size(h)
    for i in range(h.size):
        plain = per_coordinate(rule, float(step[i]))
        expected = mo.stationary_variance(plain, h[i : i + 1], sigma2[i : i + 1])[0]
        assert lyapunov[i] == pytest.approx(expected, rel=1e-9)
        if closed is not None:
            assert closed[i] == pytest.approx(
                cf.steady_variance(plain, h[i : i + 1], sigma2[i : i + 1])[0], rel=1e-12
            )
    if closed is not None:
        np.testing.assert_allclose(closed, lyapunov, rtol=1e-8)


@given(powers, st.floats(0.05, 1.5), st.integers(1, 50))
def test_polyak_over_a_preconditioned_base_is_exact(p, rho, n):
    h = np.array([0.3, 1.0])
    lr = rho / np.max(h ** (1 - p))
    rule = Polyak(SGD(lr, precondition=p), k=2)
    # x_0 from the stationary distribution: the average is over n stationary samples
    stationary = Problem(h=h, c=1.0, var0=cf.steady_variance(rule.base, h, np.ones(2)))
    exact = mo.moments_at(stationary, rule, 2 * n).readout(rule)[1]
    np.testing.assert_allclose(cf.polyak_variance(rule, h, np.ones(2), n), exact, rtol=1e-8)


def test_precondition_zero_is_the_plain_rule():
    h = np.array([1.0, 0.1, 0.01])
    for rule, plain in (
        (SMA(SGD(0.5, precondition=0.0), 5, 0.9), SMA(SGD(0.5), 5, 0.9)),
        (Momentum(0.3, 0.5, precondition=0.0), Momentum(0.3, 0.5)),
    ):
        assert rule == plain and rule.label() == plain.label()
        np.testing.assert_array_equal(
            cf.steady_variance(rule, h, 1.0), cf.steady_variance(plain, h, 1.0)
        )


def test_newton_preconditioning_gives_every_coordinate_the_same_rho():
    h = 1.0 / np.arange(1, 101)
    rule = SGD(0.5, precondition=1.0)
    np.testing.assert_allclose(rule.step_size(h) * h, 0.5, rtol=1e-15)
    # V* = lr P sigma2 / (h (2 - rho)) with P = 1/h, sigma2 = h: 1 / (3h), a steady risk
    # 1/2 h V* = 1/6 in every coordinate
    np.testing.assert_allclose(cf.steady_variance(rule, h, h), 1 / (3 * h), rtol=1e-13)


def test_steady_ratio_compares_with_sgd_at_the_same_preconditioner():
    h = np.array([1.0, 0.01])
    rule = SMA(SGD(0.5, precondition=0.5), k=5, beta=0.9)
    rho = rule.base.step_size(h) * h  # 0.5 and 0.05
    np.testing.assert_allclose(cf.steady_ratio(rule, h), cf.sma_ratio(0.9, rho, 5), rtol=1e-13)


def test_monte_carlo_agrees_with_the_exact_moments_under_preconditioning_and_a_tie():
    problem = Problem(h=[1.0, 0.25, 0.04, 0.01], c=[1.0, 0.25, 0.04, 0.01], batch=2)
    rule = SMA(SGD(0.4, precondition=0.5), k=3, beta=0.8)
    tie = Tie(member=[3], reference=[2], a=[0.7], b=[0.0], start=30)
    steps = [0, 10, 40, 300]
    exact = mo.loss_curve(problem, rule, 300, record=steps, tie=tie)
    sampled = mc.simulate(problem, rule, 300, chains=4000, seed=3, record=steps, tie=tie)
    z = (sampled.loss - exact.loss) / sampled.loss_se
    assert np.all(np.abs(z) < 4), z
    # the steady state of the tied, preconditioned problem: the closed form with the tie
    late = mo.moments_at(problem, rule, 20_000, tie=tie)
    bias, variance = problem.expected_loss(*late.readout(rule))
    assert bias + variance == pytest.approx(cf.steady_loss(problem, rule, tie), rel=1e-9)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_precondition_is_refused_naming_it(value):
    for make in (
        lambda: SGD(0.1, precondition=value),
        lambda: Momentum(0.1, 0.5, precondition=value),
    ):
        with pytest.raises(InvalidValue, match=r"^precondition "):
            make()


def test_no_steady_state_message_names_the_preconditioned_rho():
    with pytest.raises(ValueError, match=r"rho = lr\*P\*h must be in \(0, 2\)"):
        cf.steady_variance(SGD(2.5, precondition=1.0), np.array([0.5, 0.1]), 1.0)
