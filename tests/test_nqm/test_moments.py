"""nqm.moments: exact moments at every step and Lyapunov steady states, against the closed forms
(proofs/, Results 1-5), the transient formulas (Result 1; Result 2, Step 7; Result 6) and the fixed
points of the reference tables."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nqm import closed_form as cf
from nqm import moments as mo
from nqm.problem import Problem
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak

from .strategies import alphas, as_array, assert_printed, betas, ks, lrs, mus, rhos, sigma2s

ONE = as_array(1.0)
# The long-recursion properties cost ~0.1 s an example: at most 60 examples even when thorough.
LONG = settings(max_examples=min(settings.default.max_examples, 60))


def readouts(problem, rule, steps):
    """(mean, var) of the readout after 0..steps steps, each (steps+1, d)."""
    ms = list(mo.iterate(problem, rule, steps))
    return np.array([m.readout(rule)[0] for m in ms]), np.array([m.readout(rule)[1] for m in ms])


@st.composite
def curvatures(draw, lr, d=3, rho=None, high=2.0):
    """d curvatures with rho = lr*h drawn from ``rho`` (default: Lyapunov-safe range)."""
    if rho is None:
        rho = rhos(1e-4, 2 - 1e-4)
    hs = [draw(rho) / lr for _ in range(d)]
    hs = [h for h in hs if lr * h < high]
    assume(hs)
    return np.array(hs)


@st.composite
def momentum_curvatures(draw, lr, mu, d=3):
    fracs = [draw(st.floats(1e-4, 1 - 1e-4)) for _ in range(d)]
    return np.array([f * 2 * (1 + mu) / lr for f in fracs])


# ---- Lyapunov steady state = closed form ---------------------------------------------------------

LYAPUNOV_RTOL = 1e-9


@given(lr=lrs, beta=betas(high=0.999), alpha=alphas(1e-3), k=ks(), data=st.data())
def test_lyapunov_equals_closed_form_over_sgd(lr, beta, alpha, k, data):
    h = data.draw(curvatures(lr))
    sigma2 = np.array([data.draw(sigma2s) for _ in h])
    for rule in (
        SGD(lr),
        SMA(SGD(lr), k, beta),
        SMA(SGD(lr), k, beta, feedback=True),
        EMA(SGD(lr), beta),
        Lookahead(SGD(lr), k, alpha),
    ):
        np.testing.assert_allclose(
            mo.stationary_variance(rule, h, sigma2),
            cf.steady_variance(rule, h, sigma2),
            rtol=LYAPUNOV_RTOL,
            err_msg=rule.label(),
        )


@given(lr=lrs, mu=mus(), beta=betas(high=0.999), k=ks(), data=st.data())
def test_lyapunov_equals_closed_form_over_momentum(lr, mu, beta, k, data):
    h = data.draw(momentum_curvatures(lr, mu))
    sigma2 = np.array([data.draw(sigma2s) for _ in h])
    for rule in (Momentum(lr, mu), SMA(Momentum(lr, mu), k, beta), EMA(Momentum(lr, mu), beta)):
        np.testing.assert_allclose(
            mo.stationary_variance(rule, h, sigma2),
            cf.steady_variance(rule, h, sigma2),
            rtol=LYAPUNOV_RTOL,
            err_msg=rule.label(),
        )


@given(lr=lrs, beta=betas(high=0.999), k=ks(), data=st.data())
def test_stationary_cross_covariance_of_sma(lr, beta, k, data):
    """Result 2: at a sampling instant Var x = V* and Cov(x, y) = (1-beta)V*/(1-beta*u)."""
    h = data.draw(curvatures(lr))
    sigma2 = np.array([data.draw(sigma2s) for _ in h])
    cov = mo.stationary_covariance(SMA(SGD(lr), k, beta), h, sigma2)
    assert cov.shape == (h.size, 2, 2)
    v = cf.sgd_variance(lr, h, sigma2)
    _, one_minus_u, _ = cf.lag_correlation(lr * h, k)
    np.testing.assert_allclose(cov[:, 0, 0], v, rtol=LYAPUNOV_RTOL)
    want = (1 - beta) * v / ((1 - beta) + beta * one_minus_u)
    np.testing.assert_allclose(cov[:, 0, 1], want, rtol=LYAPUNOV_RTOL)
    np.testing.assert_allclose(cov[:, 1, 0], cov[:, 0, 1], rtol=1e-12)


@given(lr=lrs, beta=betas(high=0.999), k=ks(), mu=mus(), data=st.data())
def test_stationary_covariance_solves_the_period_lyapunov_equation(lr, beta, k, mu, data):
    h = data.draw(momentum_curvatures(lr, mu))
    sigma2 = np.array([data.draw(sigma2s) for _ in h])
    for rule in (SMA(SGD(lr / 2), k, beta), Lookahead(Momentum(lr, mu), k, 1 - beta)):
        m, n = mo.period_map(rule, h)
        radius = np.abs(np.linalg.eigvals(m)).max()
        if radius >= 1:
            # Lookahead over momentum (v is not reset) can be unstable inside momentum's region
            with pytest.raises(ValueError, match="no steady state"):
                mo.stationary_covariance(rule, h, sigma2)
            continue
        x = mo.stationary_covariance(rule, h, sigma2)
        resid = x - (m @ x @ m.transpose(0, 2, 1) + sigma2[:, None, None] * n)
        scale = np.abs(x).max(axis=(1, 2))[:, None, None]
        assert np.all(np.abs(resid) <= 1e-9 * scale)
        # symmetric positive semi-definite
        np.testing.assert_allclose(x, x.transpose(0, 2, 1), rtol=1e-10, atol=1e-14 * scale.max())
        assert np.all(np.linalg.eigvalsh(x) >= -1e-9 * scale[:, :, 0])


def test_table_a_cross_covariance():
    cov = mo.stationary_covariance(SMA(SGD(0.3), 5, 0.5), as_array(2.0), as_array(4.0))
    assert_printed(cov[0, 0, 1], "0.21538850")
    assert_printed(cov[0, 1, 1], "0.14432753")
    assert cov[0, 0, 0] == pytest.approx(3 / 7, rel=1e-12)


@pytest.mark.parametrize(
    ("a", "mu", "want"),
    [(0.5, 0.9, 95 / 33), (0.5, 0.5, 0.6), (0.1, 0.9, 19 / 37), (3.0, 0.9, 71.25)],
)
def test_table_c_momentum_by_lyapunov(a, mu, want):
    assert mo.stationary_variance(Momentum(a, mu), ONE, ONE)[0] == pytest.approx(want, rel=1e-11)


@given(lr=lrs, mu=mus(), k=ks(50), alpha=alphas(1e-3), data=st.data())
def test_lookahead_over_momentum(lr, mu, k, alpha, data):
    """No closed form, but: alpha = 1 is plain momentum, Lookahead = SMA with feedback, and the
    Lyapunov value is the limit of the exact moment recursion."""
    h = data.draw(momentum_curvatures(lr, mu, d=2))
    s2 = np.ones_like(h)
    np.testing.assert_allclose(
        mo.stationary_variance(Lookahead(Momentum(lr, mu), k, 1.0), h, s2),
        cf.momentum_variance(lr, mu, h, s2),
        rtol=LYAPUNOV_RTOL,
    )
    m, _ = mo.period_map(Lookahead(Momentum(lr, mu), k, alpha), h)
    assume(np.abs(np.linalg.eigvals(m)).max() < 1 - 1e-6)  # not reset, v can destabilise it
    np.testing.assert_allclose(
        mo.stationary_variance(Lookahead(Momentum(lr, mu), k, alpha), h, s2),
        mo.stationary_variance(SMA(Momentum(lr, mu), k, 1 - alpha, feedback=True), h, s2),
        rtol=1e-10,
    )


def test_lookahead_over_momentum_lyapunov_is_the_limit_of_the_recursion():
    rule = Lookahead(Momentum(0.5, 0.5), 4, 0.5)
    h = np.array([0.3, 1.0, 2.5])
    p = Problem(h=h, c=1.0, mean0=1.0, var0=2.0)
    _, var = readouts(p, rule, 4 * 400)
    np.testing.assert_allclose(var[-1], mo.stationary_variance(rule, h, np.ones(3)), rtol=1e-9)


# ---- the recursion converges to the closed form --------------------------------------------------


def _periods_to_converge(q: float) -> int:
    return math.ceil(math.log(1e-14) / (2 * math.log(q))) + 2 if q > 0 else 2


@LONG
@given(
    lr=st.floats(0.1, 2.0),
    beta=betas(high=0.95),
    alpha=alphas(0.05),
    k=ks(10),
    mean0=st.floats(-3, 3),
    var0=st.floats(0, 3),
    data=st.data(),
)
def test_iterate_converges_to_closed_form(lr, beta, alpha, k, mean0, var0, data):
    """Run the exact recursion until q^(2n) < 1e-14 (q: contraction per period from Results 2 and 4) and
    compare with the closed-form steady variance."""
    rhos_ = np.array([data.draw(rhos(0.05, 1.95)) for _ in range(3)])
    h = rhos_ / lr
    p = Problem(h=h, c=0.7, batch=2, mean0=mean0, var0=var0)
    u = (1 - rhos_) ** k
    cases = [
        (SMA(SGD(lr), k, beta), max(np.abs(u).max(), beta)),
        (SMA(SGD(lr), k, beta, feedback=True), np.abs(1 - (1 - beta) * (1 - u)).max()),
        (Lookahead(SGD(lr), k, alpha), np.abs(1 - alpha * (1 - u)).max()),
        (EMA(SGD(lr), beta), max(np.abs(1 - rhos_).max(), beta)),
    ]
    for rule, q in cases:
        steps = rule.period * _periods_to_converge(float(q))
        # polynomial prefactors where eigenvalues coincide (beta = u): some slack
        steps = int(steps * 1.25) + 4 * rule.period
        assume(steps <= 20_000)
        mean, var = readouts(p, rule, steps)
        np.testing.assert_allclose(var[-1], cf.steady_variance(rule, h, p.sigma2), rtol=1e-9)
        assert np.all(np.abs(mean[-1]) <= 1e-5 * abs(mean0))
        # the loss of the readout converges to steady_loss (the mean has decayed)
        loss = 0.5 * h @ (mean[-1] ** 2 + var[-1])
        assert loss == pytest.approx(cf.steady_loss(p, rule), rel=1e-9, abs=1e-10 * mean0**2)


@LONG
@given(lr=st.floats(0.1, 1.0), mu=mus(0.0, 0.8), beta=betas(high=0.9), k=ks(5), data=st.data())
def test_iterate_converges_to_closed_form_over_momentum(lr, mu, beta, k, data):
    fracs = np.array([data.draw(st.floats(0.05, 0.95)) for _ in range(3)])
    h = fracs * 2 * (1 + mu) / lr
    p = Problem(h=h, c=1.0, mean0=1.0, var0=0.5)
    roots = [np.abs(np.roots([1.0, -(1 + mu - lr * hi), mu])).max() for hi in h]
    q_base = max(roots)
    for rule, q in (
        (Momentum(lr, mu), q_base),
        (SMA(Momentum(lr, mu), k, beta), max(q_base**k, beta)),
        (EMA(Momentum(lr, mu), beta), max(q_base, beta)),
    ):
        steps = rule.period * _periods_to_converge(float(q))
        # polynomial prefactors of repeated roots: give it some slack
        steps = int(steps * 1.5) + 50
        assume(steps <= 20_000)
        _, var = readouts(p, rule, steps)
        np.testing.assert_allclose(var[-1], cf.steady_variance(rule, h, p.sigma2), rtol=1e-8)


@LONG
@given(mean0=st.floats(-5, 5), var0=st.floats(0, 5))
def test_steady_state_does_not_depend_on_initialisation(mean0, var0):
    """q = max(beta, |u|) = 0.7 per period of 3 steps: 300 steps leave 0.7^200 ~ 1e-31."""
    rule = SMA(SGD(0.8), 3, 0.7)
    h = np.array([0.5, 1.0, 2.0])
    a = readouts(Problem(h=h, c=1.0, mean0=mean0, var0=var0), rule, 300)[1][-1]
    b = readouts(Problem(h=h, c=1.0, mean0=0.0, var0=0.0), rule, 300)[1][-1]
    np.testing.assert_allclose(a, b, rtol=1e-12)


# ---- exact transients ----------------------------------------------------------------------------


@given(
    lr=lrs, rho=rhos(1e-3, 1.999), sigma2=sigma2s, mean0=st.floats(-10, 10), var0=st.floats(0, 10)
)
def test_sgd_transient_is_exact(lr, rho, sigma2, mean0, var0):
    """m_t = r^t m_0 and V_t = V* + r^{2t}(V_0 - V*) at every step (Result 1)."""
    h = rho / lr
    assume(lr * h < 2)
    p = Problem(h=[h], c=[sigma2], mean0=mean0, var0=var0)
    mean, var = readouts(p, SGD(lr), 60)
    r = 1 - lr * h
    v_star = cf.sgd_variance(lr, as_array(h), as_array(sigma2))[0]
    t = np.arange(61)
    np.testing.assert_allclose(mean[:, 0], r**t * mean0, rtol=1e-12, atol=1e-300)
    want = v_star + r ** (2 * t) * (var0 - v_star)
    np.testing.assert_allclose(var[:, 0], want, rtol=1e-9, atol=1e-12 * max(v_star, var0))


def test_sgd_mean_is_exact_power():
    """E[x_t] = (1 - rho)^t x_0 exactly; rho = 0.5 keeps every power exact in binary."""
    p = Problem(h=[1.0], c=1.0, mean0=3.0, var0=0.0)
    mean, _ = readouts(p, SGD(0.5), 40)
    assert mean[:, 0].tolist() == [3.0 * 0.5**t for t in range(41)]


def expected_average(m0, beta, u, n):
    """E[y_n] = m0[beta^n + (1-beta)u(beta^n - u^n)/(beta - u)]; m0 beta^n (1 + n(1-beta)) if
    beta = u (Result 2, Step 7)."""
    if beta == u:
        return m0 * beta**n * (1 + n * (1 - beta))
    return m0 * (beta**n + (1 - beta) * u * (beta**n - u**n) / (beta - u))


@given(rho=rhos(1e-3, 1.999), beta=betas(high=0.99), k=ks(8), m0=st.floats(-10, 10))
def test_mean_of_the_average(rho, beta, k, m0):
    u = (1 - rho) ** k
    assume(abs(beta - u) > 1e-6)
    p = Problem(h=[1.0], c=1.0, mean0=m0, var0=1.0)
    rule = SMA(SGD(rho), k, beta)
    mean, _ = readouts(p, rule, 12 * k)
    for n in range(13):
        assert mean[n * k, 0] == pytest.approx(
            expected_average(m0, beta, u, n), rel=1e-9, abs=1e-12
        )
        # constant between samples
        for j in range(1, k if n < 12 else 1):
            assert mean[n * k + j, 0] == mean[n * k, 0]


@pytest.mark.parametrize(("rho", "k"), [(0.5, 1), (0.2, 3), (1.5, 2)])
def test_mean_of_the_average_when_beta_equals_u(rho, k):
    u = (1 - rho) ** k
    p = Problem(h=[1.0], c=1.0, mean0=2.0, var0=1.0)
    mean, _ = readouts(p, SMA(SGD(rho), k, u), 10 * k)
    for n in range(11):
        assert mean[n * k, 0] == pytest.approx(2.0 * u**n * (1 + n * (1 - u)), rel=1e-12)


def test_table_c_mean_of_the_average():
    p = Problem(h=[1.0], c=1.0, mean0=3.0, var0=0.0)
    mean, _ = readouts(p, SMA(SGD(0.2), 5, 0.8), 25)
    assert_printed(mean[5, 0], "2.596608")
    assert_printed(mean[25, 0], "1.1178675")


@given(lr=st.floats(0.05, 1.9), beta=betas(high=0.99), k=ks(8))
def test_between_samples_var_y_is_constant_and_cov_decays_by_r(lr, beta, k):
    """Between samples Var y is constant and Cov(x, y) decays by r, for SMA without feedback over
    SGD (h = 1, rho = lr)."""
    p = Problem(h=[1.0], c=1.0, mean0=1.0, var0=1.0)
    rule = SMA(SGD(lr), k, beta)
    r = 1 - lr
    ms = list(mo.iterate(p, rule, 6 * k))
    for m_prev, m in itertools.pairwise(ms):
        if m.t % k:
            assert m.cov[0, 1, 1] == m_prev.cov[0, 1, 1]
            assert m.cov[0, 0, 1] == pytest.approx(r * m_prev.cov[0, 0, 1], rel=1e-13, abs=1e-300)


# ---- the transient cases (Result 6, part B) ------------------------------------------------------


def test_transient_variance_case():
    """x_0 ~ N(0, 1), a = 0.5, h = 1, sigma2 = 0.01, beta = 0.9, k = 1."""
    p = Problem(h=[1.0], c=[0.01], mean0=0.0, var0=1.0)
    rule = SMA(SGD(0.5), 1, 0.9)
    _, var_y = readouts(p, rule, 20)
    _, var_x = readouts(p, SGD(0.5), 20)
    assert_printed(var_y[5, 0], "0.43636")
    assert_printed(var_y[20, 0], "0.019160")
    assert_printed(var_x[5, 0], "0.0043066")
    assert_printed(var_x[20, 0], "0.0033333")
    assert_printed(cf.steady_variance(rule, ONE, as_array(0.01))[0], "0.00046252")
    assert_printed(mo.stationary_variance(rule, ONE, as_array(0.01))[0], "0.00046252")
    # the average is worse than SGD before steady state (Result 3, what it does not say)
    assert var_y[5, 0] > var_x[5, 0] and var_y[20, 0] > var_x[20, 0]


def test_transient_loss_case():
    """x_0 = 3 (deterministic), a = 0.2, h = 1, sigma2 = 1, k = 5, beta = 0.8."""
    p = Problem(h=[1.0], c=[1.0], mean0=3.0, var0=0.0)
    rule = SMA(SGD(0.2), 5, 0.8)
    ly = mo.loss_curve(p, rule, 150, record=[5, 50, 150])
    lx = mo.loss_curve(p, SGD(0.2), 150, record=[5, 50, 150])
    for got, printed in zip(ly.loss, ("3.3732", "0.077652", "0.010568"), strict=True):
        assert_printed(got, printed)
    for got, printed in zip(lx.loss, ("0.53277", "0.055556", "0.055556"), strict=True):
        assert_printed(got, printed)
    assert_printed(ly.bias[1], "0.067276")
    assert_printed(cf.steady_loss(p, rule), "0.010559")
    assert_printed(cf.steady_loss(p, SGD(0.2)), "0.055556")
    assert ly.loss[0] > lx.loss[0] and ly.loss[1] > lx.loss[1] and ly.loss[2] < lx.loss[2]


# ---- loss decomposition, additivity, scaling -----------------------------------------------------


@given(lr=st.floats(0.05, 1.0), beta=betas(high=0.99), k=ks(6), d=st.integers(1, 5), data=st.data())
def test_loss_curve_is_half_h_times_second_moment(lr, beta, k, d, data):
    h = np.array([data.draw(st.floats(0.01, 1.9 / lr)) for _ in range(d)])
    c = np.array([data.draw(st.floats(0.0, 5.0)) for _ in range(d)])
    mean0 = np.array([data.draw(st.floats(-3, 3)) for _ in range(d)])
    p = Problem(h=h, c=c, batch=data.draw(st.integers(1, 16)), mean0=mean0, var0=0.5)
    for rule in (
        SGD(lr),
        SMA(SGD(lr), k, beta),
        Lookahead(Momentum(lr, 0.5), k, 1 - beta),
        Polyak(SGD(lr), k),
    ):
        curve = mo.loss_curve(p, rule, 30)
        mean, var = readouts(p, rule, 30)
        np.testing.assert_array_equal(curve.steps, np.arange(31))
        np.testing.assert_allclose(curve.bias, 0.5 * (mean**2) @ h, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(curve.variance, 0.5 * var @ h, rtol=1e-13, atol=1e-300)
        want = np.array([0.5 * math.fsum(h * (mean[t] ** 2 + var[t])) for t in range(31)])
        np.testing.assert_allclose(curve.loss, want, rtol=1e-12)


def test_loss_curve_record_subset():
    p = Problem(h=[0.5, 1.0], c=1.0, mean0=1.0)
    rule = SMA(SGD(0.5), 3, 0.5)
    full = mo.loss_curve(p, rule, 20)
    part = mo.loss_curve(p, rule, 20, record=[20, 3, 3, 0, 7])
    np.testing.assert_array_equal(part.steps, [0, 3, 7, 20])
    np.testing.assert_array_equal(part.loss, full.loss[[0, 3, 7, 20]])
    np.testing.assert_array_equal(part.bias, full.bias[[0, 3, 7, 20]])


@pytest.mark.parametrize("record", [[], [-1, 3], [0, 21]])
def test_loss_curve_rejects_bad_record(record):
    with pytest.raises(ValueError, match="record"):
        mo.loss_curve(Problem(h=[1.0], c=1.0), SGD(0.5), 20, record=record)


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_iterate_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        list(mo.iterate(Problem(h=[1.0], c=1.0), SGD(0.5), steps))


@given(lr=st.floats(0.05, 1.0), beta=betas(high=0.99), k=ks(6), d=st.integers(2, 5), data=st.data())
def test_loss_curve_is_additive_and_permutation_invariant(lr, beta, k, d, data):
    h = np.array([data.draw(st.floats(0.01, 1.9 / lr)) for _ in range(d)])
    c = np.array([data.draw(st.floats(0.0, 5.0)) for _ in range(d)])
    mean0 = np.array([data.draw(st.floats(-3, 3)) for _ in range(d)])
    perm = np.array(data.draw(st.permutations(range(d))))
    rule = SMA(SGD(lr), k, beta)
    total = mo.loss_curve(Problem(h=h, c=c, mean0=mean0), rule, 25).loss
    parts = sum(
        mo.loss_curve(
            Problem(h=h[i : i + 1], c=c[i : i + 1], mean0=mean0[i : i + 1]), rule, 25
        ).loss
        for i in range(d)
    )
    np.testing.assert_allclose(total, parts, rtol=1e-12)
    permuted = mo.loss_curve(Problem(h=h[perm], c=c[perm], mean0=mean0[perm]), rule, 25).loss
    np.testing.assert_allclose(permuted, total, rtol=1e-12)


@given(batch=st.integers(1, 1 << 20), beta=betas(high=0.99), k=ks(6))
def test_noise_driven_moments_scale_as_one_over_batch(batch, beta, k):
    h = np.array([0.1, 0.7, 1.5])
    rule = SMA(SGD(1.0), k, beta)
    one = mo.loss_curve(Problem(h=h, c=2.0, batch=1, var0=0.0), rule, 20).loss
    many = mo.loss_curve(Problem(h=h, c=2.0, batch=batch, var0=0.0), rule, 20).loss
    np.testing.assert_allclose(many, one / batch, rtol=1e-13)
    np.testing.assert_allclose(
        mo.stationary_variance(rule, h, np.full(3, 2.0 / batch)),
        mo.stationary_variance(rule, h, np.full(3, 2.0)) / batch,
        rtol=1e-12,
    )


# ---- reductions in the moment engine -------------------------------------------------------------


@given(
    lr=st.floats(0.05, 1.0),
    beta=betas(high=0.99),
    alpha=alphas(1e-3),
    k=ks(8),
    mu=mus(),
    data=st.data(),
)
def test_reductions_in_exact_moments(lr, beta, alpha, k, mu, data):
    h = np.array([data.draw(st.floats(0.01, 1.9 / lr)) for _ in range(3)])
    p = Problem(h=h, c=1.0, mean0=1.5, var0=0.3)
    steps = 4 * k + 3
    # Momentum mu = 0 is SGD, bit for bit, on (x, y) (momentum also tracks v = -lr*g)
    for a, b in zip(
        mo.iterate(p, Momentum(lr, 0.0), steps), mo.iterate(p, SGD(lr), steps), strict=True
    ):
        np.testing.assert_array_equal(a.mean[:, :2], b.mean[:, :2])
        np.testing.assert_array_equal(a.cov[:, :2, :2], b.cov[:, :2, :2])
    np.testing.assert_array_equal(
        mo.stationary_variance(Momentum(lr, 0.0), h, np.ones(3)),
        mo.stationary_variance(SGD(lr), h, np.ones(3)),
    )
    # EMA is SMA with k = 1, bit for bit
    for base in (SGD(lr), Momentum(lr, mu)):
        for a, b in zip(
            mo.iterate(p, EMA(base, beta), steps),
            mo.iterate(p, SMA(base, 1, beta), steps),
            strict=True,
        ):
            np.testing.assert_array_equal(a.mean, b.mean)
            np.testing.assert_array_equal(a.cov, b.cov)
    # Lookahead(alpha) = SMA(feedback, beta = 1 - alpha) at every step
    for base in (SGD(lr), Momentum(lr, mu)):
        for a, b in zip(
            mo.iterate(p, Lookahead(base, k, alpha), steps),
            mo.iterate(p, SMA(base, k, 1 - alpha, feedback=True), steps),
            strict=True,
        ):
            np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(a.cov, b.cov, rtol=1e-12, atol=1e-12)
    # Lookahead alpha = 1: the readout is SGD's x at every sampling step
    la = readouts(p, Lookahead(SGD(lr), k, 1.0), steps)
    sgd = readouts(p, SGD(lr), steps)
    for t in range(0, steps + 1, k):
        np.testing.assert_allclose(la[0][t], sgd[0][t], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(la[1][t], sgd[1][t], rtol=1e-12, atol=1e-14)


def test_transition_of_sgd_and_momentum():
    h = np.array([0.5, 2.0])
    a, b = mo.transition(SGD(0.25), 1, h)
    assert a.shape == (2, 3, 3) and b.shape == (2, 3)
    np.testing.assert_allclose(a[:, 0, 0], 1 - 0.25 * h)
    np.testing.assert_allclose(b[:, 0], -0.25)
    np.testing.assert_array_equal(a[:, 1, 1], 1.0)  # y untouched by SGD
    a, b = mo.transition(Momentum(0.25, 0.5), 1, h)
    # v' = mu v - lr h x - lr eps ; x' = x + v'
    np.testing.assert_allclose(a[:, 2, 2], 0.5)
    np.testing.assert_allclose(a[:, 2, 0], -0.25 * h)
    np.testing.assert_allclose(a[:, 0, 0], 1 - 0.25 * h)
    np.testing.assert_allclose(a[:, 0, 2], 0.5)
    np.testing.assert_allclose(b[:, [0, 2]], -0.25)


# ---- Polyak-Ruppert ------------------------------------------------------------------------------


def propagate(rule, h, sigma2, mean, cov, steps):
    """Exact moment recursion from an arbitrary joint (x, y, v) distribution."""
    for t in range(1, steps + 1):
        a, b = mo.transition(rule, t, h)
        mean = np.einsum("dij,dj->di", a, mean)
        cov = a @ cov @ a.transpose(0, 2, 1) + sigma2[:, None, None] * (
            b[:, :, None] * b[:, None, :]
        )
    return mean, cov


@given(lr=lrs, k=ks(5), n=st.integers(1, 60), data=st.data())
def test_polyak_closed_form_equals_exact_moments_from_stationarity(lr, k, n, data):
    """polyak_variance(n) = Var y after n samples when x_0 ~ N(0, V*) (x_0 stationary)."""
    h = data.draw(curvatures(lr, rho=rhos(1e-3, 2 - 1e-3)))
    sigma2 = np.array([data.draw(sigma2s) for _ in h])
    v_star = cf.sgd_variance(lr, h, sigma2)
    p = Problem(h=h, c=sigma2, mean0=0.0, var0=v_star)
    rule = Polyak(SGD(lr), k)
    mean, var = readouts(p, rule, n * k)
    np.testing.assert_allclose(var[n * k], cf.polyak_variance(rule, h, sigma2, n), rtol=1e-9)
    assert np.all(mean == 0)
    # the fast weights stay stationary throughout
    np.testing.assert_allclose(list(mo.iterate(p, rule, n * k))[-1].cov[:, 0, 0], v_star, rtol=1e-9)


@given(lr=st.floats(0.05, 2.0), mu=mus(0.0, 0.9), k=ks(4), n=st.integers(1, 40), data=st.data())
def test_polyak_over_momentum_equals_exact_moments_from_stationarity(lr, mu, k, n, data):
    h = data.draw(momentum_curvatures(lr, mu, d=2))
    h = h[(lr * h > 1e-3) & (lr * h < 2 * (1 + mu) - 1e-3)]
    assume(h.size)
    sigma2 = np.ones_like(h)
    stat = mo.stationary_covariance(Momentum(lr, mu), h, sigma2)  # over (x, v)
    cov = np.zeros((h.size, 3, 3))
    idx = [0, 1, 2]  # x, y, v with y_0 = x_0
    src = [0, 0, 1]
    for i, si in zip(idx, src, strict=True):
        for j, sj in zip(idx, src, strict=True):
            cov[:, i, j] = stat[:, si, sj]
    rule = Polyak(Momentum(lr, mu), k)
    _, cov = propagate(rule, h, sigma2, np.zeros((h.size, 3)), cov, n * k)
    np.testing.assert_allclose(cov[:, 1, 1], cf.polyak_variance(rule, h, sigma2, n), rtol=1e-8)


@pytest.mark.parametrize("rho", [0.1, 0.5, 1.0, 1.5, 1.9])
def test_polyak_n_var_approaches_sigma2_over_h2_in_exact_moments(rho):
    h, sigma2, n = 2.0, 3.0, 3000
    lr = rho / h
    v_star = cf.sgd_variance(lr, as_array(h), as_array(sigma2))
    p = Problem(h=[h], c=[sigma2], var0=v_star)
    _, var = readouts(p, Polyak(SGD(lr)), n)
    r = 1 - rho
    bound = 4 * abs(r) * v_star[0] / (n * (1 - r) ** 2)
    assert abs(n * var[n, 0] - sigma2 / h**2) <= bound + 1e-9


# ---- divergence ----------------------------------------------------------------------------------


@given(lr=st.floats(0.1, 2.0), sigma2=sigma2s, var0=st.floats(0, 10))
def test_variance_grows_linearly_at_rho_two(lr, sigma2, var0):
    h = 2.0 / lr
    assume(lr * h == 2.0)
    p = Problem(h=[h], c=[sigma2], var0=var0)
    _, var = readouts(p, SGD(lr), 50)
    t = np.arange(51)
    np.testing.assert_allclose(var[:, 0], var0 + lr**2 * sigma2 * t, rtol=1e-12)


@pytest.mark.parametrize("rho", [2.5, 3.0])
def test_variance_grows_geometrically_beyond_rho_two(rho):
    p = Problem(h=[rho], c=[1.0], var0=1.0)
    _, var = readouts(p, SGD(1.0), 40)
    r2 = (rho - 1) ** 2
    t = np.arange(41)
    want = r2**t * 1.0 + (r2**t - 1) / (r2 - 1)
    np.testing.assert_allclose(var[:, 0], want, rtol=1e-10)


@pytest.mark.parametrize("rho", [2.0, 2.5, 10.0])
@pytest.mark.parametrize(
    "make",
    [
        SGD,
        lambda lr: SMA(SGD(lr), 3, 0.5),
        lambda lr: Lookahead(SGD(lr), 2, 0.5),
        lambda lr: EMA(SGD(lr), 0.5),
        lambda lr: SMA(SGD(lr), 2, 0.5, feedback=True),
    ],
)
def test_stationary_variance_raises_without_steady_state(make, rho):
    with pytest.raises(ValueError, match=r"no steady state.*rho"):
        mo.stationary_variance(make(1.0), np.array([0.5, rho]), np.ones(2))


def test_lookahead_with_odd_k_is_stable_at_rho_two():
    """The fast weights restart every k steps, so Lookahead needs only |1 - alpha(1 - u)| < 1: at
    rho = 2, k = 3 (u = -1), alpha = 0.5 the slow weights are phi' = 0*phi + eta/2 with
    Var eta = 3*lr^2*sigma2. Both the Lyapunov engine and the closed form give 0.75."""
    rule = Lookahead(SGD(1.0), 3, 0.5)
    assert mo.stationary_variance(rule, as_array(2.0), ONE)[0] == pytest.approx(0.75, rel=1e-12)
    assert cf.steady_variance(rule, as_array(2.0), ONE)[0] == pytest.approx(0.75, rel=1e-12)


@given(rho=st.floats(2.0, 3.5), k=st.sampled_from([1, 2, 3, 4, 5, 7]), alpha=st.floats(0.05, 1.0))
def test_lookahead_beyond_rho_two_closed_form_equals_lyapunov_or_both_raise(rho, k, alpha):
    rule = Lookahead(SGD(1.0), k, alpha)
    c = 1 - alpha * (1 - (1 - rho) ** k)
    assume(abs(abs(c) - 1) > 1e-6)  # away from the stability boundary, where Lyapunov is ill-posed
    if abs(c) < 1:
        exact = mo.stationary_variance(rule, as_array(rho), ONE)[0]
        assert cf.steady_variance(rule, as_array(rho), ONE)[0] == pytest.approx(exact, rel=1e-8)
    else:
        for engine in (cf.steady_variance, mo.stationary_variance):
            with pytest.raises(ValueError, match="no steady state"):
                engine(rule, as_array(rho), ONE)


def test_stationary_variance_raises_for_unstable_momentum():
    with pytest.raises(ValueError, match="no steady state"):
        mo.stationary_variance(Momentum(1.0, 0.5), as_array(3.0), ONE)  # 3 >= 2(1+mu)
    with pytest.raises(ValueError, match="no steady state"):
        mo.stationary_variance(Momentum(1.0, -0.5), as_array(1.0), ONE)  # 1 >= 2(1+mu)


def test_stationary_variance_rejects_polyak_and_bad_inputs():
    with pytest.raises(ValueError, match="Polyak"):
        mo.stationary_variance(Polyak(SGD(0.5)), ONE, ONE)
    with pytest.raises(ValueError, match="h"):
        mo.stationary_variance(SGD(0.5), as_array(-1.0), ONE)
    with pytest.raises(ValueError, match="h"):
        mo.stationary_variance(SGD(0.5), as_array(np.nan), ONE)
    with pytest.raises(ValueError, match="sigma2"):
        mo.stationary_variance(SGD(0.5), ONE, as_array(-1.0))


def test_initial_moments():
    p = Problem(h=[1.0, 2.0], c=1.0, mean0=[1.0, -2.0], var0=[0.5, 3.0])
    m = mo.initial_moments(p)
    assert m.t == 0
    np.testing.assert_array_equal(m.mean, [[1.0, 1.0, 0.0], [-2.0, -2.0, 0.0]])
    np.testing.assert_array_equal(m.cov[0], [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 0]])
    np.testing.assert_array_equal(m.cov[1], [[3.0, 3.0, 0], [3.0, 3.0, 0], [0, 0, 0]])


# ---- moments_at: any t in O(log t) ---------------------------------------------------------------

JUMP_RULES = [
    SGD(1.0),
    Momentum(0.5, 0.5),
    SMA(SGD(1.0), 3, 0.8),
    SMA(SGD(1.0), 3, 0.8, feedback=True),
    Lookahead(SGD(1.0), 4, 0.5),
    EMA(SGD(1.0), 0.9),
    SMA(Momentum(0.5, 0.5), 3, 0.7),
    Polyak(SGD(1.0), 2),
]


@pytest.mark.parametrize("rule", JUMP_RULES, ids=lambda r: r.label())
def test_moments_at_equals_iterate_at_every_step(rule):
    problem = Problem(h=[0.02, 0.5, 1.0, 1.6], c=[1.0, 0.5, 2.0, 1.0], mean0=1.0, var0=0.5)
    stepped = list(mo.iterate(problem, rule, 40))
    for t in range(41):
        jumped = mo.moments_at(problem, rule, t)
        assert jumped.t == t
        np.testing.assert_allclose(jumped.mean, stepped[t].mean, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(jumped.cov, stepped[t].cov, rtol=1e-11, atol=1e-13)


def test_moments_at_with_a_tie_equals_iterate():
    from nqm.embedding import Tie

    problem = Problem(h=[1.0, 1.0, 0.5], c=1.0, mean0=1.0, var0=0.5)
    rule = SMA(SGD(0.5), 3, 0.8)
    for tie in (Tie([1, 2], [0, 0], [0.5, -2.0], [0.0, 0.3]), Tie([1], [0], [0.5], [0.2], start=7)):
        stepped = list(mo.iterate(problem, rule, 20, tie))
        for t in (0, 3, 6, 7, 8, 20):
            jumped = mo.moments_at(problem, rule, t, tie)
            np.testing.assert_allclose(jumped.mean, stepped[t].mean, rtol=1e-11, atol=1e-13)
            np.testing.assert_allclose(jumped.cov, stepped[t].cov, rtol=1e-11, atol=1e-13)


def test_moments_at_a_huge_t_is_the_steady_state_and_fast():
    rule = SMA(SGD(0.3), 7, 0.9)
    problem = Problem(h=[2.0, 0.01], c=2.0, mean0=3.0, var0=1.0)
    mean, var = mo.moments_at(problem, rule, 10**12).readout(rule)
    np.testing.assert_allclose(mean, 0.0, atol=1e-300)
    np.testing.assert_allclose(var, cf.steady_variance(rule, problem.h, problem.sigma2), rtol=1e-9)


def test_stationary_variance_with_a_huge_period_uses_squaring():
    """k = 10^9 fast steps between samples: the fast weights forget the reset, u = 0, and
    Lookahead's ratio is alpha / (2 - alpha) of the base variance."""
    rule = Lookahead(Momentum(0.5, 0.5), 10**9, 0.5)
    base = cf.momentum_variance(0.5, 0.5, ONE, ONE)
    assert mo.stationary_variance(rule, ONE, ONE)[0] == pytest.approx(base[0] / 3, rel=1e-9)
