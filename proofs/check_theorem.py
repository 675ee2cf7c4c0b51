"""Result 3 (proofs/03-theorem.md): 0 < R < 1, the bounds, limits and monotonicity of
R(beta, u) = (1-beta)(1+beta u) / ((1+beta)(1-beta u)), u = (1 - rho)^k.

Run from the repository root: ``python proofs/check_theorem.py``. Every step either holds
symbolically or the script exits non-zero naming the step.
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp
from certify import done, identity, numeric, positive, symmetric_interval, unit_interval

beta, u, rho = sp.symbols("beta u rho", real=True)
s, w = sp.symbols("s w", positive=True)  # domain parameters
k = sp.Symbol("k", integer=True, positive=True)
j = sp.Symbol("j", integer=True, nonnegative=True)
p = sp.Symbol("p", real=True)

R = (1 - beta) * (1 + beta * u) / ((1 + beta) * (1 - beta * u))
LOWER = ((1 - beta) / (1 + beta)) ** 2
INDEPENDENT = (1 - beta) / (1 + beta)
DOMAIN = {beta: unit_interval(s), u: symmetric_interval(w)}  # beta in (0, 1), u in (-1, 1)

# ---- Step 1: 0 < rho < 2 and k >= 1 integer => |u| < 1 ----------------------------------------------
r = 1 - rho
positive("U1a 0 < rho < 2 => p := r^2 < 1", 1 - r**2, {rho: 2 * unit_interval(s)})
identity("U1b u^2 = (r^2)^k for integer k", (r**k) ** 2, (r**2) ** k)
# induction on k for 1 - p^k > 0 with p in [0, 1)
identity("U1c base k = 1: 1 - p^1 = 1 - p", 1 - p**1, 1 - p)
identity(
    "U1d step: 1 - p^(k+1) = (1 - p^k) + p^k (1 - p)", 1 - p ** (k + 1), (1 - p**k) + p**k * (1 - p)
)
positive("U1e p^k (1 - p) > 0 for p in (0, 1)", p**k * (1 - p), {p: unit_interval(s)})
identity("U1f p = 0 (rho = 1): u = 0^k = 0", (1 - rho).subs(rho, 1) ** k, 0)

# ---- Step 2: R > 0 and R < 1 on beta in (0, 1), u in (-1, 1) ---------------------------------------
positive("U2a R > 0", R, DOMAIN)
reduction = 2 * beta * (1 - u) / ((1 + beta) * (1 - beta * u))
identity("U2b 1 - R = 2 beta (1-u) / ((1+beta)(1-beta u))", 1 - R, reduction)
positive("U2c 1 - R > 0", 1 - R, DOMAIN)

# ---- Step 3: bounds ((1-beta)/(1+beta))^2 < R, equality R = (1-beta)/(1+beta) iff u = 0 -------------
gap = 2 * beta * (1 - beta) * (1 + u) / ((1 + beta) ** 2 * (1 - beta * u))
identity(
    "U3a R - ((1-beta)/(1+beta))^2 = 2 beta (1-beta)(1+u)/((1+beta)^2 (1-beta u))", R - LOWER, gap
)
positive("U3b R - ((1-beta)/(1+beta))^2 > 0", R - LOWER, DOMAIN)
identity("U3c R = (1-beta)/(1+beta) at u = 0", R.subs(u, 0), INDEPENDENT)
identity(
    "U3d R - (1-beta)/(1+beta) = (1-beta)/(1+beta) * 2 beta u/(1 - beta u)",
    R - INDEPENDENT,
    INDEPENDENT * 2 * beta * u / (1 - beta * u),
)

# ---- Step 4: limits ----------------------------------------------------------------------------------
identity("U4a R = 1 at beta = 0 (exactly)", R.subs(beta, 0), 1)
identity("U4b lim beta -> 0+ R = 1", sp.limit(R, beta, 0, "+"), 1)
identity("U4c lim beta -> 1- R = 0", sp.limit(R, beta, 1, "-"), 0)
identity("U4d lim u -> 1- R = 1", sp.limit(R, u, 1, "-"), 1)
identity("U4e lim u -> -1+ R = ((1-beta)/(1+beta))^2", sp.limit(R, u, -1, "+"), LOWER)
identity(
    "U4f lim rho -> 0+ (1-rho)^k = 1 (k fixed): a h -> 0 gives u -> 1",
    sp.limit(r**k, rho, 0, "+"),
    1,
)
identity(
    "U4g lim rho -> 2- (1-rho)^k = -1 for odd k = 2j+1",
    sp.limit(r ** (2 * j + 1), rho, 2, "-"),
    -1,
)
identity(
    "U4h lim rho -> 2- (1-rho)^k = +1 for even k = 2j+2", sp.limit(r ** (2 * j + 2), rho, 2, "-"), 1
)

# ---- Step 5: monotonicity in u and beta ---------------------------------------------------------------
dR_du = sp.diff(R, u)
identity(
    "U5a dR/du = 2 beta (1-beta) / ((1+beta)(1-beta u)^2)",
    dR_du,
    2 * beta * (1 - beta) / ((1 + beta) * (1 - beta * u) ** 2),
)
positive("U5b dR/du > 0", dR_du, DOMAIN)
dR_dbeta = sp.diff(R, beta)
identity(
    "U5c -dR/dbeta = 2 (1-u)(1 + beta^2 u) / ((1+beta)^2 (1-beta u)^2)",
    -dR_dbeta,
    2 * (1 - u) * (1 + beta**2 * u) / ((1 + beta) ** 2 * (1 - beta * u) ** 2),
)
positive("U5d -dR/dbeta > 0", -dR_dbeta, DOMAIN)
# in k for rho in (0, 1): r in (0, 1), u_{k+1} - u_k = -r^k (1 - r) < 0, and R increases with u
rr = sp.Symbol("r", real=True)
identity("U5e u_k - u_(k+1) = r^k (1 - r)", rr**k - rr ** (k + 1), rr**k * (1 - rr))
positive(
    "U5f r^k (1 - r) > 0 for r in (0, 1), i.e. rho in (0, 1)",
    rr**k * (1 - rr),
    {rr: unit_interval(s)},
)
identity(
    "U5g rho = 1: u = 0 for every k, R constant in k",
    R.subs(u, (1 - rho).subs(rho, 1) ** k),
    INDEPENDENT,
)


# rho in (1, 2): no monotonicity in k -- the counterexample of Result 6 (rho = 1.9, beta = 0.5), exact
def R_exact(b: Fraction, rho_v: Fraction, kk: int) -> Fraction:
    uu = (1 - rho_v) ** kk
    return (1 - b) * (1 + b * uu) / ((1 + b) * (1 - b * uu))


half, r19 = Fraction(1, 2), Fraction(19, 10)
vals = {kk: R_exact(half, r19, kk) for kk in (1, 2, 3, 5, 10)}
numeric(
    "U5h rho = 1.9, beta = 0.5: R(k=2) > R(k=1)",
    vals[2] > vals[1],
    f"{float(vals[2]):.5f} > {float(vals[1]):.5f}",
)
numeric(
    "U5i rho = 1.9, beta = 0.5: R(k=3) < R(k=2)",
    vals[3] < vals[2],
    f"{float(vals[3]):.5f} < {float(vals[2]):.5f}",
)
for kk, printed in (
    (1, "0.12644"),
    (2, "0.78711"),
    (3, "0.15525"),
    (5, "0.18137"),
    (10, "0.47410"),
):
    numeric(
        f"U5j R(0.5, 1.9, k={kk}) = {printed} (Result 6)",
        abs(vals[kk] - Fraction(printed)) <= Fraction(5, 10**6),
        f"{float(vals[kk]):.7f}",
    )

# ---- Step 6: what the theorem does not say ------------------------------------------------------------
neg_beta = {beta: -unit_interval(s), u: symmetric_interval(w)}  # beta in (-1, 0)
positive(
    "U6a beta in (-1, 0) => R - 1 > 0 (averaging with negative beta increases variance)",
    R - 1,
    neg_beta,
)
identity(
    "U6b beta = 1: the formula gives 0, but y is frozen (no steady state, excluded)",
    R.subs(beta, 1),
    0,
)

# finite t: the variance case of Result 6, exact rational per-step moments (x_0 ~ N(0,1), y_0 = x_0)
a_v, h_v, s2_v, b_v = Fraction(1, 2), Fraction(1), Fraction(1, 100), Fraction(9, 10)
r_v = 1 - a_v * h_v
vx, c, vy = Fraction(1), Fraction(1), Fraction(1)  # Var x_0, Cov(x_0, y_0), Var y_0
var_y, var_x = {}, {}
for t in range(1, 21):
    vx, c = r_v**2 * vx + a_v**2 * s2_v, r_v * c  # SGD step
    vy, c = (
        b_v**2 * vy + 2 * b_v * (1 - b_v) * c + (1 - b_v) ** 2 * vx,
        b_v * c + (1 - b_v) * vx,
    )  # k = 1
    var_y[t], var_x[t] = vy, vx
for t, py, px in ((5, "0.43636", "0.0043066"), (20, "0.019160", "0.0033333")):
    tol_y = Fraction(5, 10 ** len(py.split(".")[1]) * 10)
    tol_x = Fraction(5, 10 ** len(px.split(".")[1]) * 10)
    numeric(
        f"U6c finite t = {t}: Var y_t = {py} > Var x_t = {px} (exact moments, Result 6)",
        abs(var_y[t] - Fraction(py)) <= tol_y
        and abs(var_x[t] - Fraction(px)) <= tol_x
        and var_y[t] > var_x[t],
        f"{float(var_y[t]):.6g} vs {float(var_x[t]):.6g}",
    )

done("Result 3 (the theorem: 0 < R < 1 and its bounds)")
