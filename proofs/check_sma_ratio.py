"""Result 2 (proofs/02-sma-ratio.md): SMA without feedback over SGD, the stationary variance ratio R.

Run from the repository root: ``python proofs/check_sma_ratio.py``. Every step either holds
symbolically or the script exits non-zero naming the step.
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp
from certify import done, identity, numeric, positive, symmetric_interval, unit_interval

# ---- symbols -----------------------------------------------------------------------------------
a, h, sigma2 = sp.symbols("a h sigma2", positive=True)
beta, u = sp.symbols("beta u", real=True)
Vs = sp.Symbol("V_star", positive=True)  # V* as a free symbol where only its role matters
q = sp.Symbol("q", positive=True)  # Var eta
s, w = sp.symbols("s w", positive=True)  # domain parameters
j, M = sp.symbols("j M", integer=True, nonnegative=True)
k = sp.Symbol("k", integer=True, positive=True)

rho = a * h
r = 1 - rho
V_star = a * sigma2 / (h * (2 - rho))
R = (1 - beta) * (1 + beta * u) / ((1 + beta) * (1 - beta * u))
COV = (1 - beta) * Vs / (1 - beta * u)  # Cov(x, y) at a sampling instant

# domain of Result 2: beta in (0, 1), u in (-1, 1) (Result 3, step 1: 0 < rho < 2, k >= 1 => |u| < 1)
DOMAIN = {beta: unit_interval(s), u: symmetric_interval(w)}


def expect2(poly: sp.Expr, variables: tuple, second: dict) -> sp.Expr:
    """E[.] of a polynomial of degree <= 2 in zero-mean random ``variables`` with
    E[v_i v_j] = ``second[(i, j)]`` (i <= j); a missing pair has E[v_i v_j] = 0 (independent)."""
    total = sp.Integer(0)
    for powers, coeff in sp.Poly(sp.expand(poly), *variables).terms():
        idx = [i for i, p in enumerate(powers) for _ in range(p)]
        if len(idx) == 0:
            total += coeff
        elif len(idx) == 1:
            continue  # zero mean
        elif len(idx) == 2:
            total += coeff * second.get(tuple(idx), 0)
        else:
            raise ValueError("only moments up to order 2 are modelled")
    return total


# ---- Step 1: the sampled chain z_n = x_{nk} ------------------------------------------------------
# After j SGD steps from a sampling instant, x = r^j z + eta_j with eta_0 = 0, eta_{j+1} = r eta_j - a eps.
# Var eta_j =: q_j obeys q_{j+1} = r^2 q_j + a^2 sigma2, q_0 = 0 (Result 1 with V_0 = 0).
q_j = V_star * (1 - r ** (2 * j))
identity("T1a Var eta_j = V*(1 - r^(2j)): base j = 0", q_j.subs(j, 0), 0)
identity(
    "T1b Var eta_j = V*(1 - r^(2j)): step j -> j+1",
    r**2 * q_j + a**2 * sigma2,
    q_j.subs(j, j + 1),
)
identity("T1c deterministic part r^j z: step j -> j+1", r * r**j, r ** (j + 1))
identity("T1d q = Var eta_k = V*(1 - u^2) with u = r^k", q_j.subs(j, k), V_star * (1 - (r**k) ** 2))
identity("T1e Var z = V* is stationary for z' = u z + eta", u**2 * Vs + Vs * (1 - u**2), Vs)

# ---- Step 2: the state s = (z, y) ------------------------------------------------------------------
z, y, eta = sp.symbols("z y eta", real=True)
F = sp.Matrix([[u, 0], [(1 - beta) * u, beta]])
g = sp.Matrix([1, 1 - beta])
s_next = F * sp.Matrix([z, y]) + g * eta
z_next = u * z + eta
identity("T2a z-row of F s + g eta is u z + eta", s_next[0], z_next)
identity(
    "T2b y-row of F s + g eta is beta y + (1 - beta) z_{n+1}",
    s_next[1],
    beta * y + (1 - beta) * z_next,
)

# ---- Step 3: covariance recursion Sigma' = F Sigma F^T + q g g^T (eta independent of (z, y)) -------
P_zz, P_zy, P_yy = sp.symbols("P_zz P_zy P_yy", real=True)
Sigma = sp.Matrix([[P_zz, P_zy], [P_zy, P_yy]])
second = {(0, 0): P_zz, (0, 1): P_zy, (1, 1): P_yy, (2, 2): q}  # (z, y, eta); eta independent
lyap = F * Sigma * F.T + q * g * g.T
for (i1, i2), name in (((0, 0), "zz"), ((0, 1), "zy"), ((1, 1), "yy")):
    identity(
        f"T3 Cov(s')_{name} = (F Sigma F^T + q g g^T)_{name}",
        expect2(s_next[i1] * s_next[i2], (z, y, eta), second),
        lyap[i1, i2],
    )

# ---- Step 4: the stationary covariance: three linear equations, solved symbolically ---------------
equations = [sp.Eq(Sigma[i1, i2], lyap[i1, i2]) for i1, i2 in ((0, 0), (0, 1), (1, 1))]
unknowns = [P_zz, P_zy, P_yy]
coeffs, _ = sp.linear_eq_to_matrix([e.lhs - e.rhs for e in equations], unknowns)
det = sp.factor(coeffs.det())
identity(
    "T4a det of the linear system = (1 - u^2)(1 - beta u)(1 - beta^2)",
    det,
    (1 - u**2) * (1 - beta * u) * (1 - beta**2),
)
positive("T4b the determinant is > 0 on beta in (0,1), u in (-1,1): unique solution", det, DOMAIN)
identity("T4c at beta = 0 the determinant is 1 - u^2", det.subs(beta, 0), 1 - u**2)
solution = sp.solve(equations, unknowns, dict=True)
numeric("T4d sympy.solve returns exactly one solution", len(solution) == 1)
solution = solution[0]
q_val = Vs * (1 - u**2)
identity("T4e solved Var z = q/(1 - u^2) = V*", solution[P_zz].subs(q, q_val), Vs)
identity("T4f solved Cov(z, y) = (1-beta)V*/(1-beta u)", solution[P_zy].subs(q, q_val), COV)
identity("T4g solved Var y = V* R", solution[P_yy].subs(q, q_val), Vs * R)
# verification by substitution into Sigma = F Sigma F^T + q g g^T
claimed = {P_zz: Vs, P_zy: COV, P_yy: Vs * R, q: q_val}
for eq, name in zip(equations, ("zz", "zy", "yy"), strict=True):
    identity(f"T4h substitution: equation {name} holds", eq.lhs.subs(claimed), eq.rhs.subs(claimed))
# F is lower triangular: eigenvalues u and beta, spectral radius < 1 on the domain
lam = sp.Symbol("lambda")
identity(
    "T4i characteristic polynomial of F is (lambda - u)(lambda - beta)",
    (lam * sp.eye(2) - F).det(),
    (lam - u) * (lam - beta),
)

# ---- Step 5: the per-SGD-step moment recursions give the same steady state -----------------------
# state of second moments (Var x, Cov(x, y), Var y); means are 0 in steady state.
x, eps, yv = sp.symbols("x epsilon y_v", real=True)
Vx, C, Vy = sp.symbols("V_x C V_y", real=True)
mom = {(0, 0): Vx, (0, 1): C, (1, 1): Vy, (2, 2): sigma2}  # (x, y, eps); eps independent of (x, y)
x1 = r * x - a * eps  # SGD step; y unchanged
identity(
    "T5a per step: Var x' = r^2 V_x + a^2 sigma2",
    expect2(x1**2, (x, yv, eps), mom),
    r**2 * Vx + a**2 * sigma2,
)
identity("T5b per step: Cov(x', y) = r C", expect2(x1 * yv, (x, yv, eps), mom), r * C)
mom_s = {
    (0, 0): Vx,
    (0, 1): C,
    (1, 1): Vy,
}  # sampling: y'' = beta y + (1 - beta) x (x already updated)
y2 = beta * yv + (1 - beta) * x
identity(
    "T5c sampling: Var y'' = beta^2 V_y + 2 beta(1-beta) C + (1-beta)^2 V_x",
    expect2(y2**2, (x, yv), mom_s),
    beta**2 * Vy + 2 * beta * (1 - beta) * C + (1 - beta) ** 2 * Vx,
)
identity(
    "T5d sampling: Cov(x, y'') = beta C + (1-beta) V_x",
    expect2(x * y2, (x, yv), mom_s),
    beta * C + (1 - beta) * Vx,
)


def sample(vx: sp.Expr, c: sp.Expr, vy: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    return (
        vx,
        beta * c + (1 - beta) * vx,
        beta**2 * vy + 2 * beta * (1 - beta) * c + (1 - beta) ** 2 * vx,
    )


def sgd_step(vx: sp.Expr, c: sp.Expr, vy: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    return r**2 * vx + a**2 * sigma2, r * c, vy


# general k, with u = r^k as a symbol: from (V*, Cov, V* R) at a sampling instant, the k SGD steps
# keep V_x = V* (Result 1 fixed point) and multiply C by r each step (T1c), so C = u Cov before sampling.
identity("T5e V_x = V* is kept by every SGD step", sgd_step(V_star, C, Vy)[0], V_star)
_, c_after, vy_after = sample(Vs, u * COV, Vs * R)
identity("T5f general k: sampling returns Cov(x, y) = (1-beta)V*/(1-beta u)", c_after, COV)
identity("T5g general k: sampling returns Var y = V* R", vy_after, Vs * R)
# explicit k = 1..4: iterate the per-step recursions with u = (1 - a h)^k expanded
for kk in range(1, 5):
    u_k = r**kk
    state = (V_star, COV.subs({Vs: V_star, u: u_k}), (Vs * R).subs({Vs: V_star, u: u_k}))
    start = state
    for _ in range(kk):
        state = sgd_step(*state)
    state = sample(*state)
    for got, want, name in zip(state, start, ("Var x", "Cov(x, y)", "Var y"), strict=True):
        identity(f"T5h k = {kk}: one period of per-step recursions returns {name}", got, want)

# ---- Step 6: the general-base formula reduces to R for gamma(l) = V* r^l ----------------------------
# gamma(l) = Cov(x_{t+l}, x_t) of stationary SGD: x_{t+l+1} = r x_{t+l} - a eps, eps independent of x_t.
xl, xt, gam = sp.symbols("x_l x_t gamma_l", real=True)
identity(
    "T6a autocovariance recursion gamma(l+1) = r gamma(l)",
    expect2((r * xl - a * eps) * xt, (xl, xt, eps), {(0, 1): gam, (2, 2): sigma2}),
    r * gam,
)
identity("T6b gamma(l) = V* r^l: step", r * (Vs * r**j), Vs * r ** (j + 1))
identity("T6c gamma(mk) = V* u^m with u = r^k", Vs * r ** (k * j), Vs * (r**k) ** j)
wv = sp.Symbol("w_v", real=True)  # w = beta u, |w| < 1
partial = wv * (1 - wv**M) / (1 - wv)
identity(
    "T6d geometric partial sum sum_{m=1}^M w^m = w(1-w^M)/(1-w): base M = 0", partial.subs(M, 0), 0
)
identity(
    "T6e geometric partial sum: step M -> M+1", partial + wv ** (M + 1), partial.subs(M, M + 1)
)
w_abs = sp.Symbol("w_abs", positive=True)
identity(
    "T6f |w|^M -> 0 as M -> oo for |w| = s/(1+s) in (0, 1)",
    sp.limit((w_abs / (1 + w_abs)) ** M, M, sp.oo),
    0,
)
positive(
    "T6g 1 - (beta u)^2 > 0, i.e. |w| = |beta u| < 1, on the domain", 1 - (beta * u) ** 2, DOMAIN
)
geo_sum = beta * u / (1 - beta * u)  # sum_{m>=1} (beta u)^m
identity(
    "T6h (1-beta)/(1+beta) [V* + 2 sum beta^m V* u^m] = V* R",
    (1 - beta) / (1 + beta) * (Vs + 2 * Vs * geo_sum),
    Vs * R,
)
# algebra of the general-base formula: y = (1-beta) sum_j beta^j z_{n-j};
# the double sum regrouped by m = |i - j| has weight sum_{j>=0} beta^(2j+m) = beta^m/(1 - beta^2).
b_abs = sp.Symbol("b", positive=True)
identity(
    "T6i sum_{j>=0} beta^(2j+m) = beta^m/(1-beta^2) (closed form of the geometric series)",
    sp.summation((b_abs / (1 + b_abs)) ** (2 * j + M), (j, 0, sp.oo)),
    (b_abs / (1 + b_abs)) ** M / (1 - (b_abs / (1 + b_abs)) ** 2),
)
identity(
    "T6j (1-beta)^2/(1-beta^2) = (1-beta)/(1+beta)",
    (1 - beta) ** 2 / (1 - beta**2),
    (1 - beta) / (1 + beta),
)

# ---- Step 7: the mean: E[z_n] = u^n m_0, E[y_{n+1}] = beta E[y_n] + (1-beta) E[z_{n+1}] ------
n = sp.Symbol("n", integer=True, nonnegative=True)
m0 = sp.Symbol("m_0", real=True)
Ey = m0 * (beta**n + (1 - beta) * u * (beta**n - u**n) / (beta - u))  # beta != u
identity("T7a E[y_n] formula: base n = 0 (y_0 = x_0)", Ey.subs(n, 0), m0)
identity(
    "T7b E[y_n] formula: step n -> n+1",
    beta * Ey + (1 - beta) * u ** (n + 1) * m0,
    Ey.subs(n, n + 1),
)
Ey_eq = m0 * beta**n * (1 + n * (1 - beta))  # beta == u
identity("T7c E[y_n] at beta = u: base", Ey_eq.subs(n, 0), m0)
identity(
    "T7d E[y_n] at beta = u: step",
    beta * Ey_eq + (1 - beta) * beta ** (n + 1) * m0,
    Ey_eq.subs(n, n + 1),
)
p_abs = unit_interval(s)
identity(
    "T7e n p^n -> 0 as n -> oo for p in (0, 1), so E[y_n] -> 0", sp.limit(n * p_abs**n, n, sp.oo), 0
)

# ---- Step 8: fixed points (table A: h = 2, a = 0.3, k = 5) in exact rational arithmetic --------------
u_a = Fraction(2, 5) ** 5  # h = 2, a = 0.3: rho = 0.6, r = 0.4, k = 5
v_a = Fraction(3, 7)  # V* with sigma2 = 4


def ratio(b: Fraction, uu: Fraction) -> Fraction:
    return (1 - b) * (1 + b * uu) / ((1 + b) * (1 - b * uu))


numeric("T8a table A: u = 0.4^5 = 0.01024", u_a == Fraction(1024, 100000))
for b, printed in (
    ("0.5", "0.33676423"),
    ("0.8", "0.11294659"),
    ("0.9", "0.05361071"),
    ("0.2", "0.66940294"),
):
    val = ratio(Fraction(b), u_a)
    numeric(
        f"T8b table A: R(beta = {b}) = {printed}",
        abs(val - Fraction(printed)) <= Fraction(5, 10**9),
        f"{float(val):.10f}",
    )
cov_a = (1 - Fraction(1, 2)) * v_a / (1 - Fraction(1, 2) * u_a)
numeric(
    "T8c table A: Cov(x, y) at sigma2 = 4, beta = 0.5 is 0.21538850",
    abs(cov_a - Fraction("0.21538850")) <= Fraction(5, 10**9),
    f"{float(cov_a):.10f}",
)

done("Result 2 (SMA without feedback: stationary covariance and R)")
