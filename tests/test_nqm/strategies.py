"""Shared Hypothesis strategies and exact references for the nqm tests.

Parameter ranges follow the theory (docs/theory.md; ``proofs/``): ``rho = lr*h`` in (0, 2)
including values very near both ends, ``beta`` in [0, 1), ``alpha`` in (0, 1], integer ``k`` in
1..200, heavy-ball ``mu`` in [0, 1). Tests that need a margin (a strict inequality visible in
float64, or a well-conditioned Lyapunov solve) narrow the ranges explicitly.

The exact references use :class:`fractions.Fraction` on the float64 inputs, so they are the exact
value of the formula at the very numbers the library receives.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

RHO_MIN = 1e-8
RHO_MAX = 2.0 - 1e-9
_RHO_SPECIALS = (1e-8, 1e-6, 1e-3, 0.1, 0.5, 0.6, 1.0, 1.5, 1.9, 2.0 - 1e-6, 2.0 - 1e-9)


def rhos(low: float = RHO_MIN, high: float = RHO_MAX) -> st.SearchStrategy[float]:
    """``rho`` in [low, high] within (0, 2): uniform, log-uniform towards 0 and towards 2, and the
    special values of the proofs and tests (1e-8, 1, 2 - 1e-9, ...)."""
    assert 0.0 < low < high < 2.0
    parts = [st.floats(low, high)]
    specials = [x for x in _RHO_SPECIALS if low <= x <= high]
    if specials:
        parts.append(st.sampled_from(specials))
    if low < 1.0:
        top = min(high, 1.0)
        parts.append(st.floats(math.log10(low), math.log10(top)).map(lambda e: 10.0**e))
    if high > 1.0:
        gap_low = max(2.0 - high, 1e-12)
        gap_high = 2.0 - max(low, 1.0)
        parts.append(
            st.floats(math.log10(gap_low), math.log10(gap_high)).map(lambda e: 2.0 - 10.0**e)
        )
    return st.one_of(parts).filter(lambda r: low <= r <= high)


def betas(low: float = 0.0, high: float = 1.0 - 1e-9) -> st.SearchStrategy[float]:
    """``beta`` in [low, high] within [0, 1): uniform, log-uniform towards 1, and 0, 0.5, 0.9, ..."""
    assert 0.0 <= low < high < 1.0
    specials = [x for x in (0.0, 0.2, 0.5, 0.8, 0.9, 0.99, 0.999) if low <= x <= high]
    parts = [
        st.floats(low, high),
        st.floats(math.log10(1.0 - high), math.log10(1.0 - low) if low > 0 else 0.0).map(
            lambda e: 1.0 - 10.0**e
        ),
    ]
    if specials:
        parts.append(st.sampled_from(specials))
    return st.one_of(parts).filter(lambda b: low <= b <= high)


def alphas(low: float = 1e-6, high: float = 1.0) -> st.SearchStrategy[float]:
    """Lookahead ``alpha`` in [low, high] within (0, 1]."""
    assert 0.0 < low < high <= 1.0
    specials = [x for x in (0.1, 0.2, 0.5, 0.8, 1.0) if low <= x <= high]
    return st.one_of(st.floats(low, high), st.sampled_from(specials))


def ks(high: int = 200) -> st.SearchStrategy[int]:
    """Sampling period ``k`` in 1..high."""
    return st.one_of(
        st.integers(1, high), st.sampled_from([1, 2, 3, 5, 10]).filter(lambda k: k <= high)
    )


def mus(low: float = 0.0, high: float = 0.99) -> st.SearchStrategy[float]:
    """Heavy-ball ``mu`` in [low, high] within (-1, 1)."""
    return st.one_of(
        st.floats(low, high), st.sampled_from([x for x in (0.0, 0.5, 0.9) if low <= x <= high])
    )


lrs = st.floats(1e-3, 10.0)
sigma2s = st.floats(1e-6, 1e3)
batches = st.integers(1, 1 << 21)
seeds = st.integers(0, 2**32 - 1)


# ---- exact references -------------------------------------------------------------------------


def sma_ratio_exact(beta: float, rho: float, k: int) -> Fraction:
    """``(1-beta)(1+beta*u) / ((1+beta)(1-beta*u))``, ``u = (1-rho)**k``, exactly."""
    b, u = Fraction(beta), (1 - Fraction(rho)) ** k
    return (1 - b) * (1 + b * u) / ((1 + b) * (1 - b * u))


def lookahead_ratio_exact(alpha: float, rho: float, k: int) -> Fraction:
    """``alpha(1+u) / (alpha(1+u) + 2(1-alpha))``, exactly."""
    a, u = Fraction(alpha), (1 - Fraction(rho)) ** k
    return a * (1 + u) / (a * (1 + u) + 2 * (1 - a))


def sgd_variance_exact(lr: float, h: float, sigma2: float) -> Fraction:
    """``lr*sigma2 / (h*(2 - rho))`` with ``rho`` the float64 product ``lr*h`` the library forms."""
    rho = Fraction(lr * h)
    return Fraction(lr) * Fraction(sigma2) / (Fraction(h) * (2 - rho))


def rel_err(value: float, exact: Fraction) -> float:
    """``|value - exact| / |exact|`` evaluated exactly, then rounded."""
    return float(abs(Fraction(float(value)) - exact) / abs(exact))


def assert_printed(value: float, printed: str) -> None:
    """``value`` equals a printed decimal (a reference value) to the printed precision: within half a unit
    in the last printed decimal place (plus float64 rounding)."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    tol = 0.5 * 10.0**-decimals + 1e-12 * abs(float(printed))
    assert abs(float(value) - float(printed)) <= tol, f"{value!r} != {printed} (+- {tol:.1e})"


def as_array(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)
