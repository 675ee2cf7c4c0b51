"""Result 1 (proofs/01-sgd.md): SGD on one NQM coordinate, x' = (1 - rho) x - a*eps.

Run from the repository root: ``python proofs/check_sgd.py``. Every step either holds symbolically
or the script exits non-zero naming the step.
"""

from __future__ import annotations

import sympy as sp
from certify import done, identity, numeric, positive, unit_interval

# ---- symbols and the model -------------------------------------------------------------------------
a, h, sigma2 = sp.symbols("a h sigma2", positive=True)  # step, curvature, noise variance per step
m, V, m0, V0 = sp.symbols("m V m_0 V_0", real=True)  # moments of x (now / at t = 0)
x, eps = sp.symbols("x epsilon", real=True)  # the random variables, as polynomial placeholders
t = sp.Symbol("t", integer=True, nonnegative=True)
s = sp.Symbol("s", positive=True)  # parameter of a domain

rho = a * h
r = 1 - rho
V_star = a * sigma2 / (h * (2 - rho))


def expect(poly: sp.Expr) -> sp.Expr:
    """E[.] of a polynomial in x and eps, with x independent of eps, E[x] = m, E[x^2] = m^2 + V,
    E[eps] = 0, E[eps^2] = sigma2 (only moments up to order 2 are needed)."""
    moments_x = {0: 1, 1: m, 2: m**2 + V}
    moments_eps = {0: 1, 1: 0, 2: sigma2}
    total = sp.Integer(0)
    for (px, pe), coeff in sp.Poly(sp.expand(poly), x, eps).terms():
        total += coeff * moments_x[px] * moments_eps[pe]  # independence: E[x^p eps^q] factorises
    return total


x_next = r * x - a * eps  # one SGD step: x - a*(h*x + eps)

# ---- Step 1: one step of SGD is x' = r x - a eps --------------------------------------------------
identity("S1 SGD step x - a(hx + eps) = (1 - rho) x - a eps", x - a * (h * x + eps), x_next)

# ---- Step 2: mean and variance recursions --------------------------------------------------------
m_next = expect(x_next)
V_next = expect(x_next**2) - m_next**2
identity("S2a mean recursion E[x'] = r m", m_next, r * m)
identity("S2b variance recursion Var x' = r^2 V + a^2 sigma2", V_next, r**2 * V + a**2 * sigma2)

# ---- Step 3: closed-form solutions (induction on t) ------------------------------------------------
mean_t = r**t * m0
identity("S3a mean m_t = r^t m_0: base t = 0", mean_t.subs(t, 0), m0)
identity("S3b mean m_t = r^t m_0: step t -> t+1", r * mean_t, mean_t.subs(t, t + 1))


def V_t(tt: sp.Expr) -> sp.Expr:
    return V_star + r ** (2 * tt) * (V0 - V_star)


identity("S3c transient V_t = V* + r^(2t)(V_0 - V*): base t = 0", V_t(0), V0)
identity(
    "S3d transient V_t = V* + r^(2t)(V_0 - V*): step t -> t+1",
    r**2 * V_t(t) + a**2 * sigma2,
    V_t(t + 1),
)

# ---- Step 4: the stationary variance ---------------------------------------------------------------
identity("S4a 1 - r^2 = rho(2 - rho)", 1 - r**2, rho * (2 - rho))
identity("S4b V* is a fixed point: V* = r^2 V* + a^2 sigma2", r**2 * V_star + a**2 * sigma2, V_star)
identity("S4c V* = a^2 sigma2 / (1 - r^2)", a**2 * sigma2 / (1 - r**2), V_star)
# V* is the only fixed point when r^2 != 1: V = r^2 V + a^2 sigma2 is linear in V with slope 1 - r^2.
fixed = sp.solve(sp.Eq(V, r**2 * V + a**2 * sigma2), V)
numeric("S4d the fixed-point equation has exactly one solution", len(fixed) == 1, f"{fixed}")
identity("S4e the single solution of the fixed-point equation is V*", fixed[0], V_star)

# ---- Step 5: |r| < 1 iff 0 < rho < 2 ---------------------------------------------------------------
rho_sym = sp.Symbol("rho", real=True)
r_of = 1 - rho_sym
# (if) rho in (0, 2), parametrised as rho = 2 s/(1+s):  1 - r^2 > 0
positive("S5a 0 < rho < 2 => 1 - r^2 > 0", 1 - r_of**2, {rho_sym: 2 * unit_interval(s)})
# (only if) rho <= 0 or rho >= 2 => r^2 >= 1
positive("S5b rho < 0 => r^2 - 1 > 0", r_of**2 - 1, {rho_sym: -s})
positive("S5c rho > 2 => r^2 - 1 > 0", r_of**2 - 1, {rho_sym: 2 + s})
identity("S5d rho = 0 => r^2 = 1", r_of.subs(rho_sym, 0) ** 2, 1)
identity("S5e rho = 2 => r^2 = 1", r_of.subs(rho_sym, 2) ** 2, 1)
# on (0, 2) the stationary variance is positive (a, sigma2 > 0; h = rho/a)
positive(
    "S5f 0 < rho < 2 => V* > 0",
    (a * sigma2 / (h * (2 - a * h))).subs(h, rho_sym / a),
    {rho_sym: 2 * unit_interval(s)},
)

# ---- Step 6: no steady state when r^2 >= 1 (rho <= 0 or rho >= 2, including h = 0) ----------------
q = sp.Symbol("q", positive=True)  # q = r^2 as a free symbol
Vt_sym = sp.Symbol("V_t", real=True)
noise = a**2 * sigma2
identity(
    "S6a lower-bound induction: V_{t+1} - (V_0 + (t+1)a^2 sigma2) "
    "= (r^2 - 1) V_t + (V_t - V_0 - t a^2 sigma2)",
    q * Vt_sym + noise - (V0 + (t + 1) * noise),
    (q - 1) * Vt_sym + (Vt_sym - V0 - t * noise),
)
# r^2 = 1 (rho = 0 or 2): V_t = V_0 + a^2 sigma2 t exactly
lin = V0 + noise * t
identity("S6b r^2 = 1: V_t = V_0 + a^2 sigma2 t, base", lin.subs(t, 0), V0)
identity("S6c r^2 = 1: V_t = V_0 + a^2 sigma2 t, step", 1 * lin + noise, lin.subs(t, t + 1))
# r^2 = q > 1: V_t = q^t (V_0 + a^2 sigma2/(q - 1)) - a^2 sigma2/(q - 1)
geo = q**t * (V0 + noise / (q - 1)) - noise / (q - 1)
identity("S6d r^2 > 1: V_t = q^t (V_0 + c) - c, c = a^2 sigma2/(r^2 - 1), base", geo.subs(t, 0), V0)
identity("S6e r^2 > 1: V_t = q^t (V_0 + c) - c, step", q * geo + noise, geo.subs(t, t + 1))
V0pos = sp.Symbol("V_0", positive=True)
positive(
    "S6f r^2 > 1: the growing coefficient V_0 + a^2 sigma2/(r^2 - 1) > 0 (V_0 > 0)",
    (V0pos + noise / (q - 1)).subs(q, 1 + s),
)
positive(
    "S6g r^2 > 1: the growing coefficient with V_0 = 0 is a^2 sigma2/(r^2 - 1) > 0",
    (noise / (q - 1)).subs(q, 1 + s),
)

done("Result 1 (SGD on one coordinate)")
