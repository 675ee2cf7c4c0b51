"""The checks every proof script uses: a step either holds symbolically or the script stops with
exit status 1, naming the step.

- :func:`identity` : ``lhs - rhs`` simplifies to exactly 0.
- :func:`positive` : after substituting a parametrisation of the domain by positive symbols (for
  example ``beta = s/(1+s)`` for ``beta in (0, 1)``), the expression factors into a product and
  quotient of factors that sympy's assumption system proves positive (sums and products of positive
  symbols with positive coefficients). Nothing is sampled.
- :func:`numeric` : a number that is checked, not proved (a counterexample, a fixed point).
"""

from __future__ import annotations

import sys

import sympy as sp

_passed: list[str] = []


class StepFailed(AssertionError):
    pass


def _fail(label: str, why: str) -> None:
    print(f"FAILED: {label}: {why}", file=sys.stderr)
    raise StepFailed(f"{label}: {why}")


def _ok(label: str) -> None:
    _passed.append(label)
    print(f"  ok  {label}")


def identity(label: str, lhs: sp.Expr, rhs: sp.Expr) -> None:
    """``lhs == rhs`` as rational functions (or after ``sympy.simplify`` if needed)."""
    difference = sp.cancel(sp.together(sp.expand(lhs - rhs)))
    if difference != 0:
        difference = sp.simplify(difference)
    if difference != 0:
        _fail(label, f"lhs - rhs = {difference}, not 0")
    _ok(label)


def positive_factors(expr: sp.Expr) -> list[sp.Expr]:
    """The factors of the numerator and denominator of ``expr`` (fully factored)."""
    numerator, denominator = sp.fraction(sp.factor(sp.cancel(sp.together(expr))))
    return [*sp.Mul.make_args(numerator), *sp.Mul.make_args(denominator)]


def positive(label: str, expr: sp.Expr, parametrisation: dict | None = None) -> None:
    """``expr > 0`` on the domain, certified factor by factor after ``parametrisation``."""
    expr = sp.sympify(expr).subs(parametrisation or {})
    for factor in positive_factors(expr):
        base, exponent = factor.as_base_exp()
        even_power = exponent.is_integer and exponent.is_even and base.is_nonzero
        if not (factor.is_positive or even_power or sp.expand(factor).is_positive):
            _fail(label, f"factor {factor} is not certified positive")
    _ok(label)


def numeric(label: str, condition: bool, detail: str = "") -> None:
    """A checked numerical fact (counterexample, fixed point): holds, or the script fails."""
    if not condition:
        _fail(label, detail or "numerical check does not hold")
    _ok(label + (f" ({detail})" if detail else ""))


def done(title: str) -> None:
    print(f"{title}: {len(_passed)} steps checked")


# Parametrisations of open intervals by one positive symbol.
def unit_interval(s: sp.Symbol) -> sp.Expr:
    """``(0, 1)`` as ``s / (1 + s)`` with ``s > 0``."""
    return s / (1 + s)


def symmetric_interval(s: sp.Symbol) -> sp.Expr:
    """``(-1, 1)`` as ``(1 - s) / (1 + s)`` with ``s > 0``."""
    return (1 - s) / (1 + s)
