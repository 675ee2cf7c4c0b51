"""Result 4: SMA with feedback is Lookahead; its steady state and how it compares with SMA.

Run from the repository root: ``python proofs/check_lookahead.py``. Every step below is one labelled
call to ``certify``; the labels are the ones cited in ``proofs/04-lookahead.md``.
"""

from __future__ import annotations

import sympy as sp
from certify import done, identity, numeric, positive, symmetric_interval, unit_interval

import nqm.closed_form as cf
from nqm.rules import SGD, SMA, Lookahead, State

# ---- symbols ---------------------------------------------------------------------------------------
alpha, beta, u, r, a, h, sigma2 = sp.symbols("alpha beta u r a h sigma2")
x, y, phi, eta, eps, noise = sp.symbols("x y phi eta epsilon noise")
s, t, w = sp.symbols("s t w", positive=True)  # parametrisation symbols, all > 0


def r_sma(beta, u):
    """SMA without feedback (Result 2, proofs/02-sma-ratio.md):
    R = (1-beta)(1+beta*u) / ((1+beta)(1-beta*u))."""
    return (1 - beta) * (1 + beta * u) / ((1 + beta) * (1 - beta * u))


def r_la(alpha, u):
    """The cancelled Lookahead ratio."""
    return alpha * (1 + u) / (alpha * (1 + u) + 2 * (1 - alpha))


# Parametrisations of the domain by positive symbols.
ALPHA = {alpha: unit_interval(s)}  # alpha in (0, 1)
U = {u: symmetric_interval(t)}  # u in (-1, 1)
DOMAIN = {**ALPHA, **U}

# ---- Step 1: the two update maps are the same --------------------------------------------------------
# On a sampling step the base optimizer has already moved the fast weights to x; the average is y.
sma_y = beta * y + (1 - beta) * x  # SMA: y <- beta*y + (1-beta)*x, then (feedback) x <- y
sma_x = sma_y
la_slow = y + alpha * (x - y)  # Lookahead: slow <- slow + alpha*(x - slow), then x <- slow
la_x = la_slow
identity(
    "1a: SMA-feedback average = Lookahead slow weights (beta = 1-alpha)",
    sma_y.subs(beta, 1 - alpha),
    la_slow,
)
identity(
    "1b: SMA-feedback fast weights = Lookahead fast weights (beta = 1-alpha)",
    sma_x.subs(beta, 1 - alpha),
    la_x,
)

# The same holds for the code in nqm.rules, run on symbols: one full period (k = 3 SGD steps, the
# last one a sampling step) from the state (x, y), at dyadic hyperparameters so every float is exact.
lr_, alpha_, k_ = 0.5, 0.25, 3
noises = sp.symbols("n1:4")
sma_rule = SMA(SGD(lr_), k_, 1 - alpha_, feedback=True)
la_rule = Lookahead(SGD(lr_), k_, alpha_)
s_sma = s_la = State(x, y, sp.Integer(0))
for step, n_t in enumerate(noises, start=1):
    s_sma = sma_rule.step(step, s_sma, h, n_t)
    s_la = la_rule.step(step, s_la, h, n_t)
identity(
    "1c: nqm.rules SMA(feedback) and Lookahead give the same y after one period",
    sp.nsimplify(s_sma.y),
    sp.nsimplify(s_la.y),
)
identity(
    "1d: nqm.rules SMA(feedback) and Lookahead give the same x after one period",
    sp.nsimplify(s_sma.x),
    sp.nsimplify(s_la.x),
)
identity(
    "1e: after a sampling step the fast weights equal the average",
    sp.nsimplify(s_la.x),
    sp.nsimplify(s_la.y),
)

# ---- Step 2: k SGD steps from phi: x_k = u*phi + eta, Var eta = V*(1 - u^2) ---------------------------
# x_{j+1} = r*x_j - a*eps_j. Induction hypothesis x_j = P*phi + E_j with P = r^j and E_j the noise part.
P = sp.Symbol("P")  # stands for r^j (or r^(2j) below)
identity(
    "2a: x_{j+1} = r^(j+1)*phi + (r*E_j - a*eps_j)",
    r * (P * phi + eta) - a * eps,
    (r * P) * phi + (r * eta - a * eps),
)
# Var E_{j+1} = r^2 Var E_j + a^2 sigma2 (eps_j independent of E_j), Var E_0 = 0.
v_star = a**2 * sigma2 / (1 - r**2)
identity("2b: base case Var E_0 = V*(1 - r^0) = 0", v_star * (1 - 1), 0)
identity(
    "2c: induction r^2 V*(1 - r^(2j)) + a^2 sigma2 = V*(1 - r^(2(j+1)))",
    r**2 * v_star * (1 - P) + a**2 * sigma2,
    v_star * (1 - r**2 * P),
)
identity(
    "2d: V* = a^2 sigma2/(1-r^2) = a sigma2/(h(2-rho)) with r = 1 - a h",
    v_star.subs(r, 1 - a * h),
    a * sigma2 / (h * (2 - a * h)),
)

# ---- Step 3: the outer recursion -------------------------------------------------------------------
c = 1 - alpha * (1 - u)
identity(
    "3: phi' = beta*phi + (1-beta)*(u*phi + eta) = (1 - alpha(1-u)) phi + alpha*eta",
    (beta * phi + (1 - beta) * (u * phi + eta)).subs(beta, 1 - alpha),
    c * phi + alpha * eta,
)

# ---- Step 4: variance recursion and its fixed point -----------------------------------------------
q, W = sp.symbols("q W")  # q = Var eta, W = Var phi_n
w_star = alpha**2 * q / (1 - c**2)
identity("4a: W* = c^2 W* + alpha^2 q (fixed point)", c**2 * w_star + alpha**2 * q, w_star)
identity(
    "4b: W_{n+1} - W* = c^2 (W_n - W*) (geometric convergence when |c| < 1)",
    (c**2 * W + alpha**2 * q) - w_star,
    c**2 * (W - w_star),
)

# ---- Step 5: existence of the steady state: |1 - alpha(1-u)| < 1 ------------------------------------
rho_s = {sp.Symbol("rho"): 2 * unit_interval(w)}  # rho in (0, 2)
rho = sp.Symbol("rho")
positive("5a: 1 - r = rho > 0 for rho in (0, 2)", 1 - (1 - rho), rho_s)
positive("5b: 1 + r = 2 - rho > 0 for rho in (0, 2)", 1 + (1 - rho), rho_s)
positive("5c: 1 - c = alpha(1-u) > 0 for alpha in (0,1), u in (-1,1)", 1 - c, DOMAIN)
positive("5d: 1 + c = 2 - alpha(1-u) > 0 for alpha in (0,1), u in (-1,1)", 1 + c, DOMAIN)
identity("5e: at alpha = 1, c = u", c.subs(alpha, 1), u)
positive(
    "5f: c - u = (1-alpha)(1-u) > 0: the mean contracts more slowly than SGD's u", c - u, DOMAIN
)
# Remark: at u = -1 (rho = 2, k odd) c = 1 - 2 alpha, still inside (-1, 1); Var eta = k a^2 sigma2.
identity("5g: at u = -1, c = 1 - 2 alpha", c.subs(u, -1), 1 - 2 * alpha)
q_rho2 = sum((1 - 2) ** (2 * j) for j in range(3)) * 1**2 * 1  # sum_{j<k} r^(2j) a^2 sigma2, r = -1
w_rho2 = w_star.subs({alpha: sp.Rational(1, 2), u: -1, q: q_rho2})
numeric(
    "5h: rho = 2, k = 3, a = sigma2 = 1, alpha = 1/2: Var phi = 3/4 exactly",
    w_rho2 == sp.Rational(3, 4),
    f"{w_rho2}",
)

# ---- Step 6: the ratio R_LA = W*/V* with q = V*(1 - u^2) -----------------------------------------------
V = sp.Symbol("V_star")
ratio = w_star.subs(q, V * (1 - u**2)) / V  # R_LA = W*/V* with Var eta = V*(1 - u^2) (step 2)
identity(
    "6a: 1 - c^2 = alpha(1-u)(2 - alpha(1-u))", 1 - c**2, alpha * (1 - u) * (2 - alpha * (1 - u))
)
uncancelled = alpha**2 * (1 - u**2) / (alpha**2 * (1 - u**2) + 2 * alpha * (1 - alpha) * (1 - u))
identity("6b: alpha^2(1-u^2)/(1-c^2) = the uncancelled form", ratio, uncancelled)
identity("6c: alpha^2(1-u^2)/(1-c^2) = alpha(1+u)/(alpha(1+u) + 2(1-alpha))", ratio, r_la(alpha, u))

# ---- Step 7: bounds and monotonicity ------------------------------------------------------------------
positive("7a: R_LA > 0", r_la(alpha, u), DOMAIN)
identity(
    "7b: 1 - R_LA = 2(1-alpha)/(alpha(1+u) + 2(1-alpha))  (nqm's lookahead_reduction)",
    1 - r_la(alpha, u),
    2 * (1 - alpha) / (alpha * (1 + u) + 2 * (1 - alpha)),
)
positive("7c: 1 - R_LA > 0", 1 - r_la(alpha, u), DOMAIN)
positive("7d: alpha - R_LA > 0", alpha - r_la(alpha, u), DOMAIN)
u1, u2 = sp.symbols("u1 u2")
d1 = alpha * (1 + u1) + 2 * (1 - alpha)
d2 = alpha * (1 + u2) + 2 * (1 - alpha)
identity(
    "7e: R_LA(u2) - R_LA(u1) = 2 alpha (1-alpha)(u2-u1)/(D(u1) D(u2))",
    r_la(alpha, u2) - r_la(alpha, u1),
    2 * alpha * (1 - alpha) * (u2 - u1) / (d1 * d2),
)
ORDERED = {**ALPHA, u1: symmetric_interval(t), u2: symmetric_interval(t * w / (1 + w))}  # u1 < u2
positive("7f: R_LA strictly increases in u on (-1, 1)", r_la(alpha, u2) - r_la(alpha, u1), ORDERED)

# ---- Step 8: limits and special values -------------------------------------------------------------------
identity("8a: R_LA(u = 1) = alpha (the limit rho -> 0)", r_la(alpha, 1), alpha)
identity("8b: R_LA(u = 0) = alpha/(2 - alpha)", r_la(alpha, 0), alpha / (2 - alpha))
identity("8c: R_LA(u = 0) = R_SMA(beta = 1 - alpha, u = 0)", r_la(alpha, 0), r_sma(1 - alpha, 0))
identity("8d: R_LA(alpha = 1) = 1", r_la(1, u), 1)
identity("8e: R_LA(u = -1) = 0", r_la(alpha, -1), 0)

# ---- Step 9: neither ratio is below the other everywhere ---------------------------------------------
points = [
    # (rho, k, alpha, printed R_LA, printed R_SMA, which is lower)
    (sp.Rational(1, 10), 5, sp.Rational(1, 2), "0.44297", "0.61262", "LA"),
    (sp.Rational(3, 2), 5, sp.Rational(4, 5), "0.65957", "0.65839", "SMA"),
]
for rho_v, k_v, alpha_v, la_printed, sma_printed, lower in points:
    u_v = (1 - rho_v) ** k_v
    la_v, sma_v = r_la(alpha_v, u_v), r_sma(1 - alpha_v, u_v)
    tag = f"rho={rho_v}, k={k_v}, alpha={alpha_v}"
    for name, exact, printed in (("R_LA", la_v, la_printed), ("R_SMA", sma_v, sma_printed)):
        half_ulp = sp.Rational(1, 2) * sp.Rational(10) ** -(len(printed.split(".")[1]))
        numeric(
            f"9a: {tag}: exact {name} rounds to {printed}",
            abs(exact - sp.Rational(printed)) <= half_ulp,
            f"{name} = {exact}",
        )
    numeric(
        f"9b: {tag}: {lower} is strictly lower",
        (la_v < sma_v) if lower == "LA" else (sma_v < la_v),
        f"R_LA - R_SMA = {la_v - sma_v} = {float(la_v - sma_v):.6g}",
    )
    la_nqm = float(cf.lookahead_ratio(float(alpha_v), float(rho_v), k_v))
    sma_nqm = float(cf.sma_ratio(float(1 - alpha_v), float(rho_v), k_v))
    numeric(
        f"9c: {tag}: nqm.closed_form agrees with the exact values to 1e-14",
        abs(la_nqm - la_v) <= 1e-14 * la_v and abs(sma_nqm - sma_v) <= 1e-14 * sma_v,
    )

# The sign of the difference, factored.
diff = r_sma(1 - alpha, u) - r_la(alpha, u)
d_la = alpha * (1 + u) + 2 * (1 - alpha)
d_sma = (2 - alpha) * (1 - (1 - alpha) * u)
factored = 2 * alpha * (1 - alpha) * u * (u + 1 - alpha) / (d_sma * d_la)
identity(
    "9d: R_SMA - R_LA = 2 alpha beta u (u + beta) / ((1+beta)(1-beta u) D_LA), beta = 1-alpha",
    diff,
    factored,
)
numerator = sp.fraction(sp.factor(sp.together(diff)))[0]
rest = sp.cancel(numerator / (u * (u + 1 - alpha)))
numeric(
    "9e: sympy's own factorisation of the numerator is u (u + 1 - alpha) times a u-free factor",
    u not in rest.free_symbols,
    f"numerator = {numerator}",
)
positive("9f: the denominator (1+beta)(1-beta u) D_LA > 0", d_sma * d_la, DOMAIN)
# Three sub-intervals of u (beta = 1 - alpha in (0, 1)):
b_ = 1 - unit_interval(s)  # beta as a function of s
region_pos = {**ALPHA, u: unit_interval(t)}  # u in (0, 1)
region_mid = {**ALPHA, u: -b_ * unit_interval(t)}  # u in (-beta, 0)
region_neg = {**ALPHA, u: -b_ - (1 - b_) * unit_interval(t)}  # u in (-1, -beta)
positive("9g: u in (0, 1): R_SMA - R_LA > 0 (Lookahead lower)", diff, region_pos)
positive("9h: u in (-beta, 0): R_LA - R_SMA > 0 (SMA lower)", -diff, region_mid)
positive("9i: u in (-1, -beta): R_SMA - R_LA > 0 (Lookahead lower)", diff, region_neg)
identity("9j: equal at u = 0", diff.subs(u, 0), 0)
identity("9k: equal at u = -beta", diff.subs(u, -(1 - alpha)), 0)
identity(
    "9l: at u = 1 (rho -> 0): R_SMA = 1, so R_SMA - R_LA = 1 - alpha", diff.subs(u, 1), 1 - alpha
)

done("Result 4 (SMA with feedback = Lookahead)")
