"""Result 5: heavy-ball momentum as an AR(2); its stationary covariance and stability region.

Run from the repository root: ``python proofs/check_momentum.py``. Every step below is one labelled
call to ``certify``; the labels are the ones cited in ``proofs/05-momentum.md``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from certify import done, identity, numeric, positive, symmetric_interval, unit_interval

import nqm.closed_form as cf
import nqm.moments as mo
from nqm.rules import Momentum, State

mu, rho, a, h, sigma2, z = sp.symbols("mu rho a h sigma2 z")
x, x_prev, eps = sp.symbols("x x_prev epsilon")
s, t, w = sp.symbols("s t w", positive=True)  # parametrisation symbols, all > 0
a_pos, h_pos, sigma2_pos = sp.symbols("a h sigma2", positive=True)

phi1 = 1 + mu - rho  # AR coefficient of x_t; rho = a*h

# Stability region |mu| < 1, 0 < rho < 2(1+mu), parametrised by s, t > 0.
MU = symmetric_interval(s)
STABLE = {mu: MU, rho: 2 * (1 + MU) * unit_interval(t)}

# ---- Step 1: heavy ball is an AR(2) --------------------------------------------------------------
v = x - x_prev  # invariant v_t = x_t - x_{t-1} (v_0 = 0 with x_{-1} := x_0)
v_new = mu * v - a * (h * x + eps)
x_new = x + v_new
identity(
    "1a: x_{t+1} = (1+mu-rho) x_t - mu x_{t-1} - a eps_t (rho = a h)",
    x_new,
    phi1.subs(rho, a * h) * x - mu * x_prev - a * eps,
)
identity("1b: v_{t+1} = x_{t+1} - x_t (the invariant propagates)", v_new, x_new - x)

# The code in nqm.rules, run on symbols at dyadic (exact) hyperparameters lr = 1/2, mu = 1/4.
vs = sp.Symbol("v")
out = Momentum(0.5, 0.25).step(1, State(x, sp.Integer(0), vs), h, eps)
rule_v = sp.Rational(1, 4) * vs - sp.Rational(1, 2) * (h * x + eps)
identity("1c: nqm.rules.Momentum.step is v <- mu v - a g, x <- x + v", sp.nsimplify(out.v), rule_v)
identity("1d: nqm.rules.Momentum.step moves x by the new v", sp.nsimplify(out.x), x + rule_v)

# ---- Step 2: state-space form s_t = (x_t, x_{t-1}) --------------------------------------------------
A = sp.Matrix([[phi1, -mu], [1, 0]])
b = sp.Matrix([-a, 0])
s_next = A * sp.Matrix([x, x_prev]) + b * eps
identity(
    "2a: first row of A s + b eps is the AR(2) step", s_next[0], phi1 * x - mu * x_prev - a * eps
)
identity("2b: second row of A s + b eps shifts x_t into the lag slot", s_next[1], x)
identity(
    "2c: det(z I - A) = z^2 - (1+mu-rho) z + mu", (z * sp.eye(2) - A).det(), z**2 - phi1 * z + mu
)

# ---- Step 3: stationary covariance from the discrete Lyapunov equation ----------------------------
p11, p12, p22 = sp.symbols("p11 p12 p22")
unknowns = (p11, p12, p22)
Pm = sp.Matrix([[p11, p12], [p12, p22]])
residual = Pm - (A * Pm * A.T + sigma2 * b * b.T)  # P = A P A^T + sigma2 b b^T
equations = [residual[0, 0], residual[0, 1], residual[1, 1]]
system = sp.Matrix([[sp.diff(e, p) for p in unknowns] for e in equations])
identity(
    "3a: the 3x3 linear system has determinant (1-mu) rho (2(1+mu) - rho)",
    system.det(),
    (1 - mu) * rho * (2 * (1 + mu) - rho),
)
positive(
    "3b: that determinant is > 0 on the stability region (unique solution)",
    (1 - mu) * rho * (2 * (1 + mu) - rho),
    STABLE,
)
(solution,) = sp.solve(equations, unknowns, dict=True)
P_star = Pm.subs(solution)
for (i, j), name in (((0, 0), "xx"), ((0, 1), "x x_prev"), ((1, 1), "x_prev x_prev")):
    lyap = (A * P_star * A.T + sigma2 * b * b.T)[i, j]
    identity(
        f"3c: substituting the solution back: P = A P A^T + sigma2 b b^T, entry {name}",
        P_star[i, j],
        lyap,
    )
gamma0, gamma1 = P_star[0, 0], P_star[0, 1]
V_formula = a * sigma2 * (1 + mu) / ((1 - mu) * h * (2 * (1 + mu) - rho))
identity(
    "3d: Var x = a sigma2 (1+mu) / ((1-mu) h (2(1+mu) - rho)) with rho = a h",
    gamma0.subs(rho, a * h),
    V_formula.subs(rho, a * h),
)
identity("3e: Var x_{t-1} = Var x_t (the solution is stationary)", P_star[1, 1], gamma0)
identity(
    "3f: Yule-Walker gamma(1) = (1+mu-rho) gamma(0) / (1+mu)", gamma1, phi1 * gamma0 / (1 + mu)
)
identity(
    "3g: Yule-Walker lag-1 equation gamma(1) = phi1 gamma(0) - mu gamma(1) ((A P)_{00})",
    (A * P_star)[0, 0],
    gamma1,
)
identity(
    "3h: risk 1/2 h V = a sigma2 / (2 (1-mu) (2 - rho/(1+mu)))",
    (h * V_formula / 2).subs(rho, a * h),
    (a * sigma2 / (2 * (1 - mu) * (2 - rho / (1 + mu)))).subs(rho, a * h),
)
POS = {**STABLE, a: a_pos, h: h_pos, sigma2: sigma2_pos}
positive("3i: V > 0 on the stability region (a, h, sigma2 > 0)", V_formula.subs(h, rho / a), POS)
positive(
    "3j: det P = gamma(0)^2 - gamma(1)^2 > 0 (P positive definite)",
    (P_star.det()).subs(h, rho / a),
    POS,
)
# Convergence: with P the fixed point, the error obeys E_{t+1} = A E_t A^T, so E_t = A^t E_0 (A^T)^t.
q11, q12, q22 = sp.symbols("q11 q12 q22")
Pt = sp.Matrix([[q11, q12], [q12, q22]])
err_next = (A * Pt * A.T + sigma2 * b * b.T) - P_star
err_map = A * (Pt - P_star) * A.T
for i, j in ((0, 0), (0, 1), (1, 1)):
    identity(f"3k: P_(t+1) - P = A (P_t - P) A^T, entry ({i},{j})", err_next[i, j], err_map[i, j])

# ---- Step 4: stability, Jury / Schur-Cohn for z^2 + B z + C -------------------------------------------
B, C = sp.symbols("B C")
l1, l2, m, cw = sp.symbols("lambda1 lambda2 m c_theta")


def jury(B, C):
    """The four quantities that must be > 0: 1 - C, 1 + C, p(1) = 1 + B + C, p(-1) = 1 - B + C."""
    return {"1 - C": 1 - C, "1 + C": 1 + C, "p(1)": 1 + B + C, "p(-1)": 1 - B + C}


# (=>) real roots lambda1, lambda2 in (-1, 1): z^2 + B z + C = (z - l1)(z - l2).
identity("4a: Vieta for real roots", (z - l1) * (z - l2), z**2 - (l1 + l2) * z + l1 * l2)
REAL = {l1: symmetric_interval(s), l2: symmetric_interval(t)}
for name, q in jury(-(l1 + l2), l1 * l2).items():
    positive(f"4b: real roots in (-1,1) => {name} > 0", q, REAL)
# (=>) a non-real pair m e^{+-i theta}, m in (0, 1), cos(theta) in (-1, 1).
sn = sp.sqrt(1 - cw**2)
identity(
    "4c: Vieta for a conjugate pair m(cos +- i sin)",
    sp.expand((z - m * (cw + sp.I * sn)) * (z - m * (cw - sp.I * sn))),
    z**2 - 2 * m * cw * z + m**2,
)
PAIR = {m: unit_interval(s), cw: symmetric_interval(t)}
for name, q in jury(-2 * m * cw, m**2).items():
    positive(f"4d: conjugate pair of modulus < 1 => {name} > 0", q, PAIR)
# (<=) |C| < 1 and |B| < 1 + C, parametrised: C = (1-s)/(1+s), B = (1 + C)(1-t)/(1+t).
CB = {C: symmetric_interval(s), B: (1 + symmetric_interval(s)) * symmetric_interval(t)}
for name, q in jury(B, C).items():
    positive(f"4e: |C| < 1, |B| < 1 + C => {name} > 0", q, CB)
positive("4f: |C| < 1, |B| < 1 + C => 2 - B > 0 (half the root sum is > -1)", 2 - B, CB)
positive("4g: |C| < 1, |B| < 1 + C => 2 + B > 0 (half the root sum is < 1)", 2 + B, CB)
identity("4h: p(1) = (1 - l1)(1 - l2)", 1 - (l1 + l2) + l1 * l2, (1 - l1) * (1 - l2))
identity("4i: p(-1) = (1 + l1)(1 + l2)", 1 + (l1 + l2) + l1 * l2, (1 + l1) * (1 + l2))
# Applied to z^2 - (1+mu-rho) z + mu: B = -(1+mu-rho), C = mu.
identity("4j: p(1) = rho for heavy ball", 1 + (-phi1) + mu, rho)
identity("4k: p(-1) = 2(1+mu) - rho for heavy ball", 1 - (-phi1) + mu, 2 * (1 + mu) - rho)

# ---- Step 5: reductions -----------------------------------------------------------------------------
identity(
    "5a: mu = 0: the AR(2) is SGD's x' = (1-rho) x - a eps",
    (phi1 * x - mu * x_prev - a * eps).subs(mu, 0),
    (1 - rho) * x - a * eps,
)
identity(
    "5b: mu = 0: V = a sigma2 / (h (2 - rho))", V_formula.subs(mu, 0), a * sigma2 / (h * (2 - rho))
)
identity(
    "5c: mu = 0: gamma(1) = (1-rho) V*, SGD's lag-1 autocovariance",
    (phi1 * gamma0 / (1 + mu)).subs(mu, 0),
    (1 - rho) * gamma0.subs(mu, 0),
)
identity("5d: mu = 0: the stability region is 0 < rho < 2", 2 * (1 + mu).subs(mu, 0), 2)
v_sgd_eff = (a / (1 - mu)) * sigma2 / (h * (2 - a * h / (1 - mu)))  # SGD with step a/(1-mu)
identity(
    "5e: V / V_SGD(step a/(1-mu)) = (2 - rho/(1-mu)) / (2 - rho/(1+mu)) (-> 1 as rho -> 0)",
    (V_formula / v_sgd_eff).subs(rho, a * h),
    ((2 - rho / (1 - mu)) / (2 - rho / (1 + mu))).subs(rho, a * h),
)

# ---- Step 6: fixed points (h = sigma2 = 1), exact and against nqm -------------------------------------
R_ = sp.Rational
fixed_points = [  # (a, mu, the decimal value)
    (R_(1, 2), R_(9, 10), R_(95, 33)),
    (R_(1, 2), R_(1, 2), R_(3, 5)),
    (R_(1, 10), R_(9, 10), R_(19, 37)),  # printed as 0.5135135
    (R_(3), R_(9, 10), R_(285, 4)),  # 71.25; stable because 3 < 2(1 + 0.9) = 3.8
]
one = np.ones(1)
for a_v, mu_v, want in fixed_points:
    at = {a: a_v, mu: mu_v, h: 1, sigma2: 1, rho: a_v}
    exact = V_formula.subs(at)
    numeric(f"6a: a={a_v}, mu={mu_v}: V = {want} exactly", exact == want, f"V = {exact}")
    numeric(
        f"6b: a={a_v}, mu={mu_v}: inside the stability region",
        abs(mu_v) < 1 and 0 < a_v < 2 * (1 + mu_v),
    )
    closed = float(cf.momentum_variance(float(a_v), float(mu_v), one, one)[0])
    cov = mo.stationary_covariance(Momentum(float(a_v), float(mu_v)), one, one)[0]  # over (x, v)
    lyap_gamma1 = cov[0, 0] - cov[0, 1]  # Cov(x_t, x_{t-1}) = Var x - Cov(x, v), v = x_t - x_{t-1}
    exact_gamma1 = gamma1.subs(at)
    numeric(
        f"6c: a={a_v}, mu={mu_v}: nqm.closed_form.momentum_variance to 1e-13",
        abs(closed - want) <= 1e-13 * want,
        f"{closed!r}",
    )
    numeric(
        f"6d: a={a_v}, mu={mu_v}: nqm.moments Lyapunov Var x to 1e-10",
        abs(cov[0, 0] - want) <= 1e-10 * want,
        f"{float(cov[0, 0])!r}",
    )
    numeric(
        f"6e: a={a_v}, mu={mu_v}: nqm.moments Lyapunov gamma(1) = Yule-Walker to 1e-10",
        abs(lyap_gamma1 - exact_gamma1) <= 1e-10 * want,
        f"{float(lyap_gamma1)!r} vs {exact_gamma1}",
    )

done("Result 5 (heavy-ball momentum)")
