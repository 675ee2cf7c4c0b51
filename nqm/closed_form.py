"""Closed-form steady states of the NQM rules, vectorised over coordinates, float64.

Per coordinate: ``rho = lr*h``, ``r = 1 - rho``, ``u = r**k`` (lag-k autocorrelation of SGD iterates),
``sigma2 = c/B``. Formulas (derivations and their sympy checks: ``proofs/README.md``):

- SGD: ``V* = lr*sigma2 / (h*(2 - rho))``, exists iff ``0 < rho < 2``.
- heavy ball: ``V* = lr*sigma2*(1+mu) / ((1-mu)*h*(2*(1+mu) - rho))``, iff ``0 < rho < 2(1+mu)``.
- SMA without feedback over SGD: ``R = (1-beta)(1+beta*u) / ((1+beta)(1-beta*u))``.
- SMA with feedback = Lookahead (``alpha = 1-beta``): ``R = alpha(1+u) / (alpha(1+u) + 2(1-alpha))``;
  Lookahead is also stable for some ``rho >= 2`` (odd k), see :func:`lookahead_variance`.
- SMA without feedback over any stationary base with autocovariance ``gamma``:
  ``Var y = (1-beta)/(1+beta) * [gamma(0) + 2 sum_{m>=1} beta^m gamma(mk)]``.

Near ``rho -> 0`` and ``rho -> 2`` the differences ``1 - u`` and ``1 + u`` are formed from
``log1p``/``expm1`` and every denominator is a sum of non-negative terms, so no cancellation occurs
(at ``rho = 1e-8, k = 5, beta = 0.9``, ``R = 0.99999953``). No epsilon is added anywhere. A query with
no steady state raises ``ValueError``; a divergent case never returns a finite number.
"""

from __future__ import annotations

import math

import numpy as np

from lic_dynamics import validation
from nqm.embedding import Tie
from nqm.problem import Problem
from nqm.rules import EMA, SGD, SMA, Base, Lookahead, Momentum, Polyak, Rule


def checked_rho(base: Base, h: np.ndarray, *, positive: bool = False) -> np.ndarray:
    """``rho = lr*P*h`` (:meth:`~nqm.rules.SGD.rho`) after checking that the base optimizer has a
    steady state at every coordinate; with ``positive``, also that rho is not so small that it
    rounds to 0 in float64 (the formulas of the averages divide by ``1 - (1 - rho)^k``). A message
    gives rho's true size where float64 cannot hold it.

    Examples:
        >>> checked_rho(SGD(0.5), np.array([1.0, 2.0])).tolist()
        [0.5, 1.0]
        >>> checked_rho(SGD(0.5), np.array([1.0, 4.0]))
        Traceback (most recent call last):
        ...
        ValueError: no steady state: rho = lr*h must be in (0, 2), got rho = 2.0 at coordinate 1 ...
        >>> checked_rho(SGD(1e300), np.array([1e300]))
        Traceback (most recent call last):
        ...
        ValueError: no steady state: rho = lr*h must be in (0, 2), got rho = about 1e+600 (beyond ...
    """
    h = validation.array("h", h, positive=True)
    rho = base.rho(h)
    high = 2.0 * (1.0 + base.mu) if isinstance(base, Momentum) else 2.0
    bad = ~(rho < high) | ((rho == 0) if positive else False)
    if np.any(bad):
        i = int(np.flatnonzero(np.atleast_1d(bad))[0])
        at = f" at coordinate {i}" if np.size(h) > 1 else ""
        hi, value = float(np.atleast_1d(h)[i]), float(np.atleast_1d(rho)[i])
        name = "lr*P*h" if base.precondition else "lr*h"
        given = f"lr={base.lr!r}, h={hi!r}" + (
            f", p={base.precondition!r}" if base.precondition else ""
        )
        size = f"about {power_of_ten(log10_rho(base, hi))} (beyond float64)"
        if value == 0:
            raise ValueError(
                f"rho = {name} is {size}{at}, where the averages' formulas need rho > 0 ({given})"
            )
        bound = f"2*(1+mu)) = (0, {high:g}" if isinstance(base, Momentum) else "2"
        shown = repr(value) if np.isfinite(value) else size
        raise ValueError(
            f"no steady state: rho = {name} must be in (0, {bound}), got rho = {shown}{at} ({given})"
        )
    return rho


def log10_rho(base: Base, h: float) -> float:
    """``log10(rho) = log10(lr) + (1 - p) log10(h)``: rho's size where rho itself would overflow
    or underflow float64.

    Examples:
        >>> log10_rho(SGD(1e300), 1e300), log10_rho(SGD(0.5, precondition=1.0), 5e-324)
        (600.0, -0.3010299956639812)
    """
    return math.log10(base.lr) + (1.0 - base.precondition) * math.log10(h)


def power_of_ten(log10: float) -> str:
    """``10**log10`` written out even where float64 cannot hold it, to two significant digits.

    Examples:
        >>> power_of_ten(600.0), power_of_ten(-600.52), power_of_ten(0.0)
        ('1e+600', '3e-601', '1')
    """
    exponent = math.floor(log10)
    mantissa = 10.0 ** (log10 - exponent)
    if mantissa >= 9.95:  # rounds up to 10: carry into the exponent
        mantissa, exponent = 1.0, exponent + 1
    text = f"{mantissa:.2g}"
    return text if exponent == 0 else f"{text}e{exponent:+d}"


def lag_correlation(
    rho: np.ndarray, k: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, 1-u, 1+u)`` for ``u = (1-rho)**k``, each accurate to a few ulps for rho in (0, 2);
    rho and k broadcast.

    Examples:
        >>> [round(float(x), 6) for x in lag_correlation(0.5, 3)]  # u = 0.5**3
        [0.125, 0.875, 1.125]
        >>> [round(float(x), 6) for x in lag_correlation(1.5, 3)]  # u = (-0.5)**3
        [-0.125, 1.125, 0.875]
    """
    rho = validation.interval_array("rho", rho, "(0, 2)", low=0, high=2)
    k = validation.integer_array("k", k, minimum=1)
    # |1 - rho| = 1 - delta with delta = min(rho, 2 - rho), so log|r| = log1p(-delta) is exact-ish.
    with np.errstate(divide="ignore"):  # rho = 1 gives log 0 = -inf and u = 0, as it should
        log_abs_u = k * np.log1p(-np.minimum(rho, 2.0 - rho))
    abs_u = np.exp(log_abs_u)
    one_minus_abs = -np.expm1(log_abs_u)
    negative = (rho > 1.0) & (k % 2 == 1)
    u = np.where(negative, -abs_u, abs_u)
    one_minus_u = np.where(negative, 1.0 + abs_u, one_minus_abs)
    one_plus_u = np.where(negative, one_minus_abs, 1.0 + abs_u)
    return u, one_minus_u, one_plus_u


def sgd_variance(lr: float, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Stationary variance of SGD, ``lr*sigma2 / (h*(2 - rho))``.

    Examples:
        >>> sgd_variance(0.5, np.array([1.0, 0.5]), 1.0).round(6)  # 0.5 / 1.5, 0.5 / (0.5 * 1.75)
        array([0.333333, 0.571429])
    """
    return _sgd_variance(SGD(lr), h, sigma2)


def _sgd_variance(base: SGD, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """:func:`sgd_variance` with the base's step per coordinate, ``lr * P``."""
    rho = checked_rho(base, h)
    sigma2 = validation.array("sigma2", sigma2, positive=False)
    return base.step_size(h) * sigma2 / (np.asarray(h) * (2.0 - rho))


def momentum_variance(lr: float, mu: float, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Stationary variance of heavy-ball momentum,
    ``lr*sigma2*(1+mu) / ((1-mu)*h*(2(1+mu) - rho))``.

    Examples:
        >>> round(float(momentum_variance(0.5, 0.9, 1.0, 1.0)), 6)  # 0.95 / 0.33
        2.878788
        >>> round(float(momentum_variance(0.5, 0.0, 1.0, 1.0)), 6)  # mu = 0 is SGD
        0.333333
    """
    return _momentum_variance(Momentum(lr, mu), h, sigma2)


def _momentum_variance(base: Momentum, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """:func:`momentum_variance` with the base's step per coordinate, ``lr * P``."""
    rho = checked_rho(base, h)
    sigma2 = validation.array("sigma2", sigma2, positive=False)
    mu = base.mu
    return base.step_size(h) * sigma2 * (1 + mu) / ((1 - mu) * np.asarray(h) * (2 * (1 + mu) - rho))


def sma_ratio(beta: np.ndarray | float, rho: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """``R = Var_SMA / Var_SGD`` for SMA without feedback over SGD,
    ``(1-beta)(1+beta*u) / ((1+beta)(1-beta*u))``, with both brackets formed as positive sums;
    beta, rho and k broadcast. The formula holds for ``beta in (-1, 1)``; a negative beta (which no
    SMA rule accepts) gives ``R > 1``, so the theorem's boundary ``R = 1`` is exactly ``beta = 0``.

    Examples:
        >>> round(float(sma_ratio(0.9, 1.0, 5)), 6)  # at rho = 1, R = (1-beta)/(1+beta) = 1/19
        0.052632
        >>> sma_ratio(0.9, np.array([0.5, 1.0, 1.5]), 5).round(6)
        array([0.055678, 0.052632, 0.049752])
    """
    beta = validation.interval_array("beta", beta, "(-1, 1)", low=-1, high=1)
    u, one_minus_u, one_plus_u = lag_correlation(rho, k)
    # 1 + beta*u and 1 - beta*u as sums of same-signed terms wherever beta >= 0.
    numerator = (1 - beta) * np.where(u * beta >= 0, 1 + beta * u, (1 - beta) + beta * one_plus_u)
    denominator = np.where(beta >= 0, (1 - beta) + beta * one_minus_u, 1 - beta * u)
    return numerator / ((1 + beta) * denominator)


def lookahead_ratio(alpha: np.ndarray | float, rho: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """``R_LA = alpha(1+u) / (alpha(1+u) + 2(1-alpha))`` for Lookahead / SMA with feedback;
    alpha, rho and k broadcast.

    Examples:
        >>> round(float(lookahead_ratio(0.5, 1.0, 5)), 6)  # u = 0: alpha / (2 - alpha)
        0.333333
        >>> lookahead_ratio(0.5, np.array([0.5, 1.0, 1.5]), 5).round(6)
        array([0.340206, 0.333333, 0.326316])
    """
    alpha = validation.interval_array("alpha", alpha, "(0, 1]", low=0, high=1, high_open=False)
    _, _, one_plus_u = lag_correlation(rho, k)
    return alpha * one_plus_u / (alpha * one_plus_u + 2 * (1 - alpha))


def sma_reduction(beta: np.ndarray | float, rho: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """``1 - R`` for SMA without feedback, ``2 beta (1-u) / ((1+beta)(1-beta*u))``, formed without
    subtracting from 1 so that it stays accurate (and > 0) where R rounds to 1.

    Examples:
        >>> round(float(sma_reduction(0.9, 1.0, 5)), 6)  # 1 - 1/19
        0.947368
        >>> print(f"{float(sma_reduction(0.9, 1e-12, 5)):.6g}")  # about 2 beta k rho / (1 - beta^2)
        4.73684e-11
    """
    beta = validation.interval_array("beta", beta, "(-1, 1)", low=-1, high=1)
    _, one_minus_u, _ = lag_correlation(rho, k)
    return 2 * beta * one_minus_u / ((1 + beta) * ((1 - beta) + beta * one_minus_u))


def lookahead_reduction(
    alpha: np.ndarray | float, rho: np.ndarray, k: np.ndarray | int
) -> np.ndarray:
    """``1 - R_LA = 2(1-alpha) / (alpha(1+u) + 2(1-alpha))``, accurate where R_LA rounds to 1.

    Examples:
        >>> round(float(lookahead_reduction(0.5, 1.0, 5)), 6)  # 1 - 1/3
        0.666667
        >>> print(f"{float(lookahead_reduction(1 - 1e-6, 0.5, 5)):.6g}")  # R_LA rounds near 1
        1.93939e-06
    """
    alpha = validation.interval_array("alpha", alpha, "(0, 1]", low=0, high=1, high_open=False)
    _, _, one_plus_u = lag_correlation(rho, k)
    return 2 * (1 - alpha) / (alpha * one_plus_u + 2 * (1 - alpha))


def base_variance(base: Base, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Stationary variance of a base optimizer: :func:`sgd_variance` or :func:`momentum_variance`.

    Examples:
        >>> round(float(base_variance(SGD(0.5), 1.0, 1.0)), 6)
        0.333333
        >>> round(float(base_variance(Momentum(0.5, 0.9), 1.0, 1.0)), 6)
        2.878788
    """
    if isinstance(base, Momentum):
        return _momentum_variance(base, h, sigma2)
    return _sgd_variance(base, h, sigma2)


def steady_variance(rule: Rule, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Stationary variance of the rule's readout, shape of ``h``.

    Raises ``ValueError`` where no steady state exists (including Polyak averaging, whose variance
    falls to 0) and ``NotImplementedError`` for Lookahead over momentum, which has no closed form
    here (``nqm.moments.stationary_variance`` solves it, and decides whether it exists).

    Examples:
        >>> rule = SMA(SGD(0.5), k=10, beta=0.9)
        >>> steady_variance(rule, np.array([1.0, 0.5]), np.array([1.0, 2.0])).round(6)
        array([0.017575, 0.066573])
        >>> steady_variance(Polyak(SGD(0.5)), np.array([1.0]), np.array([1.0]))
        Traceback (most recent call last):
        ...
        ValueError: rule: Polyak averaging has no steady state (its variance falls like 1/n); ...
    """
    if isinstance(rule, SGD | Momentum):
        return base_variance(rule, h, sigma2)
    if isinstance(rule, Polyak):
        raise ValueError(
            "rule: Polyak averaging has no steady state (its variance falls like 1/n); "
            "use polyak_variance(rule, h, sigma2, n) for the variance after n samples"
        )
    k, beta, feedback = _as_sma(rule)
    if feedback and isinstance(rule.base, Momentum):
        raise NotImplementedError(
            f"no closed form for {rule.label()}; use nqm.moments.stationary_variance"
        )
    if feedback:
        # Lookahead's own alpha, not 1 - (1 - alpha): alpha = 1e-300 would round to 0 that way.
        alpha = rule.alpha if isinstance(rule, Lookahead) else 1 - beta
        return _lookahead_variance(alpha, rule.base, h, sigma2, k)
    v = base_variance(rule.base, h, sigma2)
    if isinstance(rule.base, SGD):
        return v * sma_ratio(beta, checked_rho(rule.base, h, positive=True), k)
    gamma_sum = _momentum_autocovariance_sum(rule.base, h, v, k, beta)
    return (1 - beta) / (1 + beta) * (v + 2 * gamma_sum)


def lookahead_variance(
    alpha: float, lr: float, h: np.ndarray, sigma2: np.ndarray, k: int
) -> np.ndarray:
    """Stationary variance of Lookahead's slow weights over SGD, wherever its outer map
    ``phi' = c phi + alpha eta``, ``c = 1 - alpha(1-u)``, contracts (``|c| < 1``).

    For ``rho in (0, 2)`` this is ``V* R_LA`` (evaluated as such, accurately). Lookahead also
    stabilises some ``rho >= 2`` (odd k, where ``u <= -1``): there
    ``V = alpha lr^2 sigma2 S_k / ((1-u)(2 - alpha(1-u)))`` with ``S_k = sum_{j<k} r^{2j}``, the
    same fixed point ``alpha^2 Var(eta) / (1 - c^2)`` without dividing by SGD's missing V*.

    Examples:
        >>> round(float(lookahead_variance(0.5, 0.5, 1.0, 1.0, 5)), 6)  # V* R_LA, rho = 0.5
        0.113402
        >>> round(float(lookahead_variance(0.5, 2.5, 1.0, 1.0, 1)), 6)  # rho = 2.5: SGD diverges
        1.666667
    """
    lr = validation.real("lr", lr, "(0, inf)", low=0, high=np.inf)
    return _lookahead_variance(alpha, SGD(lr), h, sigma2, k)


def _lookahead_variance(
    alpha: float, base: SGD, h: np.ndarray, sigma2: np.ndarray, k: int
) -> np.ndarray:
    """:func:`lookahead_variance` with the base's step per coordinate, ``lr * P``."""
    alpha = validation.real("alpha", alpha, "(0, 1]", low=0, high=1, high_open=False)
    h = validation.array("h", h, positive=True)
    sigma2 = validation.array("sigma2", sigma2, positive=False)
    shape = np.broadcast_shapes(h.shape, sigma2.shape)
    h, sigma2 = np.broadcast_arrays(np.atleast_1d(h), np.atleast_1d(sigma2))
    lr = base.step_size(h)
    rho = base.rho(h)
    inside = rho < 2
    if inside.any():
        checked_rho(base, h[inside], positive=True)  # rho rounded to 0 has no formula here
    out = np.empty(h.shape)
    if inside.any():
        out[inside] = _sgd_variance(base, h[inside], sigma2[inside]) * lookahead_ratio(
            alpha, rho[inside], k
        )
    if not inside.all():
        r = 1 - rho[~inside]
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            u = r**k
            shrink = alpha * (1 - u)
            bad = ~((shrink > 0) & (shrink < 2))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"no steady state: Lookahead's outer factor c = 1 - alpha(1-u) must be in "
                    f"(-1, 1), got c = {float(1 - shrink[i])!r} (rho = lr*h = {float(rho[~inside][i])!r}, "
                    f"k = {k}, alpha = {alpha!r})"
                )
            r2 = r * r
            s_k = np.where(r2 == 1, float(k), np.expm1(k * np.log(r2)) / (r2 - 1))
            out[~inside] = (
                alpha * lr[~inside] ** 2 * sigma2[~inside] * s_k / ((1 - u) * (2 - shrink))
            )
    if not np.isfinite(out).all():
        raise ValueError("no steady state in float64: the Lookahead variance overflows")
    return out.reshape(shape)


def steady_ratio(rule: Rule, h: np.ndarray) -> np.ndarray:
    """Steady variance of the readout over SGD's at the same learning rate (and preconditioner);
    independent of sigma2 (both are proportional to it), so it is formed at ``sigma2 = 1``.

    Examples:
        >>> steady_ratio(SMA(SGD(1.0), k=5, beta=0.9), np.array([1.0, 0.5])).round(6)
        array([0.052632, 0.055678])
    """
    h = np.asarray(h, dtype=np.float64)
    unit = np.ones_like(h)
    sgd = SGD(rule.base.lr, precondition=rule.base.precondition)
    return steady_variance(rule, h, unit) / _sgd_variance(sgd, h, unit)


def steady_loss(problem: Problem, rule: Rule, tie: Tie | None = None) -> float:
    """Steady-state expected loss ``1/2 * sum_i h_i (m_i^2 + V_i)``: every untied mean has decayed
    to 0; a tied member has mean ``b_j`` and variance ``a_j^2 V_r`` (``nqm.embedding``). Members need
    no steady state of their own (embedding can stabilise a coordinate with ``rho >= 2``).

    Examples:
        >>> problem = Problem(h=[1.0, 1.0], c=1.0)
        >>> rule = SMA(SGD(0.5), k=3, beta=0.8)
        >>> round(steady_loss(problem, rule), 6)
        0.045267
        >>> round(steady_loss(problem, rule, Tie(member=[1], reference=[0], a=[0.5], b=[0.0])), 6)
        0.028292
    """
    if tie is None:
        return float(0.5 * problem.h @ steady_variance(rule, problem.h, problem.sigma2))
    tie.check_dim(problem.dim)
    free = np.ones(problem.dim, dtype=bool)
    free[tie.member] = False
    variance = np.zeros(problem.dim)
    variance[free] = steady_variance(rule, problem.h[free], problem.sigma2[free])
    mean, variance = tie.apply_steady(variance)
    return float(0.5 * problem.h @ (mean**2 + variance))


def embedding_loss_change(problem: Problem, rule: Rule, tie: Tie) -> np.ndarray:
    """Per member, the change of the steady-state loss that embedding causes,
    ``1/2 h_j (b_j^2 + a_j^2 V_r - V_j)``: negative where embedding lowers the loss. Raises where a
    member has no steady state of its own (then embedding is the only way to one).

    Examples:
        >>> problem = Problem(h=[1.0, 1.0], c=1.0)
        >>> rule = SMA(SGD(0.5), k=3, beta=0.8)
        >>> embedding_loss_change(problem, rule, Tie([1], [0], a=[0.5], b=[0.0])).round(6)
        array([-0.016975])
        >>> embedding_loss_change(problem, rule, Tie([1], [0], a=[1.5], b=[0.0])).round(6)
        array([0.028292])
    """
    tie.check_dim(problem.dim)
    own = steady_variance(rule, problem.h, problem.sigma2)
    mean, tied = tie.apply_steady(own)
    j = tie.member
    return 0.5 * problem.h[j] * (mean[j] ** 2 + tied[j] - own[j])


def polyak_variance(rule: Polyak, h: np.ndarray, sigma2: np.ndarray, n: int) -> np.ndarray:
    """Variance of the uniform average of ``n`` consecutive stationary samples, k steps apart:
    ``(1/n) * [gamma(0) + 2 sum_{m=1}^{n-1} (1 - m/n) gamma(mk)]``. Over SGD, ``gamma(mk) = V* u^m``
    sums to ``(V*/n) * [(1+u)/(1-u) - 2u(1-u^n) / (n(1-u)^2)]``; its relative rounding error grows
    like ``eps / (n*(1-u))``, small unless ``rho*k*n`` is tiny. Over momentum the sum is taken term
    by term (O(n)).

    Examples:
        >>> round(float(polyak_variance(Polyak(SGD(0.5)), 1.0, 1.0, 10)), 6)
        0.08668
        >>> round(float(polyak_variance(Polyak(SGD(0.5)), 1.0, 1.0, 1)), 6)  # one sample: V*
        0.333333
    """
    n = validation.integer("n", n, minimum=1)
    v = base_variance(rule.base, h, sigma2)
    if isinstance(rule.base, SGD):
        rho = checked_rho(rule.base, h, positive=True)
        u, one_minus_u, one_plus_u = lag_correlation(rho, rule.k)
        one_minus_un = _one_minus_power(rho, rule.k * n)  # u**n = (1 - rho)**(k*n)
        bracket = one_plus_u / one_minus_u - 2 * u * one_minus_un / (n * one_minus_u**2)
        return v / n * bracket
    return (v + 2 * _momentum_triangular_sum(rule.base, h, v, rule.k, n)) / n


def _one_minus_power(rho: np.ndarray, kn: int) -> np.ndarray:
    """``1 - (1 - rho)**kn`` for a count ``kn`` that may pass 2**53 (Polyak's k times n, each up
    to 2**53): :func:`lag_correlation`'s where it can take ``kn``, else the same logarithm with
    ``kn`` as a float (exact to its 16 digits) and its parity from the integer."""
    if kn <= validation.MAX_INTEGER:
        return lag_correlation(rho, kn)[1]
    rho = validation.interval_array("rho", rho, "(0, 2)", low=0, high=2)
    with np.errstate(divide="ignore"):
        log_abs = float(kn) * np.log1p(-np.minimum(rho, 2.0 - rho))
    negative = (rho > 1.0) & (kn % 2 == 1)
    return np.where(negative, 1.0 + np.exp(log_abs), -np.expm1(log_abs))


def _as_sma(rule: SMA | EMA | Lookahead) -> tuple[int, float, bool]:
    """``(k, beta, feedback)`` of the SMA that the rule equals."""
    if isinstance(rule, SMA):
        return rule.k, rule.beta, rule.feedback
    if isinstance(rule, EMA):
        return 1, rule.beta, False
    if isinstance(rule, Lookahead):
        return rule.k, 1.0 - rule.alpha, True
    raise ValueError(f"rule must be an NQM rule, got {rule!r}")


def _momentum_companion(base: Momentum, h: np.ndarray, variance: np.ndarray, k: int):
    """Heavy ball is the AR(2) ``x' = phi1*x + phi2*x_prev + noise`` with ``phi1 = 1+mu-rho``,
    ``phi2 = -mu``. Yule-Walker: ``w_l = (gamma(l+1), gamma(l))`` obeys ``w_{l+1} = C w_l``, with
    ``w_0 = (phi1*gamma0/(1+mu), gamma0)``. Returns ``C**k`` (d, 2, 2) and ``w_0`` (d, 2)."""
    phi1 = 1 + base.mu - checked_rho(base, h)
    companion = np.zeros((*phi1.shape, 2, 2))
    companion[..., 0, 0] = phi1
    companion[..., 0, 1] = -base.mu
    companion[..., 1, 0] = 1.0
    w0 = np.stack([phi1 * variance / (1 + base.mu), variance], axis=-1)
    return np.linalg.matrix_power(companion, k), w0


def _momentum_autocovariance_sum(base: Momentum, h, variance, k: int, beta: float) -> np.ndarray:
    """``sum_{m>=1} beta^m gamma(mk) = [G (I-G)^{-1} w_0]_2`` with ``G = beta*C^k``."""
    ck, w0 = _momentum_companion(base, np.atleast_1d(h), np.atleast_1d(variance), k)
    g = beta * ck
    z = np.linalg.solve(np.eye(2) - g, w0[..., None])
    return (g @ z)[..., 1, 0].reshape(np.shape(variance))


def _momentum_triangular_sum(base: Momentum, h, variance, k: int, n: int) -> np.ndarray:
    """``sum_{m=1}^{n-1} (1 - m/n) gamma(mk)`` in closed form, O(log n): with ``G = C^k``,
    ``sum G^m = G (I - G^{n-1}) (I-G)^{-1}`` and
    ``sum m G^m = G (I - n G^{n-1} + (n-1) G^n) (I-G)^{-2}``, applied to ``w_0``."""
    ck, w0 = _momentum_companion(base, np.atleast_1d(h), np.atleast_1d(variance), k)
    eye = np.eye(2)
    g_n1 = np.linalg.matrix_power(ck, n - 1)
    g_n = ck @ g_n1
    inv = np.linalg.inv(eye - ck)
    plain = ck @ (eye - g_n1) @ inv
    weighted = ck @ (eye - n * g_n1 + (n - 1) * g_n) @ inv @ inv
    return ((plain - weighted / n) @ w0[..., None])[..., 1, 0].reshape(np.shape(variance))
