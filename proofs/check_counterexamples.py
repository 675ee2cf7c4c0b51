"""Result 6: what is NOT true. R is not monotone in k when rho = a*h > 1, and before steady state the
average can have a larger variance and a larger expected loss than SGD's iterate.

Run from the repository root: ``python proofs/check_counterexamples.py``. Every step below is one
labelled call to ``certify``; the labels are the ones cited in ``proofs/06-counterexamples.md``.
All numbers are exact sympy Rationals; floats appear only in the comparisons with ``nqm``.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from certify import done, identity, numeric, positive, symmetric_interval, unit_interval

import nqm.closed_form as cf
import nqm.moments as mo
from nqm.problem import Problem
from nqm.rules import SGD, SMA

Q = sp.Rational
beta, alpha, u, u1, u2, rho, r = sp.symbols("beta alpha u u1 u2 rho r")
s, t, w = sp.symbols("s t w", positive=True)  # parametrisation symbols, all > 0
j = sp.Symbol("j", integer=True, nonnegative=True)
k = sp.Symbol("k", integer=True, positive=True)


def R(beta, u):
    """SMA without feedback (Result 2, proofs/02-sma-ratio.md)."""
    return (1 - beta) * (1 + beta * u) / ((1 + beta) * (1 - beta * u))


def R_LA(alpha, u):
    """SMA with feedback = Lookahead (Result 4)."""
    return alpha * (1 + u) / (alpha * (1 + u) + 2 * (1 - alpha))


def matches_printed(exact, printed: str) -> bool:
    """``exact`` rounds to the decimal string ``printed``: within half a unit in its last place."""
    decimals = len(printed.split(".")[1])
    return abs(exact - Q(printed)) <= Q(1, 2) * Q(10) ** -decimals


def close(value: float, exact, rel: float = 1e-12) -> bool:
    return abs(float(value) - float(exact)) <= rel * abs(float(exact))


BETA = {beta: unit_interval(s)}
ALPHA = {alpha: unit_interval(s)}

# =====================================================================================================
# Part A: R is not monotone in k for rho in (1, 2)
# =====================================================================================================
# ---- Step 1: the counterexample rho = 19/10, beta = 1/2 --------------------------------------------
printed = {1: "0.12644", 2: "0.78711", 3: "0.15525", 5: "0.18137", 10: "0.47410"}
rho_v, beta_v = Q(19, 10), Q(1, 2)
values = {}
for k_v, text in printed.items():
    exact = R(beta_v, (1 - rho_v) ** k_v)
    values[k_v] = exact
    numeric(
        f"1a: rho=19/10, beta=1/2, k={k_v}: exact R rounds to {text}",
        matches_printed(exact, text),
        f"R = {exact}",
    )
    got = cf.sma_ratio(float(beta_v), float(rho_v), k_v)
    numeric(
        f"1b: k={k_v}: nqm.closed_form.sma_ratio equals the exact R to 1e-13",
        close(got, exact, 1e-13),
        f"{float(got)!r}",
    )
numeric(
    "1c: R(k=2) > R(k=1) and R(k=3) < R(k=2): not monotone in k",
    values[2] > values[1] and values[3] < values[2],
)
numeric(
    "1d: and R(k=5) > R(k=3), R(k=10) > R(k=5)", values[5] > values[3] and values[10] > values[5]
)

# ---- Step 2: why: R increases strictly in u ----------------------------------------------------------
d = 1 - beta * u
identity(
    "2a: dR/du = 2 beta (1-beta) / ((1+beta)(1-beta u)^2)",
    sp.diff(R(beta, u), u),
    2 * beta * (1 - beta) / ((1 + beta) * d**2),
)
positive(
    "2b: dR/du > 0 for beta in (0,1), u in (-1,1)",
    sp.diff(R(beta, u), u),
    {**BETA, u: symmetric_interval(t)},
)
identity(
    "2c: R(u2) - R(u1) = 2 beta (1-beta)(u2-u1) / ((1+beta)(1-beta u1)(1-beta u2))",
    R(beta, u2) - R(beta, u1),
    2 * beta * (1 - beta) * (u2 - u1) / ((1 + beta) * (1 - beta * u1) * (1 - beta * u2)),
)
ORDERED = {u1: symmetric_interval(t), u2: symmetric_interval(t * w / (1 + w))}  # -1 < u1 < u2 < 1
positive(
    "2d: R strictly increasing: R(u2) - R(u1) > 0 for -1 < u1 < u2 < 1",
    R(beta, u2) - R(beta, u1),
    {**BETA, **ORDERED},
)
identity("2e: R(u = 0) = (1-beta)/(1+beta)", R(beta, 0), (1 - beta) / (1 + beta))
# The same for Lookahead (also step 7f of check_lookahead.py).
positive(
    "2f: R_LA strictly increasing in u on (-1, 1)",
    R_LA(alpha, u2) - R_LA(alpha, u1),
    {**ALPHA, **ORDERED},
)

# ---- Step 3: for rho in (1, 2), u = (1-rho)^k alternates in sign ------------------------------------
qq = sp.Symbol("q")  # q = rho - 1 = -r in (0, 1)
RHO_HIGH = {rho: 1 + unit_interval(w)}
positive("3a: rho in (1, 2) => -r = rho - 1 > 0", -(1 - rho), RHO_HIGH)
positive("3b: rho in (1, 2) => 1 + r = 2 - rho > 0", 1 + (1 - rho), RHO_HIGH)
positive(
    "3c: k = 2j+1 odd => -u = -(-q)^(2j+1) > 0", -((-qq) ** (2 * j + 1)), {qq: unit_interval(w)}
)
positive("3d: k = 2j+2 even => u = (-q)^(2j+2) > 0", (-qq) ** (2 * j + 2), {qq: unit_interval(w)})
# With 2d: k odd => u_k < 0 < u_{k+1} => R(k) < R(k+1); k even => R(k) > R(k+1). The sign pattern at
# the counterexample, exactly:
for k_v in (1, 2, 3, 4, 5):
    u_k, u_next = (1 - rho_v) ** k_v, (1 - rho_v) ** (k_v + 1)
    r_k, r_next = R(beta_v, u_k), R(beta_v, u_next)
    want = (r_k < r_next) if k_v % 2 else (r_k > r_next)
    numeric(
        f"3e: rho=19/10, beta=1/2: R(k={k_v}) {'<' if k_v % 2 else '>'} R(k={k_v + 1})",
        want and (u_k < 0 < u_next if k_v % 2 else u_next < 0 < u_k),
    )
for k_v in (1, 2, 3):
    u_k, u_next = (1 - rho_v) ** k_v, (1 - rho_v) ** (k_v + 1)
    la_k, la_next = R_LA(Q(1, 2), u_k), R_LA(Q(1, 2), u_next)
    numeric(
        f"3f: rho=19/10, alpha=1/2: R_LA(k={k_v}) {'<' if k_v % 2 else '>'} R_LA(k={k_v + 1})",
        (la_k < la_next) if k_v % 2 else (la_k > la_next),
    )

# ---- Step 4: contrast: rho in (0, 1] gives u_k non-increasing in k -----------------------------------
RHO_LOW = {rho: unit_interval(w)}  # rho in (0, 1), r = 1 - rho in (0, 1)
uk = (1 - rho) ** k
identity("4a: u_k - u_{k+1} = rho * r^k", uk - (1 - rho) ** (k + 1), rho * uk)
positive("4b: rho in (0, 1) => u_k - u_{k+1} = rho r^k > 0 (any integer k >= 1)", rho * uk, RHO_LOW)
positive("4c: rho in (0, 1) => u_k = r^k > 0", uk, RHO_LOW)
identity(
    "4d: rho = 1 => u = 0 for every k, R = (1-beta)/(1+beta) for every k",
    R(beta, (1 - rho) ** k).subs(rho, 1),
    (1 - beta) / (1 + beta),
)

# =====================================================================================================
# Part B: before steady state the average can be worse than SGD
# =====================================================================================================
# ---- Step 5: the per-step moment recursions (Result 2, Step 5) from covariance propagation -------------
# The two functions below are the recursions; step 5 certifies them against P' = A P A^T + sigma2 b b^T,
# and steps 6-8 iterate exactly these functions on Rationals.


def sgd_step(m_x, v_x, c, a, h, sigma2):
    """Every step: x' = r x - a eps. Returns (m_x', V_x', C_xy'); y is unchanged."""
    r = 1 - a * h
    return r * m_x, r**2 * v_x + a**2 * sigma2, r * c


def sample_step(m_x, v_x, m_y, v_y, c, beta):
    """Sampling step, after the x-update: y <- beta y + (1-beta) x. Returns (m_y', V_y', C_xy')."""
    return (
        beta * m_y + (1 - beta) * m_x,
        beta**2 * v_y + 2 * beta * (1 - beta) * c + (1 - beta) ** 2 * v_x,
        beta * c + (1 - beta) * v_x,
    )


a, h, sigma2 = sp.symbols("a h sigma2")
mx, my, vx, vy, cxy = sp.symbols("m_x m_y V_x V_y C_xy")
P = sp.Matrix([[vx, cxy], [cxy, vy]])
mean = sp.Matrix([mx, my])
# SGD step on the state (x, y): x' = r x - a eps, y unchanged.
A_sgd = sp.Matrix([[1 - a * h, 0], [0, 1]])
b_sgd = sp.Matrix([-a, 0])
P1 = A_sgd * P * A_sgd.T + sigma2 * b_sgd * b_sgd.T
m1 = A_sgd * mean
m_x1, v_x1, c1 = sgd_step(mx, vx, cxy, a, h, sigma2)
identity("5a: every step: m_x' = r m_x", m1[0], m_x1)
identity("5b: every step: V_x' = r^2 V_x + a^2 sigma2", P1[0, 0], v_x1)
identity("5c: every step: C_xy' = r C_xy", P1[0, 1], c1)
identity("5d: every step: m_y unchanged", m1[1], my)
identity("5d: every step: V_y unchanged", P1[1, 1], vy)
# Sampling step, after the x-update: y <- beta y + (1-beta) x (no noise).
A_s = sp.Matrix([[1, 0], [1 - beta, beta]])
P2 = A_s * P * A_s.T
m2 = A_s * mean
m_y2, v_y2, c2 = sample_step(mx, vx, my, vy, cxy, beta)
identity("5e: sampling: m_y' = beta m_y + (1-beta) m_x", m2[1], m_y2)
identity("5f: sampling: V_y' = beta^2 V_y + 2 beta (1-beta) C_xy + (1-beta)^2 V_x", P2[1, 1], v_y2)
identity("5g: sampling: C_xy' = beta C_xy + (1-beta) V_x", P2[0, 1], c2)
identity("5h: sampling: m_x unchanged", m2[0], mx)
identity("5h: sampling: V_x unchanged", P2[0, 0], vx)


def moments(m0, v0, a, h, sigma2, beta, k, steps):
    """Exact (m_x, V_x, m_y, V_y, C_xy) after 0..steps steps, by the recursions of step 5;
    y_0 = x_0, so V_y = C_xy = V_x at t = 0."""
    state = (m0, v0, m0, v0, v0)
    out = [state]
    for step in range(1, steps + 1):
        m_x, v_x, m_y, v_y, c = state
        m_x, v_x, c = sgd_step(m_x, v_x, c, a, h, sigma2)
        if step % k == 0:
            m_y, v_y, c = sample_step(m_x, v_x, m_y, v_y, c, beta)
        state = (m_x, v_x, m_y, v_y, c)
        out.append(state)
    return out


def steady(a, h, sigma2, beta, k):
    """Exact stationary (V_x, V_y, C_xy) at a sampling instant: the fixed point of one period of the
    recursions, and the period map's linear part (for its eigenvalues)."""
    v_x, v_y, c = sp.symbols("vx vy c")
    nx, nc = v_x, c
    for _ in range(k):
        _, nx, nc = sgd_step(0, nx, nc, a, h, sigma2)
    _, ny, nc = sample_step(0, nx, 0, v_y, nc, beta)
    images = (nx, nc, ny)
    unknowns = (v_x, c, v_y)
    jac = sp.Matrix([[sp.diff(f, z) for z in unknowns] for f in images])
    (sol,) = sp.solve([f - z for f, z in zip(images, unknowns, strict=True)], unknowns, dict=True)
    return sol[v_x], sol[v_y], sol[c], jac


def nqm_readouts(problem, rule, steps):
    """(mean, var) of nqm's readout after 0..steps steps, from nqm.moments.iterate."""
    ms = list(mo.iterate(problem, rule, steps))
    return [float(m.readout(rule)[0][0]) for m in ms], [float(m.readout(rule)[1][0]) for m in ms]


# ---- Step 6: variance case: x0 ~ N(0, 1), a = 1/2, h = 1, sigma2 = 1/100, beta = 9/10, k = 1 ---------
a_v, h_v, s2_v, b_v, k_v = Q(1, 2), Q(1), Q(1, 100), Q(9, 10), 1
traj = moments(Q(0), Q(1), a_v, h_v, s2_v, b_v, k_v, 20)
problem = Problem(h=[1.0], c=[0.01], mean0=0.0, var0=1.0)
_, nqm_vy = nqm_readouts(problem, SMA(SGD(0.5), 1, 0.9), 20)
_, nqm_vx = nqm_readouts(problem, SGD(0.5), 20)
for t_v, vy_text, vx_text in ((5, "0.43636", "0.0043066"), (20, "0.019160", "0.0033333")):
    _, vx_e, _, vy_e, _ = traj[t_v]
    numeric(
        f"6a: t={t_v}: exact Var y rounds to {vy_text}",
        matches_printed(vy_e, vy_text),
        f"{float(vy_e):.8g}",
    )
    numeric(
        f"6b: t={t_v}: exact Var x rounds to {vx_text}",
        matches_printed(vx_e, vx_text),
        f"{float(vx_e):.8g}",
    )
    numeric(f"6c: t={t_v}: Var y > Var x (the average is worse)", vy_e > vx_e)
    numeric(
        f"6d: t={t_v}: nqm.moments agrees with the exact values to 1e-12",
        close(nqm_vy[t_v], vy_e) and close(nqm_vx[t_v], vx_e),
    )
vx_s, vy_s, c_s, jac = steady(a_v, h_v, s2_v, b_v, k_v)
rr_v = 1 - a_v * h_v
v_star = a_v * s2_v / (h_v * (2 - a_v * h_v))
numeric(
    "6e: steady state: Var x = V* = 1/300 and Var y = V* R(beta, u) exactly",
    vx_s == v_star == Q(1, 300) and vy_s == v_star * R(b_v, rr_v**k_v),
    f"Var y = {vy_s}",
)
numeric(
    "6f: steady Var y rounds to 0.00046252, below Var x: the order reverses",
    matches_printed(vy_s, "0.00046252") and vy_s < vx_s,
)
diag = [jac[i, i] for i in range(3)]
numeric(
    "6g: the period map is lower triangular with diagonal (r^2k, beta r^k, beta^2), all in (-1,1)",
    jac.is_lower
    and diag == [rr_v ** (2 * k_v), b_v * rr_v**k_v, b_v**2]
    and all(abs(e) < 1 for e in diag),
    f"diag = {diag}",
)
numeric(
    "6h: nqm closed form and Lyapunov give the steady Var y to 1e-12",
    close(cf.steady_variance(SMA(SGD(0.5), 1, 0.9), np.ones(1), np.full(1, 0.01))[0], vy_s)
    and close(
        mo.stationary_variance(SMA(SGD(0.5), 1, 0.9), np.ones(1), np.full(1, 0.01))[0], vy_s, 1e-10
    ),
)

# ---- Step 7: loss case: x0 = 3, a = 1/5, h = 1, sigma2 = 1, k = 5, beta = 4/5 --------------------------
a_v, h_v, s2_v, b_v, k_v = Q(1, 5), Q(1), Q(1), Q(4, 5), 5
traj = moments(Q(3), Q(0), a_v, h_v, s2_v, b_v, k_v, 150)


def loss(mean, var):
    return h_v * (mean**2 + var) / 2  # E L = 1/2 h E[x^2] = 1/2 h (m^2 + V)


problem = Problem(h=[1.0], c=[1.0], mean0=3.0, var0=0.0)
rule = SMA(SGD(0.2), 5, 0.8)
ly = mo.loss_curve(problem, rule, 150, record=[5, 50, 150])
lx = mo.loss_curve(problem, SGD(0.2), 150, record=[5, 50, 150])
rows = ((5, "3.3732", "0.53277", True), (50, "0.077652", "0.055556", True))
rows += ((150, "0.010568", "0.055556", False),)
for i, (t_v, ly_text, lx_text, y_worse) in enumerate(rows):
    m_x, v_x, m_y, v_y, _ = traj[t_v]
    l_y, l_x = loss(m_y, v_y), loss(m_x, v_x)
    numeric(
        f"7a: t={t_v}: exact E L(y) rounds to {ly_text}",
        matches_printed(l_y, ly_text),
        f"{float(l_y):.8g}",
    )
    numeric(
        f"7b: t={t_v}: exact E L(x) rounds to {lx_text}",
        matches_printed(l_x, lx_text),
        f"{float(l_x):.8g}",
    )
    numeric(
        f"7c: t={t_v}: E L(y) {'>' if y_worse else '<'} E L(x)",
        (l_y > l_x) if y_worse else (l_y < l_x),
    )
    numeric(
        f"7d: t={t_v}: nqm.moments.loss_curve agrees with the exact values to 1e-12",
        close(ly.loss[i], l_y) and close(lx.loss[i], l_x),
    )
m_x, v_x, m_y, v_y, _ = traj[50]
numeric(
    "7e: t=50: the bias part 1/2 h E[y]^2 rounds to 0.067276 (the average lags)",
    matches_printed(h_v * m_y**2 / 2, "0.067276"),
)
vx_s, vy_s, _, jac = steady(a_v, h_v, s2_v, b_v, k_v)
rr_v = 1 - a_v * h_v
u_v = rr_v**k_v
v_star = a_v * s2_v / (h_v * (2 - a_v * h_v))
numeric(
    "7f: steady state: Var x = V* = 1/9 and Var y = V* R(beta, u) exactly",
    vx_s == v_star == Q(1, 9) and vy_s == v_star * R(b_v, u_v),
    f"Var y = {vy_s}",
)
l_y_s, l_x_s = loss(0, vy_s), loss(0, vx_s)
numeric(
    "7g: steady losses round to 0.010559 (y) and 0.055556 (x): the order reverses",
    matches_printed(l_y_s, "0.010559") and matches_printed(l_x_s, "0.055556") and l_y_s < l_x_s,
)
diag = [jac[i, i] for i in range(3)]
numeric(
    "7h: the period map's variance part is lower triangular, diagonal entries in (-1, 1)",
    jac.is_lower and all(abs(e) < 1 for e in diag),
    f"diag = {diag}",
)
numeric(
    "7i: nqm.closed_form.steady_loss agrees to 1e-12 for y and x",
    close(cf.steady_loss(problem, rule), l_y_s) and close(cf.steady_loss(problem, SGD(0.2)), l_x_s),
)

# ---- Step 8: the mean of the average (Result 2, Step 7), by induction and at the loss case -------------
m0, Bn, Un = sp.symbols("m0 B_n U_n")  # B_n = beta^n, U_n = u^n


def mean_y(Bn, Un):
    return m0 * (Bn + (1 - beta) * u * (Bn - Un) / (beta - u))


identity("8a: E[y_0] = m0", mean_y(1, 1), m0)
identity(
    "8b: beta E[y_n] + (1-beta) u^(n+1) m0 = E[y_(n+1)] (E[x_(n+1)k] = u^(n+1) m0)",
    beta * mean_y(Bn, Un) + (1 - beta) * u * Un * m0,
    mean_y(beta * Bn, u * Un),
)
for n, text in ((1, "2.596608"), (5, "1.1178675")):
    exact = mean_y(b_v**n, u_v**n).subs({m0: 3, beta: b_v, u: u_v})
    numeric(
        f"8c: loss case: E[y_{n}] = E[y at t={n * k_v}] from the recursion, rounds to {text}",
        exact == traj[n * k_v][2] and matches_printed(exact, text),
        f"{float(exact):.8g}",
    )

done("Result 6 (counterexamples)")
