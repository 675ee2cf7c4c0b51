"""nqm.rules: hyperparameter validation, the one-step dynamics of every rule, and the reductions
between rules at the level of a single step (they carry over to all three engines)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak, State

from .strategies import alphas, betas, ks, lrs, mus

finite = st.floats(-1e3, 1e3)


def _state(x, y=None, v=None) -> State:
    x = np.asarray(x, dtype=np.float64)
    return State(
        x=x,
        y=x.copy() if y is None else np.asarray(y, dtype=np.float64),
        v=np.zeros_like(x) if v is None else np.asarray(v, dtype=np.float64),
    )


def _run(rule, state: State, h: np.ndarray, noises: np.ndarray) -> list[State]:
    out = [state]
    for t, noise in enumerate(noises, start=1):
        state = rule.step(t, state, h, noise)
        out.append(state)
    return out


# ---- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.0, -0.1, np.nan, np.inf, True, "0.1", None])
def test_lr_must_be_positive_finite_real(lr):
    with pytest.raises(ValueError, match="lr"):
        SGD(lr)
    with pytest.raises(ValueError, match="lr"):
        Momentum(lr, 0.5)


@pytest.mark.parametrize("mu", [-1.0, 1.0, 1.5, -2.0, np.nan, np.inf])
def test_mu_must_be_inside_minus_one_one(mu):
    with pytest.raises(ValueError, match=r"mu must be in \(-1, 1\)"):
        Momentum(0.1, mu)


@pytest.mark.parametrize("k", [0, -3, 1.5, np.nan, True, "5"])
@pytest.mark.parametrize(
    "make",
    [
        lambda k: SMA(SGD(0.1), k, 0.5),
        lambda k: Lookahead(SGD(0.1), k, 0.5),
        lambda k: Polyak(SGD(0.1), k),
    ],
)
def test_k_must_be_a_positive_integer(make, k):
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 2\*\*53\]"):
        make(k)


@pytest.mark.parametrize("beta", [-0.1, -1e-12, 1.0, 1.2, np.nan, np.inf])
@pytest.mark.parametrize("make", [lambda b: SMA(SGD(0.1), 3, b), lambda b: EMA(SGD(0.1), b)])
def test_beta_must_be_in_zero_one(make, beta):
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        make(beta)


@pytest.mark.parametrize("alpha", [0.0, -0.5, 1.0 + 1e-12, 1.5, np.nan])
def test_alpha_must_be_in_zero_one_closed(alpha):
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        Lookahead(SGD(0.1), 3, alpha)


@pytest.mark.parametrize("feedback", [1, 0, "yes", None])
def test_feedback_must_be_bool(feedback):
    with pytest.raises(ValueError, match="feedback"):
        SMA(SGD(0.1), 3, 0.5, feedback=feedback)


@pytest.mark.parametrize(
    "make",
    [
        lambda b: SMA(b, 3, 0.5),
        lambda b: EMA(b, 0.5),
        lambda b: Lookahead(b, 3, 0.5),
        lambda b: Polyak(b, 3),
    ],
)
@pytest.mark.parametrize("base", [EMA(SGD(0.1), 0.5), SMA(SGD(0.1), 2, 0.5), 0.1, None])
def test_averaging_rules_need_an_sgd_or_momentum_base(make, base):
    with pytest.raises(ValueError, match="base"):
        make(base)


def test_boundary_values_are_accepted():
    assert SMA(SGD(0.1), 1, 0.0).beta == 0.0
    assert EMA(SGD(0.1), 0.0).beta == 0.0
    assert Lookahead(SGD(0.1), 1, 1.0).alpha == 1.0
    assert Momentum(0.1, 0.0).mu == 0.0
    assert Momentum(0.1, -0.9).mu == -0.9
    sma = SMA(SGD(0.1), 5.0, 0.5)
    assert sma.k == 5 and isinstance(sma.k, int)
    assert isinstance(SGD(np.float32(0.5)).lr, float)


def test_rules_are_frozen():
    rule = SMA(SGD(0.1), 3, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.beta = 0.9


# ---- structure -------------------------------------------------------------------------------


def test_states_readout_and_period():
    assert (SGD(0.1).states, SGD(0.1).readout, SGD(0.1).period) == (("x",), "x", 1)
    m = Momentum(0.1, 0.5)
    assert (m.states, m.readout, m.period) == (("x", "v"), "x", 1)
    assert m.base is m and SGD(0.1).base == SGD(0.1)
    assert SMA(SGD(0.1), 7, 0.5).states == ("x", "y")
    assert SMA(m, 7, 0.5).states == ("x", "v", "y")
    assert SMA(SGD(0.1), 7, 0.5).period == 7
    assert Lookahead(m, 4, 0.5).period == 4
    assert Polyak(SGD(0.1), 3).period == 3
    assert EMA(m, 0.5).period == 1
    for rule in (SMA(SGD(0.1), 7, 0.5), EMA(m, 0.5), Lookahead(m, 4, 0.5), Polyak(m)):
        assert rule.readout == "y"
    assert "k=7" in SMA(SGD(0.1), 7, 0.5, True).label()
    assert "feedback" in SMA(SGD(0.1), 7, 0.5, True).label()
    assert "Momentum" in Lookahead(m, 4, 0.5).label()


# ---- one-step dynamics -----------------------------------------------------------------------


@given(lr=lrs, h=st.floats(1e-3, 10.0), x=finite, noise=finite)
def test_sgd_step(lr, h, x, noise):
    s = SGD(lr).step(1, _state([x]), np.array([h]), np.array([noise]))
    np.testing.assert_allclose(s.x, [x - lr * (h * x + noise)], rtol=1e-15, atol=1e-300)
    assert s.y[0] == x and s.v[0] == 0.0  # untouched


@given(lr=lrs, mu=mus(-0.99, 0.99), h=st.floats(1e-3, 10.0), x=finite, v=finite, noise=finite)
def test_momentum_step(lr, mu, h, x, v, noise):
    s = Momentum(lr, mu).step(1, _state([x], v=[v]), np.array([h]), np.array([noise]))
    v_new = mu * v - lr * (h * x + noise)
    np.testing.assert_allclose(s.v, [v_new], rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(s.x, [x + v_new], rtol=1e-13, atol=1e-12)


def test_sma_samples_only_every_k_steps_after_the_base_update():
    rule = SMA(SGD(0.5), 3, 0.8)
    h = np.array([1.0])
    noises = np.array([[0.1], [-0.2], [0.3], [0.0], [0.5], [-0.1], [0.2]])
    states = _run(rule, _state([2.0]), h, noises)
    x = 2.0
    y = 2.0
    for t in range(1, 8):
        x = x - 0.5 * (x + noises[t - 1, 0])
        if t % 3 == 0:
            y = 0.8 * y + 0.2 * x
        assert states[t].x[0] == pytest.approx(x, rel=1e-15)
        assert states[t].y[0] == pytest.approx(y, rel=1e-15)


def test_sma_with_feedback_resets_fast_weights():
    rule = SMA(SGD(0.5), 2, 0.75, feedback=True)
    states = _run(rule, _state([4.0]), np.array([1.0]), np.zeros((4, 1)))
    # t=1: x=2; t=2: x=1 then y = 0.75*4 + 0.25*1 = 3.25 and x <- y; t=3: x = 1.625; t=4: x=0.8125,
    # y = 0.75*3.25 + 0.25*0.8125
    assert [s.x[0] for s in states] == [4.0, 2.0, 3.25, 1.625, 0.75 * 3.25 + 0.25 * 0.8125]
    assert [s.y[0] for s in states] == [4.0, 4.0, 3.25, 3.25, 0.75 * 3.25 + 0.25 * 0.8125]


def test_ema_averages_every_step():
    rule = EMA(SGD(0.5), 0.5)
    states = _run(rule, _state([4.0]), np.array([1.0]), np.zeros((3, 1)))
    assert [s.x[0] for s in states] == [4.0, 2.0, 1.0, 0.5]
    assert [s.y[0] for s in states] == [4.0, 3.0, 2.0, 1.25]


def test_lookahead_step_in_paper_form():
    rule = Lookahead(SGD(0.5), 2, 0.25)
    states = _run(rule, _state([4.0]), np.array([1.0]), np.zeros((2, 1)))
    slow = 4.0 + 0.25 * (1.0 - 4.0)
    assert states[1].x[0] == 2.0 and states[1].y[0] == 4.0
    assert states[2].x[0] == slow and states[2].y[0] == slow


@given(k=ks(6), n=st.integers(1, 6), data=st.data())
def test_polyak_is_the_uniform_mean_of_every_kth_iterate(k, n, data):
    noises = data.draw(hnp.arrays(np.float64, (n * k, 2), elements=finite))
    rule = Polyak(SGD(0.3), k)
    h = np.array([1.0, 0.5])
    states = _run(rule, _state([1.0, -2.0]), h, noises)
    samples = np.array([states[j * k].x for j in range(1, n + 1)])
    np.testing.assert_allclose(states[n * k].y, samples.mean(axis=0), rtol=1e-12, atol=1e-9)


# ---- reductions, step by step ----------------------------------------------------------------


@st.composite
def trajectories_inputs(draw, d=3, steps=12):
    """(x0, h, noises) for a short run on d coordinates with rho = lr*h < 2 for lr <= 1."""
    x0 = draw(hnp.arrays(np.float64, d, elements=finite))
    h = draw(hnp.arrays(np.float64, d, elements=st.floats(1e-3, 1.9)))
    noises = draw(hnp.arrays(np.float64, (steps, d), elements=finite))
    return x0, h, noises


@given(lr=st.floats(1e-3, 1.0), inputs=trajectories_inputs())
def test_momentum_with_mu_zero_is_sgd_bit_for_bit(lr, inputs):
    x0, h, noises = inputs
    a = _run(Momentum(lr, 0.0), _state(x0), h, noises)
    b = _run(SGD(lr), _state(x0), h, noises)
    for sa, sb in zip(a, b, strict=True):
        np.testing.assert_array_equal(sa.x, sb.x)


@given(lr=st.floats(1e-3, 1.0), beta=betas(), mu=mus(), inputs=trajectories_inputs())
def test_ema_is_sma_with_k_one_bit_for_bit(lr, beta, mu, inputs):
    x0, h, noises = inputs
    for base in (SGD(lr), Momentum(lr, mu)):
        a = _run(EMA(base, beta), _state(x0), h, noises)
        b = _run(SMA(base, 1, beta), _state(x0), h, noises)
        for sa, sb in zip(a, b, strict=True):
            np.testing.assert_array_equal(sa.x, sb.x)
            np.testing.assert_array_equal(sa.y, sb.y)


@given(lr=st.floats(1e-3, 1.0), alpha=alphas(), k=ks(5), mu=mus(), inputs=trajectories_inputs())
def test_lookahead_is_sma_with_feedback_and_beta_one_minus_alpha(lr, alpha, k, mu, inputs):
    x0, h, noises = inputs
    for base in (SGD(lr), Momentum(lr, mu)):
        a = _run(Lookahead(base, k, alpha), _state(x0), h, noises)
        b = _run(SMA(base, k, 1.0 - alpha, feedback=True), _state(x0), h, noises)
        # rounding differs (y + alpha(x - y) vs beta*y + (1-beta)*x): compare to the size of
        # every state seen so far (the momentum buffer can dwarf x)
        scale = 1.0
        for sa, sb in zip(a, b, strict=True):
            scale = max(scale, *(np.abs(arr).max() for arr in sa))
            assert np.all(np.abs(sa.x - sb.x) <= 1e-12 * scale)
            assert np.all(np.abs(sa.y - sb.y) <= 1e-12 * scale)


@given(lr=st.floats(1e-3, 1.0), k=ks(5), inputs=trajectories_inputs())
def test_lookahead_alpha_one_follows_the_fast_weights(lr, k, inputs):
    """alpha = 1: the slow weights jump to the fast weights, so the fast weights run plain SGD and
    the readout equals the SGD iterate at every sampling step."""
    x0, h, noises = inputs
    la = _run(Lookahead(SGD(lr), k, 1.0), _state(x0), h, noises)
    sgd = _run(SGD(lr), _state(x0), h, noises)
    # y + 1*(x - y) rounds to x only up to an ulp, so compare to rounding level.
    for t, (a, b) in enumerate(zip(la, sgd, strict=True)):
        scale = 1.0 + np.abs(b.x)
        assert np.all(np.abs(a.x - b.x) <= 1e-12 * scale)
        if t % k == 0:
            assert np.all(np.abs(a.y - b.x) <= 1e-12 * scale)


@given(lr=st.floats(1e-3, 1.0), k=ks(5), inputs=trajectories_inputs())
def test_sma_beta_zero_copies_every_kth_iterate(lr, k, inputs):
    x0, h, noises = inputs
    sma = _run(SMA(SGD(lr), k, 0.0), _state(x0), h, noises)
    for t, s in enumerate(sma):
        np.testing.assert_array_equal(s.y, sma[(t // k) * k].x)


@given(lr=st.floats(1e-3, 1.0), beta=betas(), k=ks(5), inputs=trajectories_inputs())
def test_sma_without_feedback_leaves_fast_weights_on_the_sgd_path(lr, beta, k, inputs):
    x0, h, noises = inputs
    sma = _run(SMA(SGD(lr), k, beta), _state(x0), h, noises)
    sgd = _run(SGD(lr), _state(x0), h, noises)
    for a, b in zip(sma, sgd, strict=True):
        np.testing.assert_array_equal(a.x, b.x)


def test_minus_zero_hyperparameters_are_zero_in_the_label():
    """-0.0 is inside [0, 1) and (-1, 1); the rule keeps 0.0, so no label shows -0."""
    rule = SMA(Momentum(0.5, -0.0, precondition=-0.0), k=3, beta=-0.0)
    assert rule.label() == "SMA(k=3, beta=0) over Momentum(lr=0.5, mu=0)"
    assert str(EMA(SGD(0.5), -0.0).beta) == "0.0"


@given(lr=lrs, p=st.floats(0.0, 1.0), h=st.floats(1e-300, 1e300))
def test_rho_is_the_step_times_the_curvature_where_float64_holds_it(lr, p, h):
    """rho = lr * h^(1-p): as step_size(h) * h where that is a positive float, and from
    lr * h^(1-p) where the step size alone over- or underflows."""
    rule = SGD(lr, precondition=p)
    with np.errstate(all="ignore"):
        direct = float(rule.step_size(np.array([h]))[0] * h)
    rho = float(rule.rho(np.array([h]))[0])
    if 0 < direct < np.inf:
        assert rho == direct
    else:
        assert rho == pytest.approx(lr * h ** (1 - p), rel=1e-12) or not np.isfinite(
            lr * h ** (1 - p)
        )


def test_rho_where_the_step_size_overflows():
    rule = SGD(0.5, precondition=1.0)
    assert rule.rho(np.array([5e-324, 1.0, 1e300])).tolist() == [0.5, 0.5, 0.5]
