"""nqm.embedding: a tied coordinate follows its reference in all three engines, and the steady-state
loss changes exactly as proofs/07-embedding.md says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nqm import EMA, SGD, SMA, Lookahead, Momentum, Problem, closed_form, moments, montecarlo
from nqm.embedding import Tie

RULES = [
    SGD(0.5),
    SMA(SGD(0.5), 3, 0.8),
    SMA(SGD(0.5), 2, 0.6, feedback=True),
    EMA(SGD(0.5), 0.9),
    Lookahead(SGD(0.5), 4, 0.5),
    Momentum(0.3, 0.5),
]


def planted() -> tuple[Problem, Tie]:
    """Coordinate 0 is the reference; 1 shares its dynamics (|a| < 1, perfect tie); 2 is tied
    imperfectly; 3 has rho = 2.5 on its own and only a steady state when embedded."""
    problem = Problem(h=[1.0, 1.0, 0.5, 5.0], c=[1.0, 1.0, 0.3, 1.0], mean0=1.0, var0=0.5)
    return problem, Tie(member=[1, 2, 3], reference=[0, 0, 0], a=[0.5, -2.0, 0.3], b=[0, 0.1, 0])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.label())
def test_three_engines_agree_on_the_tied_problem(rule):
    problem, tie = planted()
    closed = closed_form.steady_loss(problem, rule, tie)
    *_, last = moments.iterate(problem, rule, 600, tie)
    exact = sum(problem.expected_loss(*last.readout(rule)))
    assert exact == pytest.approx(closed, rel=1e-10)
    mc = montecarlo.simulate(problem, rule, 600, 8000, seed=3, record=[0, 5, 600], tie=tie)
    assert abs(mc.loss[-1] - closed) < 4.5 * mc.loss_se[-1]


@pytest.mark.parametrize("rule", RULES[:3], ids=lambda r: r.label())
def test_monte_carlo_matches_exact_tied_moments_at_every_step(rule):
    problem, tie = planted()
    steps = 40
    mc = montecarlo.simulate(problem, rule, steps, 6000, seed=11, tie=tie)
    exact = [m.readout(rule) for m in moments.iterate(problem, rule, steps, tie)]
    mean = np.array([e[0] for e in exact])
    var = np.array([e[1] for e in exact])
    assert np.abs((mc.mean - mean) / mc.mean_se).max() < 4.5
    assert np.abs((mc.var - var) / mc.var_se).max() < 4.5


def test_members_are_exact_affine_images_in_monte_carlo():
    problem, tie = planted()
    mc = montecarlo.simulate(problem, SGD(0.5), 30, 500, seed=0, tie=tie)
    # Sample moments of an exact affine image: mean a*m + b and variance a^2 V, to rounding.
    np.testing.assert_allclose(
        mc.mean[:, 1:], tie.a * mc.mean[:, [0]] + tie.b, rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(mc.var[:, 1:], tie.a**2 * mc.var[:, [0]], rtol=1e-10)


def test_tie_from_a_later_start_leaves_earlier_steps_untouched():
    problem, _ = planted()
    late = Tie(member=[1], reference=[0], a=[0.5], b=[0.2], start=10)
    free = list(moments.iterate(problem, SGD(0.5), 20))
    tied = list(moments.iterate(problem, SGD(0.5), 20, late))
    for t in range(10):
        np.testing.assert_array_equal(free[t].mean, tied[t].mean)
    assert tied[10].mean[1, 0] == pytest.approx(0.5 * tied[10].mean[0, 0] + 0.2)
    assert tied[15].cov[1, 0, 0] == pytest.approx(0.25 * tied[15].cov[0, 0, 0])


def test_embedding_stabilises_a_coordinate_that_diverges_alone():
    problem, tie = planted()
    with pytest.raises(ValueError, match="no steady state"):
        closed_form.steady_loss(problem, SGD(0.5))
    assert np.isfinite(closed_form.steady_loss(problem, SGD(0.5), tie))


@given(
    a=st.floats(-3, 3),
    b=st.floats(-2, 2),
    h_ratio=st.floats(0.05, 1.9),
    lr=st.floats(0.05, 1.0),
    beta=st.floats(0.0, 0.95),
)
def test_embedding_lowers_loss_iff_bias_plus_inherited_variance_is_smaller(a, b, h_ratio, lr, beta):
    problem = Problem(h=[1.0, h_ratio], c=[1.0, 0.7])
    rule = SMA(SGD(lr), 3, beta)
    tie = Tie(member=[1], reference=[0], a=[a], b=[b])

    # Steady variances written out (proofs/01, 02), not taken from the code under test.
    def sma_variance(h, sigma2):
        rho, u = lr * h, (1 - lr * h) ** 3
        return (
            lr
            * sigma2
            / (h * (2 - rho))
            * (1 - beta)
            * (1 + beta * u)
            / ((1 + beta) * (1 - beta * u))
        )

    v_ref, v_own = sma_variance(1.0, 1.0), sma_variance(h_ratio, 0.7)
    change = closed_form.steady_loss(problem, rule, tie) - closed_form.steady_loss(problem, rule)
    predicted = 0.5 * h_ratio * (b**2 + a**2 * v_ref - v_own)
    assert change == pytest.approx(predicted, rel=1e-9, abs=1e-12)
    assert closed_form.embedding_loss_change(problem, rule, tie)[0] == pytest.approx(
        predicted, abs=1e-12
    )


def test_shared_dynamics_perfect_tie_lowers_iff_abs_a_below_one():
    problem = Problem(h=[1.0, 1.0], c=1.0)
    for a, sign in ((0.5, -1), (-0.9, -1), (1.0, 0), (1.5, 1), (-2.0, 1)):
        change = closed_form.embedding_loss_change(problem, SGD(0.5), Tie([1], [0], [a], [0.0]))
        assert np.sign(np.round(change[0], 14)) == sign


def test_imperfect_tie_adds_its_bias():
    problem = Problem(h=[1.0, 1.0], c=1.0)
    perfect = closed_form.steady_loss(problem, SGD(0.5), Tie([1], [0], [0.5], [0.0]))
    biased = closed_form.steady_loss(problem, SGD(0.5), Tie([1], [0], [0.5], [0.3]))
    assert biased - perfect == pytest.approx(0.5 * 1.0 * 0.3**2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"member": [1, 1], "reference": [0, 0], "a": [1, 1], "b": [0, 0]}, "member"),
        ({"member": [1], "reference": [1], "a": [1], "b": [0]}, "member"),
        ({"member": [1, 2], "reference": [0], "a": [1, 1], "b": [0, 0]}, "reference"),
        ({"member": [1], "reference": [0], "a": [np.nan], "b": [0]}, "a"),
        ({"member": [1], "reference": [0], "a": [1], "b": [np.inf]}, "b"),
        ({"member": [-1], "reference": [0], "a": [1], "b": [0]}, "member"),
        ({"member": [1.5], "reference": [0], "a": [1], "b": [0]}, "member"),
        ({"member": [1], "reference": [0], "a": [1], "b": [0], "start": -1}, "start"),
    ],
)
def test_bad_tie_raises_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        Tie(**kwargs)


def test_tie_outside_the_problem_raises():
    problem = Problem(h=[1.0, 1.0], c=1.0)
    tie = Tie(member=[5], reference=[0], a=[1.0], b=[0.0])
    with pytest.raises(ValueError, match="member must index"):
        closed_form.steady_loss(problem, SGD(0.5), tie)
    with pytest.raises(ValueError, match="member must index"):
        montecarlo.simulate(problem, SGD(0.5), 3, 4, tie=tie)
