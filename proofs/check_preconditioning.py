"""Result 9 (proofs/09-preconditioning.md): a diagonal preconditioner P = h^(-p) under SGD, momentum and
the averages.

Run from the repository root: ``python proofs/check_preconditioning.py``. Every step either holds
symbolically or the script exits non-zero naming the step.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
from certify import done, identity, numeric, positive, symmetric_interval, unit_interval

from nqm.closed_form import steady_loss
from nqm.problem import standard
from nqm.rules import SGD, SMA, Momentum, State

# ---- symbols -----------------------------------------------------------------------------------------
a, h, sigma2, P = sp.symbols(
    "a h sigma2 P", positive=True
)  # step, curvature, noise, preconditioner
p = sp.Symbol("p", nonnegative=True)  # the power of P = h^(-p)
x, eps, v = sp.symbols("x epsilon v", real=True)
beta, u, mu, alpha = sp.symbols("beta u mu alpha", real=True)
k = sp.Symbol("k", integer=True, positive=True)
B = sp.Symbol("B", positive=True)
s, t, w = sp.symbols("s t w", positive=True)  # domain parameters

rho_P = a * P * h  # the preconditioned rho
V_P = a * P * sigma2 / (h * (2 - rho_P))  # Result 1 with a -> aP


# ---- Step 1: one preconditioned SGD step is SGD with step aP ----------------------------------------
identity("1a: x - aP(hx + eps) = (1 - aPh) x - (aP) eps", x - a * P * (h * x + eps),
         (1 - rho_P) * x - (a * P) * eps)  # fmt: skip
# The code: nqm.rules.SGD with precondition 1/2 at lr 1/2 and h = 4 (P = 1/2, exact): x - 1/4 (4x + eps)
out = SGD(0.5, precondition=0.5).step(1, State(x, x, sp.Integer(0)), sp.Integer(4), eps)
identity("1b: nqm.rules.SGD(0.5, precondition=0.5) at h = 4 steps by lr * 4^(-1/2) = 1/4",
         sp.nsimplify(out.x), x - sp.Rational(1, 4) * (4 * x + eps))  # fmt: skip
out = Momentum(0.5, 0.25, precondition=0.5).step(1, State(x, x, v), sp.Integer(4), eps)
identity("1c: nqm.rules.Momentum with precondition: v <- mu v - a P g",
         sp.nsimplify(out.v), sp.Rational(1, 4) * v - sp.Rational(1, 4) * (4 * x + eps))  # fmt: skip

# ---- Step 2: the steady state of SGD with a -> aP ----------------------------------------------------
identity("2a: V*_P is the fixed point of V' = (1 - aPh)^2 V + (aP)^2 sigma2",
         (1 - rho_P) ** 2 * V_P + (a * P) ** 2 * sigma2, V_P)  # fmt: skip
positive("2b: V*_P > 0 for 0 < aPh < 2", V_P.subs(a, 2 * unit_interval(t) / (P * h)))
identity("2c: steady risk 1/2 h V*_P = aP sigma2 / (2(2 - aPh))",
         h * V_P / 2, a * P * sigma2 / (2 * (2 - rho_P)))  # fmt: skip
# The standard NQM: c = h, sigma2 = h / B, P = h^(-p).
risk = (h * V_P / 2).subs({sigma2: h / B, P: h ** (-p)})
identity("2d: standard NQM risk per coordinate = a h^(1-p) / (2B(2 - a h^(1-p)))",
         sp.powsimp(risk), a * h ** (1 - p) / (2 * B * (2 - a * h ** (1 - p))))  # fmt: skip

# ---- Step 3: the averages only see rho_P -------------------------------------------------------------
# The SMA chain sampled every k steps: z' = u z + eta with u = (1 - aPh)^k, Var eta = V*_P (1 - u^2).
# Result 2's Lyapunov fixed point holds for any V* and u in (-1, 1); with V*_P it gives V*_P R(beta, u).
R = (1 - beta) * (1 + beta * u) / ((1 + beta) * (1 - beta * u))
Vs = sp.Symbol("V_star", positive=True)
q = Vs * (1 - u**2)
F = sp.Matrix([[u, 0], [(1 - beta) * u, beta]])
g = sp.Matrix([1, 1 - beta])
Sigma = sp.Matrix(
    [[Vs, (1 - beta) * Vs / (1 - beta * u)], [(1 - beta) * Vs / (1 - beta * u), Vs * R]]
)
residual = F * Sigma * F.T + q * g * g.T - Sigma
for i, j in ((0, 0), (0, 1), (1, 1)):
    identity(
        f"3a: (V*, Cov, V* R) is the SMA fixed point for any V*, entry ({i},{j})", residual[i, j], 0
    )
identity("3b: with V* = V*_P and u = (1 - aPh)^k: Var y = V*_P R(beta, (1 - aPh)^k)",
         (Vs * R).subs({Vs: V_P, u: (1 - rho_P) ** k}),
         V_P * R.subs(u, (1 - rho_P) ** k))  # fmt: skip
R_LA = alpha * (1 + u) / (alpha * (1 + u) + 2 * (1 - alpha))
# Lookahead: phi' = (1 - alpha(1-u)) phi + alpha eta, stationary variance alpha^2 q / (1 - c^2)
phi_var = alpha**2 * q / (1 - (1 - alpha * (1 - u)) ** 2)
identity("3c: Lookahead's fixed point is V* R_LA(alpha, u) for any V* (so V*_P R_LA(alpha, u_P))",
         phi_var, Vs * R_LA)  # fmt: skip
# Heavy ball: Result 5's V with a -> aP is the fixed point of the preconditioned AR(2).
phi1 = 1 + mu - rho_P
A = sp.Matrix([[phi1, -mu], [1, 0]])
b = sp.Matrix([-a * P, 0])
V_mom = a * P * sigma2 * (1 + mu) / ((1 - mu) * h * (2 * (1 + mu) - rho_P))
gamma1 = phi1 * V_mom / (1 + mu)
Pm = sp.Matrix([[V_mom, gamma1], [gamma1, V_mom]])
residual = A * Pm * A.T + sigma2 * b * b.T - Pm
for i, j in ((0, 0), (0, 1), (1, 1)):
    identity(
        f"3d: momentum's stationary covariance with a -> aP, entry ({i},{j})", residual[i, j], 0
    )

# ---- Step 4: what changes for the averages -----------------------------------------------------------
# Coordinate i enters R only through rho_i = a h_i^(1-p): the spread of rho over the spectrum shrinks
# from h_max / h_min to (h_max / h_min)^(1-p) ...
h1, h2 = sp.symbols("h_1 h_2", positive=True)
identity("4a: rho_1 / rho_2 = (h_1 / h_2)^(1-p)",
         sp.powsimp(sp.expand_power_base((a * h1 ** (1 - p)) / (a * h2 ** (1 - p)), force=True)),
         sp.powsimp(sp.expand_power_base((h1 / h2) ** (1 - p), force=True)))  # fmt: skip
# ... and in a flat direction (h < 1, rho_P <= 1) a stronger preconditioner lowers u = (1 - rho_P)^k,
# hence R (R increases in u, Result 3): d rho_P / dp = a h^(1-p) (-ln h) > 0 for h < 1.
hh = 1 / (1 + s)  # h in (0, 1)
drho_dp = sp.diff(a * h ** (1 - p), p)
identity("4b: d(a h^(1-p))/dp = a h^(1-p) (-ln h)", drho_dp, a * h ** (1 - p) * (-sp.log(h)))
positive("4c: d rho_P / dp > 0 for h in (0, 1)", drho_dp.subs(h, hh))
dR_du = sp.diff(R, u)
positive("4d: dR/du > 0 for beta in (0, 1), u in (-1, 1)", dR_du,
         {beta: unit_interval(s), u: symmetric_interval(w)})  # fmt: skip
du_drho = sp.diff((1 - sp.Symbol("r_")) ** k, sp.Symbol("r_")).subs(
    sp.Symbol("r_"), unit_interval(t)
)
positive("4e: du/drho = -k (1 - rho)^(k-1) < 0 for rho in (0, 1)", -du_drho)
# The Newton limit p = 1: every coordinate has rho = a and the same R; its steady risk is a/(2B(2-a)).
identity("4f: p = 1: the standard NQM risk per coordinate is a / (2B(2 - a)), the same for all h",
         (a * h ** (1 - p) / (2 * B * (2 - a * h ** (1 - p)))).subs(p, 1), a / (2 * B * (2 - a)))  # fmt: skip

# ---- Step 5: numbers on the standard NQM (d = 10^4, B = 1) ------------------------------------------
hs = 1.0 / np.arange(1, 10_001)


def loss(lr: float, power: float, beta_: float | None = None, k_: int = 5) -> float:
    """Steady loss sum_i a P c / (2 (2 - a P h)) (times R for SMA), c = h, float64."""
    rho = lr * hs ** (1 - power)
    base = lr * hs ** (1 - power) / (2 * (2 - rho))
    if beta_ is None:
        return float(base.sum())
    uu = (1 - rho) ** k_
    return float((base * (1 - beta_) * (1 + beta_ * uu) / ((1 + beta_) * (1 - beta_ * uu))).sum())


table = {
    (0.5, 0.0): (1.287028, 0.760949),
    (0.5, 0.5): (25.148256, 15.293477),
    (0.05, 0.5): (2.484887, 2.276695),
}
for (lr, power), (sgd, sma) in table.items():
    got = (loss(lr, power), loss(lr, power, 0.9))
    close = abs(got[0] - sgd) < 5e-7 and abs(got[1] - sma) < 5e-7
    numeric(f"5a: lr = {lr}, p = {power}: L*_SGD = {sgd}, L*_SMA(k=5, beta=0.9) = {sma}",
            close, f"got {got[0]:.6f}, {got[1]:.6f}")  # fmt: skip
problem = standard(10_000)
for (lr, power), (_, sma) in table.items():
    rule = SMA(SGD(lr, precondition=power), 5, 0.9)
    got = steady_loss(problem, rule)
    numeric(f"5b: nqm.closed_form.steady_loss agrees at lr = {lr}, p = {power}",
            abs(got - sma) < 5e-7, f"{got:.6f}")  # fmt: skip
ratio_flat = [loss(0.05, pw, 0.9) / loss(0.05, pw) for pw in (0.0, 0.5, 1.0)]
# Per coordinate R falls as p grows (4c-4e), but the whole problem's ratio need not: preconditioning
# moves the steady loss towards the flat directions (risk ~ h^(1-p)), where R is closest to 1.
numeric("5c: at lr = 0.05, L*_SMA / L*_SGD over the whole NQM is not monotone in p (p = 0, 1/2, 1)",
        ratio_flat[1] > ratio_flat[0] > ratio_flat[2]
        and [round(r, 4) for r in ratio_flat] == [0.8306, 0.9162, 0.2941],
        ", ".join(f"{r:.4f}" for r in ratio_flat))  # fmt: skip

done("Result 9 (preconditioning)")
