"""nqm.closed_form: the steady-state formulas of proofs/ (Results 1, 2, 4, 5 and Polyak averaging),
the theorem's invariants (Result 3) and the exact fixed points (reference tables A-D, their decimals
written out below), checked against exact rational arithmetic where the value is not a printed
constant."""

from __future__ import annotations

import math
import re
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nqm import closed_form as cf
from nqm.problem import Problem, standard
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak

from .strategies import (
    alphas,
    as_array,
    assert_printed,
    batches,
    betas,
    ks,
    lookahead_ratio_exact,
    lrs,
    mus,
    rel_err,
    rhos,
    sgd_variance_exact,
    sigma2s,
    sma_ratio_exact,
)

EPS = np.finfo(np.float64).eps
ONE = as_array(1.0)


def R(beta, rho, k) -> float:
    return float(cf.sma_ratio(beta, rho, k))


def R_LA(alpha, rho, k) -> float:
    return float(cf.lookahead_ratio(alpha, rho, k))


# ---- formulas against exact arithmetic -----------------------------------------------------------


@given(rho=rhos(), k=ks())
def test_lag_correlation_is_accurate(rho, k):
    u, one_minus_u, one_plus_u = (float(v) for v in cf.lag_correlation(rho, k))
    exact_u = (1 - Fraction(rho)) ** k
    assert math.copysign(1.0, u) == (-1.0 if exact_u < 0 else 1.0) or exact_u == 0
    if exact_u != 0:
        # u = exp(k log1p(-delta)): the exponent's own rounding, |log u| * eps, becomes u's
        # relative error, so a tiny u (1e-227: |log u| = 523) is accurate to about 1e-13 only.
        tolerance = max(1e-13, 2 * EPS * abs(math.log(abs(u)))) if u else 1e-13
        assert rel_err(u, exact_u) < tolerance or abs(u) < 1e-300
    assert rel_err(one_minus_u, 1 - exact_u) < 1e-13
    assert rel_err(one_plus_u, 1 + exact_u) < 1e-13


@given(beta=betas(), rho=rhos(), k=ks())
def test_sma_ratio_matches_exact_formula(beta, rho, k):
    assert rel_err(R(beta, rho, k), sma_ratio_exact(beta, rho, k)) < 1e-13


@given(alpha=alphas(), rho=rhos(), k=ks())
def test_lookahead_ratio_matches_exact_formula(alpha, rho, k):
    assert rel_err(R_LA(alpha, rho, k), lookahead_ratio_exact(alpha, rho, k)) < 1e-13


@given(beta=betas(), rho=rhos(), k=ks())
def test_sma_reduction_is_one_minus_r_exactly(beta, rho, k):
    """1 - R, formed without cancellation: accurate relative to itself even where R rounds to 1
    (above the subnormal range, where a result carries fewer significant bits than the tolerance)."""
    assume(beta == 0 or beta > 1e-280)
    cut = float(cf.sma_reduction(beta, rho, k))
    exact = 1 - sma_ratio_exact(beta, rho, k)
    assert exact == 0 or rel_err(cut, exact) < 1e-12
    assert abs(R(beta, rho, k) + cut - 1) <= 4 * np.finfo(float).eps


@given(alpha=alphas(), rho=rhos(), k=ks())
def test_lookahead_reduction_is_one_minus_r_la_exactly(alpha, rho, k):
    cut = float(cf.lookahead_reduction(alpha, rho, k))
    exact = 1 - lookahead_ratio_exact(alpha, rho, k)
    assert exact == 0 or rel_err(cut, exact) < 1e-12
    assert abs(R_LA(alpha, rho, k) + cut - 1) <= 4 * np.finfo(float).eps


def test_ratios_broadcast_over_arrays():
    beta = np.array([[0.1], [0.5], [0.9]])
    rho = np.array([1e-8, 0.3, 1.0, 1.7])
    k = np.array([1, 2, 5, 7])
    got = cf.sma_ratio(beta, rho, k)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert rel_err(got[i, j], sma_ratio_exact(beta[i, 0], rho[j], int(k[j]))) < 1e-13
    got = cf.lookahead_ratio(1 - beta, rho, k)
    for i in range(3):
        for j in range(4):
            exact = lookahead_ratio_exact(1 - beta[i, 0], rho[j], int(k[j]))
            assert rel_err(got[i, j], exact) < 1e-13


@given(lr=lrs, rho=rhos(), sigma2=sigma2s)
def test_sgd_variance_matches_exact_formula(lr, rho, sigma2):
    h = rho / lr
    assume(lr * h < 2.0)
    v = cf.sgd_variance(lr, as_array(h), as_array(sigma2))
    assert v.shape == (1,)
    assert rel_err(v[0], sgd_variance_exact(lr, h, sigma2)) < 1e-14


@given(lr=lrs, mu=mus(-0.95, 0.99), frac=st.floats(1e-6, 1 - 1e-6), sigma2=sigma2s)
def test_momentum_variance_matches_exact_formula(lr, mu, frac, sigma2):
    rho = frac * 2 * (1 + mu)
    h = rho / lr
    assume(lr * h < 2 * (1 + mu))
    v = cf.momentum_variance(lr, mu, as_array(h), as_array(sigma2))[0]
    m, rho_x = Fraction(mu), Fraction(lr * h)
    exact = (
        Fraction(lr) * Fraction(sigma2) * (1 + m) / ((1 - m) * Fraction(h) * (2 * (1 + m) - rho_x))
    )
    # 2(1+mu) - rho loses relative accuracy eps * 2(1+mu) / gap near the stability edge.
    gap = 2 * (1 + mu) - lr * h
    assert rel_err(v, exact) < 1e-14 * (1 + 4 * (1 + mu) / gap)


@given(lr=lrs, beta=betas(), k=ks(), rho=rhos(), sigma2=sigma2s)
def test_steady_variance_of_averages_is_sgd_variance_times_ratio(lr, beta, k, rho, sigma2):
    h = rho / lr
    assume(lr * h < 2.0)
    hh, s2 = as_array(h), as_array(sigma2)
    rho_x = lr * h
    v_sgd = cf.sgd_variance(lr, hh, s2)
    np.testing.assert_array_equal(cf.steady_variance(SGD(lr), hh, s2), v_sgd)
    np.testing.assert_allclose(
        cf.steady_variance(SMA(SGD(lr), k, beta), hh, s2), v_sgd * R(beta, rho_x, k), rtol=1e-15
    )
    la = Lookahead(SGD(lr), k, 1 - beta)
    np.testing.assert_allclose(
        cf.steady_variance(la, hh, s2), v_sgd * R_LA(1 - beta, rho_x, k), rtol=1e-15
    )
    # Lookahead(alpha) and SMA(feedback, beta = 1 - alpha) are the same closed form.
    np.testing.assert_allclose(
        cf.steady_variance(SMA(SGD(lr), k, beta, feedback=True), hh, s2),
        cf.steady_variance(la, hh, s2),
        rtol=1e-15,
    )
    # EMA is SMA with k = 1.
    np.testing.assert_array_equal(
        cf.steady_variance(EMA(SGD(lr), beta), hh, s2),
        cf.steady_variance(SMA(SGD(lr), 1, beta), hh, s2),
    )


# ---- reductions ----------------------------------------------------------------------------------


@given(lr=lrs, rho=rhos(high=1.99), sigma2=sigma2s, beta=betas(high=0.999), k=ks(50))
def test_momentum_with_mu_zero_is_sgd(lr, rho, sigma2, beta, k):
    """Same value through two different code paths: the closed-form SGD ratio and the Yule-Walker
    autocovariance sum used for SMA over momentum."""
    h = as_array(rho / lr)
    s2 = as_array(sigma2)
    np.testing.assert_allclose(
        cf.steady_variance(Momentum(lr, 0.0), h, s2), cf.sgd_variance(lr, h, s2), rtol=1e-15
    )
    np.testing.assert_allclose(
        cf.steady_variance(SMA(Momentum(lr, 0.0), k, beta), h, s2),
        cf.steady_variance(SMA(SGD(lr), k, beta), h, s2),
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        cf.steady_variance(EMA(Momentum(lr, 0.0), beta), h, s2),
        cf.steady_variance(EMA(SGD(lr), beta), h, s2),
        rtol=1e-9,
    )


@given(rho=rhos(), k=ks())
def test_lookahead_alpha_one_has_ratio_one(rho, k):
    assert R_LA(1.0, rho, k) == 1.0
    h = as_array(rho)
    np.testing.assert_array_equal(
        cf.steady_variance(Lookahead(SGD(1.0), k, 1.0), h, ONE), cf.sgd_variance(1.0, h, ONE)
    )


@given(rho=rhos(), k=ks())
def test_beta_zero_has_ratio_one(rho, k):
    assert R(0.0, rho, k) == 1.0


@given(lr=lrs, rho=rhos(high=1.99), mu=mus(), beta=betas(), k=ks(50))
def test_steady_ratio_is_relative_to_sgd_at_the_same_lr(lr, rho, mu, beta, k):
    h = as_array(rho / lr)
    assert cf.steady_ratio(SGD(lr), h)[0] == 1.0
    np.testing.assert_allclose(
        cf.steady_ratio(SMA(SGD(lr), k, beta), h), R(beta, lr * h[0], k), rtol=1e-14
    )
    want = cf.steady_variance(Momentum(lr, mu), h, ONE) / cf.sgd_variance(lr, h, ONE)
    np.testing.assert_allclose(cf.steady_ratio(Momentum(lr, mu), h), want, rtol=1e-14)


# ---- strict reduction and bounds (Result 3) ------------------------------------------------------


@given(beta=betas(1e-6, 1 - 1e-9), rho=rhos(), k=ks())
def test_sma_strictly_reduces_variance(beta, rho, k):
    r = R(beta, rho, k)
    assert 0.0 < r < 1.0
    h = as_array(rho)
    assert cf.steady_variance(SMA(SGD(1.0), k, beta), h, ONE)[0] < cf.sgd_variance(1.0, h, ONE)[0]


@given(alpha=alphas(1e-6, 1 - 1e-6), rho=rhos(), k=ks())
def test_lookahead_strictly_reduces_variance(alpha, rho, k):
    r = R_LA(alpha, rho, k)
    assert 0.0 < r < 1.0
    h = as_array(rho)
    la = cf.steady_variance(Lookahead(SGD(1.0), k, alpha), h, ONE)[0]
    assert la < cf.sgd_variance(1.0, h, ONE)[0]


@given(beta=betas(1e-4, 1 - 1e-6), rho=rhos(), k=ks())
def test_sma_ratio_lower_bound(beta, rho, k):
    """((1-beta)/(1+beta))^2 < R: strict in exact arithmetic, and the float64 value keeps it (the
    margin is at least ~1e-13 relative on these ranges)."""
    lower = ((1 - beta) / (1 + beta)) ** 2
    exact_lower = ((1 - Fraction(beta)) / (1 + Fraction(beta))) ** 2
    assert exact_lower < sma_ratio_exact(beta, rho, k) < 1
    assert lower < R(beta, rho, k) < 1.0


@given(beta=betas(), k=ks())
def test_sma_ratio_at_rho_one_is_independent_samples(beta, k):
    """u = 0 at rho = 1: R = (1-beta)/(1+beta) exactly, and R_LA = alpha/(2-alpha) = R_SMA."""
    want = (1 - beta) / (1 + beta)
    assert R(beta, 1.0, k) == pytest.approx(want, rel=4 * EPS, abs=0)
    alpha = 1 - beta
    assert R_LA(alpha, 1.0, k) == pytest.approx(alpha / (2 - alpha), rel=4 * EPS, abs=0)
    assert R_LA(alpha, 1.0, k) == pytest.approx(R(beta, 1.0, k), rel=8 * EPS, abs=0)


@given(beta=betas(0.01, 0.99), k=st.integers(0, 99).map(lambda j: 2 * j + 1))
def test_sma_ratio_approaches_lower_bound_as_u_tends_to_minus_one(beta, k):
    """Odd k, rho -> 2: u -> -1 and R -> ((1-beta)/(1+beta))^2 from above; with 1 + u = delta,
    R / lower - 1 = 2*beta*delta/(1-beta^2) + O(delta^2), and delta ~ k*1e-9 here."""
    lower = ((1 - beta) / (1 + beta)) ** 2
    r = R(beta, 2.0 - 1e-9, k)
    delta = k * 1e-9
    first_order = 2 * beta * delta / (1 - beta**2)
    assert r / lower - 1 == pytest.approx(first_order, rel=1e-3)


# ---- monotonicity (Result 3, Step 5) -------------------------------------------------------------


@given(b1=betas(), b2=betas(), rho=rhos(), k=ks())
def test_sma_ratio_strictly_decreases_in_beta(b1, b2, rho, k):
    assume(abs(b1 - b2) >= 1e-3)
    lo, hi = sorted((b1, b2))
    assert R(hi, rho, k) < R(lo, rho, k)


@given(beta=betas(1e-3, 1 - 1e-6), rho1=rhos(), rho2=rhos(), k=ks())
def test_sma_ratio_strictly_increases_in_u(beta, rho1, rho2, k):
    u1, u2 = (1 - Fraction(rho1)) ** k, (1 - Fraction(rho2)) ** k
    assume(abs(u1 - u2) >= Fraction(1, 10**6))
    if u1 > u2:
        rho1, rho2 = rho2, rho1
    # now u(rho1) < u(rho2)
    assert R(beta, rho1, k) < R(beta, rho2, k)


@given(beta=betas(), rho=rhos(high=1.0), k=ks(199))
def test_sma_ratio_non_increasing_in_k_for_rho_up_to_one(beta, rho, k):
    assert R(beta, rho, k + 1) <= R(beta, rho, k) * (1 + 4 * EPS)


@given(alpha=alphas(1e-3, 1 - 1e-3), rho=rhos(high=1.0), k=ks(199))
def test_lookahead_ratio_non_increasing_in_k_for_rho_up_to_one(alpha, rho, k):
    assert R_LA(alpha, rho, k + 1) <= R_LA(alpha, rho, k) * (1 + 4 * EPS)


def test_non_monotone_in_k_counterexample():
    """Result 6, Step 1: rho = 1.9, beta = 0.5 (u alternates sign)."""
    want = {1: "0.12644", 2: "0.78711", 3: "0.15525", 5: "0.18137", 10: "0.47410"}
    for k, printed in want.items():
        assert_printed(R(0.5, 1.9, k), printed)
    assert R(0.5, 1.9, 2) > R(0.5, 1.9, 1) and R(0.5, 1.9, 3) < R(0.5, 1.9, 2)


# ---- limits (Result 3) ---------------------------------------------------------------------------


@given(rho=rhos(0.01, 1.99), k=ks())
def test_ratios_vanish_as_beta_tends_to_one(rho, k):
    """As beta -> 1 with u fixed, R ~ (1-beta)(1+u)/(2(1-u))."""
    beta = 1 - 1e-9
    u = float((1 - Fraction(rho)) ** k)
    asymptote = (1 - beta) * (1 + u) / (2 * (1 - u))
    r = R(beta, rho, k)
    assert 0.0 < r == pytest.approx(asymptote, rel=1e-6)
    assert r < 1e-6
    # Lookahead: R_LA ~ alpha(1+u)/2 as alpha = 1 - beta -> 0
    alpha = 1 - beta
    assert 0.0 < R_LA(alpha, rho, k) == pytest.approx(alpha * (1 + u) / 2, rel=1e-6)


@given(beta=betas(0.01, 0.99), k=ks(20))
def test_ratios_tend_to_one_as_rho_tends_to_zero(beta, k):
    """1 - R ~ 2*beta*k*rho/(1-beta^2) (relative correction O(k*rho/(1-beta)) <= 2e-5 here) and
    R_LA -> alpha (u -> 1) as rho -> 0."""
    for rho in (1e-8, 1e-10):
        slope = 2 * beta * k * rho / (1 - beta**2)
        assert 1 - R(beta, rho, k) == pytest.approx(slope, rel=1e-3)
        alpha = 1 - beta
        assert R_LA(alpha, rho, k) == pytest.approx(alpha, rel=2 * k * rho / alpha + 1e-14)


@given(alpha=alphas(0.01, 0.99), rho=rhos(), k=ks())
def test_lookahead_ratio_lies_between_alpha_bounds(alpha, rho, k):
    """R_LA increases in u from 0 (u = -1) to alpha (u = 1), so 0 < R_LA < alpha."""
    assert 0.0 < R_LA(alpha, rho, k) < alpha


# ---- no ordering between SMA and Lookahead (Result 4, Step 9) ------------------------------------


def test_no_ordering_between_sma_and_lookahead():
    # flat direction: Lookahead lower
    assert_printed(R_LA(0.5, 0.1, 5), "0.44297")
    assert_printed(R(0.5, 0.1, 5), "0.61262")
    assert R_LA(0.5, 0.1, 5) < R(0.5, 0.1, 5)
    # elsewhere: SMA slightly lower
    assert_printed(R(0.2, 1.5, 5), "0.65839")
    assert_printed(R_LA(0.8, 1.5, 5), "0.65957")
    assert R(0.2, 1.5, 5) < R_LA(0.8, 1.5, 5)


@given(b1=betas(), rho=rhos(), k=ks(100))
def test_equal_horizon_regression(b1, rho, k):
    """Checked by Hypothesis, not proven (Result 3): per-step EMA with beta1 is never worse than SMA with
    beta1**k."""
    bk = b1**k  # rounded: R moves by ~eps/(1-bk) relative, so allow that much
    assert R(b1, rho, 1) <= R(bk, rho, k) * (1 + 8 * EPS + 4 * EPS / (1 - bk))


def test_equal_horizon_example():
    assert_printed(R(0.9, 0.5, 1), "0.13876")
    assert_printed(R(0.9**5, 0.5, 5), "0.26715")


# ---- scaling and additivity ----------------------------------------------------------------------


noise_levels = st.one_of(st.just(0.0), st.floats(1e-6, 10.0))


@given(lr=st.floats(0.01, 2.0), batch=batches, d=st.integers(1, 6), data=st.data())
def test_steady_loss_scales_as_one_over_batch(lr, batch, d, data):
    h = np.array(data.draw(st.lists(st.floats(1e-3, 1.9 / lr), min_size=d, max_size=d)))
    c = np.array(data.draw(st.lists(noise_levels, min_size=d, max_size=d)))
    beta = data.draw(betas(high=0.999))
    k = data.draw(ks(50))
    for rule in (
        SGD(lr),
        SMA(SGD(lr), k, beta),
        Lookahead(SGD(lr), k, 1 - beta),
        SMA(Momentum(lr / 2, 0.5), k, beta),
    ):
        one = cf.steady_loss(Problem(h=h, c=c, batch=1), rule)
        many = cf.steady_loss(Problem(h=h, c=c, batch=batch), rule)
        assert many == pytest.approx(one / batch, rel=1e-13, abs=1e-300)
        v1 = cf.steady_variance(rule, h, c)
        vb = cf.steady_variance(rule, h, c / batch)
        np.testing.assert_allclose(vb, v1 / batch, rtol=1e-13)


@given(beta=betas(), k=ks(), rho=rhos(), s1=sigma2s, s2=sigma2s, lr=lrs)
def test_ratio_is_independent_of_noise_level(beta, k, rho, s1, s2, lr):
    h = as_array(rho / lr)
    assume(lr * h[0] < 2.0)
    for rule in (SMA(SGD(lr), k, beta), Lookahead(SGD(lr), k, 1 - beta)):
        r1 = cf.steady_variance(rule, h, as_array(s1)) / cf.sgd_variance(lr, h, as_array(s1))
        r2 = cf.steady_variance(rule, h, as_array(s2)) / cf.sgd_variance(lr, h, as_array(s2))
        np.testing.assert_allclose(r1, r2, rtol=1e-14)


@given(rho=rhos(), lr=lrs, sigma2=sigma2s, scale=st.floats(0.125, 8.0))
def test_sgd_variance_depends_only_on_rho_and_lr_sigma2_over_h(rho, lr, sigma2, scale):
    """(lr, h, sigma2) -> (s*lr, h/s, sigma2/s^2) keeps rho and lr*sigma2/h, hence V*."""
    h = rho / lr
    v1 = cf.sgd_variance(lr, as_array(h), as_array(sigma2))[0]
    lr2, h2, s2 = lr * scale, h / scale, sigma2 / scale**2
    assume(lr2 * h2 < 2.0)
    v2 = cf.sgd_variance(lr2, as_array(h2), as_array(s2))[0]
    rho1, rho2 = lr * h, lr2 * h2
    # the two float products rho may differ by an ulp; near rho = 2 that is amplified by 1/(2-rho)
    assert v2 == pytest.approx(v1, rel=1e-14 + 4 * EPS * 2 / (2 - max(rho1, rho2)))


@given(lr=st.floats(0.01, 2.0), d=st.integers(1, 8), data=st.data())
def test_steady_loss_is_additive_and_permutation_invariant(lr, d, data):
    h = np.array(data.draw(st.lists(st.floats(1e-3, 1.99 / lr), min_size=d, max_size=d)))
    c = np.array(data.draw(st.lists(noise_levels, min_size=d, max_size=d)))
    batch = data.draw(st.integers(1, 64))
    perm = np.array(data.draw(st.permutations(range(d))))
    beta, k = data.draw(betas(high=0.999)), data.draw(ks(50))
    for rule in (
        SGD(lr),
        SMA(SGD(lr), k, beta),
        EMA(SGD(lr), beta),
        Lookahead(SGD(lr), k, 1 - beta),
    ):
        total = cf.steady_loss(Problem(h=h, c=c, batch=batch), rule)
        parts = [
            cf.steady_loss(Problem(h=h[i : i + 1], c=c[i : i + 1], batch=batch), rule)
            for i in range(d)
        ]
        assert total == pytest.approx(math.fsum(parts), rel=1e-12, abs=1e-300)
        permuted = cf.steady_loss(Problem(h=h[perm], c=c[perm], batch=batch), rule)
        assert permuted == pytest.approx(total, rel=1e-12, abs=1e-300)
        # steady loss = 1/2 sum h V
        v = cf.steady_variance(rule, h, c / batch)
        assert total == pytest.approx(0.5 * math.fsum(h * v), rel=1e-12, abs=1e-300)


# ---- numerics (docs/theory.md, "Numerics") -------------------------------------------------------


def test_ratio_near_rho_0_is_printed_to_8_digits():
    r = R(0.9, 1e-8, 5)
    assert_printed(r, "0.99999953")
    assert rel_err(r, sma_ratio_exact(0.9, 1e-8, 5)) < 1e-15


@pytest.mark.parametrize("rho", [1e-8, 3e-9, 1e-12, 2.0 - 1e-9, 2.0 - 1e-12])
@pytest.mark.parametrize("k", [1, 2, 5, 200])
@pytest.mark.parametrize("beta", [1e-3, 0.5, 0.9, 0.999])
def test_extreme_rho_is_finite_positive_and_accurate(rho, k, beta):
    h = as_array(rho)  # lr = 1 so rho = h exactly
    v_sgd = cf.sgd_variance(1.0, h, ONE)[0]
    assert np.isfinite(v_sgd) and v_sgd > 0
    assert rel_err(v_sgd, sgd_variance_exact(1.0, rho, 1.0)) < 1e-15
    for rule, exact in (
        (SMA(SGD(1.0), k, beta), sma_ratio_exact(beta, rho, k)),
        (Lookahead(SGD(1.0), k, 1 - beta), lookahead_ratio_exact(1 - beta, rho, k)),
    ):
        v = cf.steady_variance(rule, h, ONE)[0]
        assert np.isfinite(v) and 0 < v < v_sgd
        assert rel_err(v, sgd_variance_exact(1.0, rho, 1.0) * exact) < 1e-13
        ratio = cf.steady_ratio(rule, h)[0]
        assert 0 < ratio < 1


def test_no_epsilon_bias_at_small_rho():
    """The notebook's +1e-8 would bias V* by ~50% at rho = 1e-8; here V* = lr*sigma2/(h(2-rho))."""
    v = cf.sgd_variance(0.5, as_array(2e-8), ONE)[0]
    assert rel_err(v, sgd_variance_exact(0.5, 2e-8, 1.0)) < 1e-15
    assert v == pytest.approx(0.5 / (2e-8 * (2 - 1e-8)), rel=1e-15)


def test_rho_one_emits_no_warning():
    """u = 0 at rho = 1 is a valid point (the standard NQM at lr = 1 hits it): no RuntimeWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert R(0.5, 1.0, 5) == pytest.approx(1 / 3, rel=1e-15)
        assert R_LA(0.5, 1.0, 5) == pytest.approx(1 / 3, rel=1e-15)
        cf.steady_loss(standard(10), SMA(SGD(1.0), 5, 0.9))


# ---- divergence and validation -------------------------------------------------------------------


@pytest.mark.parametrize("rho", [2.0, 2.0 + 1e-12, 3.0, 100.0, np.inf])
def test_no_steady_state_for_rho_at_least_two(rho):
    h = as_array(rho)
    for call in (
        lambda: cf.sgd_variance(1.0, h, ONE),
        lambda: cf.steady_variance(SGD(1.0), h, ONE),
        lambda: cf.steady_variance(SMA(SGD(1.0), 3, 0.5), h, ONE),
        lambda: cf.steady_variance(Lookahead(SGD(1.0), 2, 0.5), h, ONE),  # even k: u >= 1
        lambda: cf.steady_ratio(SMA(SGD(1.0), 3, 0.5), h),
        lambda: cf.steady_loss(Problem(h=[0.5, rho], c=1.0), EMA(SGD(1.0), 0.5)),
    ):
        with pytest.raises(ValueError, match=r"rho|h"):
            call()


def test_divergence_message_names_rho_and_coordinate():
    with pytest.raises(ValueError, match=r"rho.*\(0, 2\).*coordinate 2"):
        cf.sgd_variance(1.0, np.array([0.5, 1.0, 2.5]), np.ones(3))


@pytest.mark.parametrize("rho", [0.0, -0.5, 2.0, 2.5, np.nan])
def test_ratio_functions_reject_rho_outside_zero_two(rho):
    with pytest.raises(ValueError, match="rho"):
        cf.sma_ratio(0.5, rho, 3)
    with pytest.raises(ValueError, match="rho"):
        cf.lookahead_ratio(0.5, rho, 3)
    with pytest.raises(ValueError, match="rho"):
        cf.lag_correlation(rho, 3)


@pytest.mark.parametrize("beta", [-1.0, -1.5, 1.0, 1.5, np.nan])
def test_sma_ratio_rejects_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        cf.sma_ratio(beta, 0.5, 3)


@given(beta=st.floats(-0.99, -1e-6), rho=rhos(), k=ks())
def test_negative_beta_raises_the_variance(beta, rho, k):
    """The formula extends to beta in (-1, 0) (no SMA rule accepts it): R > 1 there, so R = 1
    exactly on beta = 0, and 1 - R stays consistent with sma_reduction."""
    assert cf.sma_ratio(beta, rho, k) > 1
    assert cf.sma_reduction(beta, rho, k) < 0
    with pytest.raises(ValueError, match="beta"):
        SMA(SGD(0.5), k, beta)


def test_sma_ratio_rejects_beta_inside_array():
    with pytest.raises(ValueError, match=r"beta\[1\]"):
        cf.sma_ratio(np.array([0.5, 1.0]), 0.5, 3)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, np.nan])
def test_lookahead_ratio_rejects_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        cf.lookahead_ratio(alpha, 0.5, 3)


@pytest.mark.parametrize("k", [0, -1, 1.5, np.nan])
def test_ratio_functions_reject_k(k):
    with pytest.raises(ValueError, match="k"):
        cf.sma_ratio(0.5, 0.5, k)
    with pytest.raises(ValueError, match="k"):
        cf.lookahead_ratio(0.5, 0.5, k)


@pytest.mark.parametrize("h", [[1.0, -1.0], [np.nan], [0.0], [1.0, np.inf]])
def test_negative_or_nan_curvature_raises(h):
    with pytest.raises(ValueError, match="h"):
        cf.sgd_variance(0.1, np.array(h), np.ones(len(h)))
    with pytest.raises(ValueError, match="h"):
        cf.steady_variance(SMA(SGD(0.1), 2, 0.5), np.array(h), np.ones(len(h)))


@pytest.mark.parametrize("sigma2", [-1.0, np.nan, np.inf])
def test_bad_noise_raises(sigma2):
    with pytest.raises(ValueError, match="sigma2"):
        cf.sgd_variance(0.1, ONE, as_array(sigma2))
    with pytest.raises(ValueError, match="sigma2"):
        cf.momentum_variance(0.1, 0.5, ONE, as_array(sigma2))


@pytest.mark.parametrize(("lr", "mu"), [(1.0, 0.0), (3.8, 0.9), (1.0, -0.5), (5.0, 0.9)])
def test_momentum_needs_rho_below_two_one_plus_mu(lr, mu):
    with pytest.raises(ValueError, match=r"2\*\(1\+mu\)"):
        cf.momentum_variance(lr, mu, as_array(2.0), ONE)
    with pytest.raises(ValueError, match="rho"):
        cf.steady_variance(SMA(Momentum(lr, mu), 2, 0.5), as_array(2.0), ONE)


@pytest.mark.parametrize("mu", [-1.0, 1.0, 1.2])
def test_momentum_variance_rejects_mu(mu):
    with pytest.raises(ValueError, match="mu"):
        cf.momentum_variance(0.1, mu, ONE, ONE)


def test_polyak_has_no_steady_state():
    with pytest.raises(ValueError, match="Polyak"):
        cf.steady_variance(Polyak(SGD(0.5)), ONE, ONE)
    with pytest.raises(ValueError, match="Polyak"):
        cf.steady_loss(standard(10), Polyak(SGD(0.5), 3))


def test_lookahead_over_momentum_has_no_closed_form():
    with pytest.raises(NotImplementedError):
        cf.steady_variance(Lookahead(Momentum(0.5, 0.5), 3, 0.5), ONE, ONE)
    with pytest.raises(NotImplementedError):
        cf.steady_variance(SMA(Momentum(0.5, 0.5), 3, 0.5, feedback=True), ONE, ONE)


@pytest.mark.parametrize("n", [0, -1, 2.5])
def test_polyak_variance_rejects_n(n):
    with pytest.raises(ValueError, match="n"):
        cf.polyak_variance(Polyak(SGD(0.5)), ONE, ONE, n)


# ---- Polyak-Ruppert (numerical only: docs/theory.md) ---------------------------------------------


def polyak_exact(rho: float, k: int, n: int) -> Fraction:
    """(V*/n)[(1+u)/(1-u) - 2u(1-u^n)/(n(1-u)^2)] at h = sigma2 = 1, lr = rho."""
    v = sgd_variance_exact(rho, 1.0, 1.0)
    u = (1 - Fraction(rho)) ** k
    return v / n * ((1 + u) / (1 - u) - 2 * u * (1 - u**n) / (n * (1 - u) ** 2))


def polyak_tolerance(rho: float, k: int, n: int) -> float:
    """The documented accuracy: relative rounding error ~ eps / (n*(1-u)) (the bracket subtracts
    two terms of size ~2/(1-u)), plus a few ulps."""
    one_minus_u = float(1 - (1 - Fraction(rho)) ** k)
    return 1e-14 + 8 * EPS / (n * one_minus_u)


@given(rho=rhos(), k=ks(10), n=st.integers(1, 300))
def test_polyak_variance_matches_exact_formula(rho, k, n):
    got = cf.polyak_variance(Polyak(SGD(rho), k), ONE, ONE, n)[0]
    assert got > 0
    assert rel_err(got, polyak_exact(rho, k, n)) < polyak_tolerance(rho, k, n)


@pytest.mark.parametrize(("rho", "k"), [(1e-8, 1), (1e-7, 1), (1e-6, 1), (1e-7, 5), (2 - 1e-6, 2)])
@pytest.mark.parametrize("n", [1, 2, 10])
def test_polyak_variance_when_u_is_near_one(rho, k, n):
    """Regression: 1 - u**n used to be formed from the rounded u, an error ~eps/(1-u)**2 that made
    the variance negative at rho = 1e-8, n = 1."""
    got = cf.polyak_variance(Polyak(SGD(rho), k), ONE, ONE, n)[0]
    assert got > 0
    assert rel_err(got, polyak_exact(rho, k, n)) < polyak_tolerance(rho, k, n)


@given(lr=lrs, rho=rhos(), k=ks(10), sigma2=sigma2s)
def test_polyak_of_one_sample_is_the_base_variance(lr, rho, k, sigma2):
    h = as_array(rho / lr)
    assume(lr * h[0] < 2.0)
    got = cf.polyak_variance(Polyak(SGD(lr), k), h, as_array(sigma2), 1)
    want = cf.sgd_variance(lr, h, as_array(sigma2))
    np.testing.assert_allclose(got, want, rtol=polyak_tolerance(lr * h[0], k, 1))


@given(rho=rhos(1e-2, 2 - 1e-2), h=st.floats(1e-2, 1e2), sigma2=sigma2s)
def test_polyak_n_var_tends_to_sigma2_over_h2(rho, h, sigma2):
    """N*Var -> sigma2/h^2 for every rho, with the 1/N correction of the closed form."""
    lr = rho / h
    want = sigma2 / h**2
    v_sgd = cf.sgd_variance(lr, as_array(h), as_array(sigma2))[0]
    r = 1 - lr * h
    for n in (10**4, 10**6):
        nvar = n * cf.polyak_variance(Polyak(SGD(lr)), as_array(h), as_array(sigma2), n)[0]
        bound = 2 * abs(r) * v_sgd * 2 / (n * (1 - r) ** 2)
        assert abs(nvar - want) <= bound + 1e-9 * want


@given(lr=st.floats(0.05, 2.0), mu=mus(0.0, 0.9), frac=st.floats(0.05, 0.95), sigma2=sigma2s)
def test_polyak_over_momentum(lr, mu, frac, sigma2):
    """n = 1 is momentum's V*, and N*Var -> sigma2/h^2 as for SGD (1 - phi1 - phi2 = rho)."""
    h = frac * 2 * (1 + mu) / lr
    hh, s2 = as_array(h), as_array(sigma2)
    rule = Polyak(Momentum(lr, mu))
    np.testing.assert_allclose(
        cf.polyak_variance(rule, hh, s2, 1), cf.momentum_variance(lr, mu, hh, s2), rtol=1e-13
    )
    n = 5_000  # the term-by-term sum is O(n); the 1/n correction is < 2% on these ranges
    nvar = n * cf.polyak_variance(rule, hh, s2, n)[0]
    assert nvar == pytest.approx(sigma2 / h**2, rel=0.05)


def test_polyak_rho_one_emits_no_warning():
    """Regression: u = 0 at rho = 1 used to take np.log(0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cf.polyak_variance(Polyak(SGD(1.0)), ONE, ONE, 10)[0] == pytest.approx(0.1)


def test_polyak_fixed_points():
    """Reference table C (momentum, Result 5, Step 6) at h = sigma2 = 1."""

    def nvar(rho, n):
        return n * cf.polyak_variance(Polyak(SGD(rho)), ONE, ONE, n)[0]

    assert_printed(nvar(0.5, 10), "0.8667969")
    assert_printed(nvar(0.5, 100), "0.9866667")
    assert_printed(nvar(1.5, 10), "1.1332031")
    assert_printed(nvar(0.1, 4000), "0.9976316")
    for n in (1, 2, 7, 100):
        assert nvar(1.0, n) == pytest.approx(1.0, rel=1e-15)


# ---- fixed points: the reference tables A-D ------------------------------------------------------

TABLE_A = [
    # beta, R_SMA, V_SMA(s2=2), V_SMA(s2=4), R_LA, V_LA(s2=2), V_LA(s2=4)
    (0.5, "0.33676423", "0.07216376", "0.14432753", "0.33560115", "0.07191453", "0.14382906"),
    (0.8, "0.11294659", "0.02420284", "0.04840568", "0.11212132", "0.02402600", "0.04805199"),
    (0.9, "0.05361071", "0.01148801", "0.02297602", "0.05314189", "0.01138755", "0.02277509"),
    (0.2, "0.66940294", "0.14344349", "0.28688697", "0.66892679", "0.14334146", "0.28668291"),
]


@pytest.mark.parametrize(("beta", "r_sma", "v2", "v4", "r_la", "la2", "la4"), TABLE_A)
def test_table_a(beta, r_sma, v2, v4, r_la, la2, la4):
    """h = 2, lr = 0.3, k = 5 (rho = 0.6, u = 0.01024)."""
    h = as_array(2.0)
    assert float(cf.lag_correlation(0.6, 5)[0]) == pytest.approx(0.01024, rel=1e-13)
    assert cf.sgd_variance(0.3, h, as_array(2.0))[0] == pytest.approx(3 / 14, rel=1e-15)
    assert cf.sgd_variance(0.3, h, as_array(4.0))[0] == pytest.approx(3 / 7, rel=1e-15)
    sma, la = SMA(SGD(0.3), 5, beta), Lookahead(SGD(0.3), 5, 1 - beta)
    assert_printed(cf.steady_ratio(sma, h)[0], r_sma)
    assert_printed(cf.steady_ratio(la, h)[0], r_la)
    assert_printed(cf.steady_variance(sma, h, as_array(2.0))[0], v2)
    assert_printed(cf.steady_variance(sma, h, as_array(4.0))[0], v4)
    assert_printed(cf.steady_variance(la, h, as_array(2.0))[0], la2)
    assert_printed(cf.steady_variance(la, h, as_array(4.0))[0], la4)
    # the same numbers on an NQM with c = h = 2, B = 1
    p = Problem(h=[2.0], c=[2.0])
    assert_printed(2 * cf.steady_loss(p, sma) / 2.0, v2)


TABLE_B_SMA = [
    # a, k, beta, V_SGD, V_SMA, R_SMA
    (0.1, 5, 0.9, "0.05263158", "0.00905376", "0.17202136"),
    (0.5, 10, 0.9, 1 / 3, "0.01757473", "0.05272418"),
    (1.0, 5, 0.9, 1.0, "0.05263158", 1 / 19),
    (1.5, 5, 0.5, 3.0, "0.96923077", "0.32307692"),
    (1.9, 10, 0.5, 19.0, "9.00791452", "0.47410076"),
    (1.9, 1, 0.9, 19.0, "0.10497238", "0.00552486"),
]


def _check(value, want):
    if isinstance(want, str):
        assert_printed(value, want)
    else:
        assert value == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize(("a", "k", "beta", "v_sgd", "v_sma", "r_sma"), TABLE_B_SMA)
def test_table_b_sma(a, k, beta, v_sgd, v_sma, r_sma):
    rule = SMA(SGD(a), k, beta)
    _check(cf.sgd_variance(a, ONE, ONE)[0], v_sgd)
    _check(cf.steady_variance(rule, ONE, ONE)[0], v_sma)
    _check(cf.steady_ratio(rule, ONE)[0], r_sma)


TABLE_B_LA = [
    # a, k, alpha, V_SGD, R_SMA(beta=1-alpha), V_LA, R_LA
    (0.5, 5, 0.5, 1 / 3, "0.34391534", "0.11340206", "0.34020619"),
    (0.1, 5, 0.5, "0.05263158", "0.61262188", "0.02331437", "0.44297296"),
    (1.5, 5, 0.8, 3.0, "0.65838509", "1.97872340", "0.65957447"),
    (0.1, 10, 0.2, "0.05263158", "0.19707832", "0.00759285", "0.14426407"),
    (1.9, 3, 0.5, 19.0, "0.15524612", "2.26728314", "0.11933069"),
]


@pytest.mark.parametrize(("a", "k", "alpha", "v_sgd", "r_sma", "v_la", "r_la"), TABLE_B_LA)
def test_table_b_lookahead(a, k, alpha, v_sgd, r_sma, v_la, r_la):
    la = Lookahead(SGD(a), k, alpha)
    _check(cf.sgd_variance(a, ONE, ONE)[0], v_sgd)
    _check(cf.steady_ratio(SMA(SGD(a), k, 1 - alpha), ONE)[0], r_sma)
    _check(cf.steady_variance(la, ONE, ONE)[0], v_la)
    _check(cf.steady_ratio(la, ONE)[0], r_la)
    _check(cf.steady_variance(SMA(SGD(a), k, 1 - alpha, feedback=True), ONE, ONE)[0], v_la)


def test_table_c_sma_in_k():
    """rho = 0.5, beta = 0.5: R decreases in k towards 1/3."""
    for k, printed in ((1, "0.55556"), (2, "0.42857"), (5, "0.34392"), (10, "0.33366")):
        assert_printed(R(0.5, 0.5, k), printed)
    assert R(0.5, 0.5, 200) == pytest.approx(1 / 3, rel=1e-15)


@pytest.mark.parametrize(
    ("a", "mu", "want"),
    [(0.5, 0.9, 95 / 33), (0.5, 0.5, 0.6), (0.1, 0.9, "0.5135135"), (3.0, 0.9, 71.25)],
)
def test_table_c_momentum(a, mu, want):
    _check(cf.momentum_variance(a, mu, ONE, ONE)[0], want)
    _check(cf.steady_variance(Momentum(a, mu), ONE, ONE)[0], want)


TABLE_D = {
    # a: (L*_SGD, [(k, beta, loss, ratio), ...])
    0.1: (
        "0.246825",
        [
            (1, 0.9, "0.221428", "0.8971"),
            (5, 0.9, "0.189280", "0.7669"),
            (10, 0.9, "0.173304", "0.7021"),
            (5, 0.99, "0.132502", "0.5368"),
        ],
    ),
    0.5: (
        "1.287028",
        [
            (1, 0.9, "0.950902", "0.7388"),
            (5, 0.9, "0.760949", "0.5912"),
            (10, 0.9, "0.679235", "0.5278"),
            (5, 0.99, "0.465271", "0.3615"),
        ],
    ),
    1.0: (
        "2.793463",
        [
            (1, 0.9, "1.742803", "0.6239"),
            (5, 0.9, "1.369873", "0.4904"),
            (10, 0.9, "1.207033", "0.4321"),
            (5, 0.99, "0.765219", "0.2739"),
        ],
    ),
    1.9: (
        "14.111367",
        [
            (1, 0.9, "3.044173", "0.2157"),
            (5, 0.9, "2.432225", "0.1724"),
            (10, 0.9, "2.929185", "0.2076"),
            (5, 0.99, "1.179401", "0.0836"),
        ],
    ),
}


@pytest.fixture(scope="module")
def nqm_standard():
    return standard()


@pytest.mark.parametrize("a", sorted(TABLE_D))
def test_table_d_full_nqm(nqm_standard, a):
    l_sgd_printed, rows = TABLE_D[a]
    l_sgd = cf.steady_loss(nqm_standard, SGD(a))
    assert_printed(l_sgd, l_sgd_printed)
    for k, beta, loss, ratio in rows:
        l_sma = cf.steady_loss(nqm_standard, SMA(SGD(a), k, beta))
        assert_printed(l_sma, loss)
        assert_printed(l_sma / l_sgd, ratio)
        assert l_sma < l_sgd
    # other batch sizes: losses divide by B, ratios unchanged
    p64 = standard(batch=64)
    assert cf.steady_loss(p64, SGD(a)) == pytest.approx(l_sgd / 64, rel=1e-13)
    l64 = cf.steady_loss(p64, SMA(SGD(a), 5, 0.9))
    assert l64 == pytest.approx(cf.steady_loss(nqm_standard, SMA(SGD(a), 5, 0.9)) / 64, rel=1e-13)


def test_table_d_non_monotone_in_k_at_a_19(nqm_standard):
    losses = [cf.steady_loss(nqm_standard, SMA(SGD(1.9), k, 0.9)) for k in (1, 5, 10)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_table_d_small_nqm():
    p = standard(dim=100)
    assert_printed(cf.steady_loss(p, SGD(1.0)), "1.6421711")
    assert_printed(cf.steady_loss(p, SMA(SGD(1.0), 5, 0.9)), "0.3142909")


def test_standard_nqm_sgd_loss_formula(nqm_standard):
    """L*_SGD = sum a c_i / (2B(2 - a h_i)), summed exactly."""
    a = 0.5
    h = nqm_standard.h
    exact = sum(Fraction(a) * Fraction(c) / (2 * (2 - Fraction(a * c))) for c in h.tolist())
    assert rel_err(cf.steady_loss(nqm_standard, SGD(a)), exact) < 1e-12


@pytest.mark.parametrize(
    ("lr", "mu", "k", "n"),
    [
        (0.5, 0.5, 1, 10),
        (0.5, 0.9, 3, 100),
        (0.1, 0.9, 2, 1000),
        (1.5, 0.3, 1, 7),
        (0.3, -0.4, 4, 50),
    ],
)
def test_polyak_over_momentum_equals_the_term_by_term_sum(lr, mu, k, n):
    """The closed form (matrix geometric sums) against summing the AR(2) autocovariances."""
    v = cf.momentum_variance(lr, mu, ONE, ONE)[0]
    phi1, phi2 = 1 + mu - lr, -mu
    gamma = [v, phi1 * v / (1 + mu)]
    while len(gamma) < k * n:
        gamma.append(phi1 * gamma[-1] + phi2 * gamma[-2])
    direct = (v + 2 * sum((1 - m / n) * gamma[m * k] for m in range(1, n))) / n
    got = cf.polyak_variance(Polyak(Momentum(lr, mu), k), ONE, ONE, n)[0]
    assert got == pytest.approx(direct, rel=1e-10)


# ---- beyond float64: what the messages say, and tiny or huge but valid parameters --------------------


@pytest.mark.parametrize(
    ("base", "h", "message"),
    [
        (
            SGD(1e300),
            1e300,
            "rho = lr*h must be in (0, 2), got rho = about 1e+600 (beyond float64)",
        ),
        (SGD(0.5, precondition=0.5), 1e300, "got rho = 5e+149 (lr=0.5, h=1e+300, p=0.5)"),
        (SGD(1e-300), 1e-300, "rho = lr*h is about 1e-600 (beyond float64), where the averages'"),
    ],
)
def test_checked_rho_says_rho_as_it_is(base, h, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cf.checked_rho(base, np.array([h]), positive=True)


def test_checked_rho_takes_a_tiny_h_under_newton_preconditioning():
    """lr * h^-1 overflows at h = 5e-324, yet rho = lr * h^0 = lr: a steady state exists."""
    assert cf.checked_rho(SGD(0.5, precondition=1.0), np.array([5e-324])).tolist() == [0.5]


@pytest.mark.parametrize(("log10", "text"), [(600.0, "1e+600"), (-600.48, "3.3e-601"),
                                             (2.9999, "1e+3"), (0.0, "1")])  # fmt: skip
def test_power_of_ten(log10, text):
    assert cf.power_of_ten(log10) == text


def test_lookahead_keeps_a_tiny_alpha():
    """alpha = 1e-300 went through beta = 1 - alpha = 1.0 and back to 0.0 before; R_LA is about
    alpha (1 + u) / 2 for a small alpha."""
    variance = float(cf.steady_variance(Lookahead(SGD(0.5), 5, 1e-300), 1.0, 1.0))
    assert variance == pytest.approx((1 / 3) * 1e-300 * (1 + 0.5**5) / 2, rel=1e-12)


def test_polyak_variance_past_2_to_the_53_samples():
    """k * n = 2^106: u^n = 0 there, so the variance is V*/n * (1 + u)/(1 - u) minus a term of
    order 1/n^2; at n = 2^53 and k = 2^53 it is V*/n to float precision."""
    n = 2**53
    variance = float(cf.polyak_variance(Polyak(SGD(0.5), k=2**53), 1.0, 1.0, n))
    assert variance == pytest.approx((1 / 3) / n, rel=1e-12)
    just_below = float(cf.polyak_variance(Polyak(SGD(0.5), k=2**26), 1.0, 1.0, 2**27))
    assert just_below == pytest.approx((1 / 3) / 2**27, rel=1e-12)  # k n = 2^53: the integer path
