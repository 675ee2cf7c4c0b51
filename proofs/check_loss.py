"""Result 8 (proofs/08-loss.md): expected loss = 1/2 sum h (m^2 + V); steady-state risk per coordinate;
the steady-state loss of SGD, SMA, EMA and Lookahead on the standard NQM (table D: ``TABLE_D`` below).

Run from the repository root: ``python proofs/check_loss.py``. Steps L1-L6 are symbolic; L7-L9 are
numerical evaluations of sums over 10^4 coordinates (exact rationals / 30-digit mpmath / float64
``nqm``), checked, not proved.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import sympy as sp
from certify import done, identity, numeric, positive, symmetric_interval, unit_interval

from nqm import closed_form as cf
from nqm.problem import standard
from nqm.rules import EMA, SGD, SMA, Lookahead

a, h, c, B, sigma2 = sp.symbols("a h c B sigma2", positive=True)
m, m0, V0, V, EX2 = sp.symbols("m m_0 V_0 V E_x2", real=True)
beta, u, rho = sp.symbols("beta u rho", real=True)
s, w, v = sp.symbols("s w v", positive=True)
t = sp.Symbol("t", integer=True, nonnegative=True)
i, d = sp.symbols("i d", integer=True, positive=True)

r = 1 - a * h
V_star = a * sigma2 / (h * (2 - a * h))
R = (1 - beta) * (1 + beta * u) / ((1 + beta) * (1 - beta * u))

# ---- Step 1: E[x^2] = m^2 + V for any distribution with finite variance ------------------------------
# V := E[(x - m)^2] = E[x^2] - 2 m E[x] + m^2 by linearity of E, with E[x] = m.
V_def = EX2 - 2 * m * m + m**2
identity("L1 E[x^2] = m^2 + V (V = E[(x-m)^2], linearity of E)", m**2 + V_def, EX2)

# ---- Step 2: per-coordinate expected loss; the loss is a sum over coordinates --------------------------
identity(
    "L2 E[h x^2 / 2] = h (m^2 + V) / 2",
    sp.Rational(1, 2) * h * EX2,
    sp.Rational(1, 2) * h * (m**2 + V_def),
)

# ---- Step 3: steady-state risk of SGD per coordinate --------------------------------------------------
identity("L3a 1/2 h V* = a sigma2 / (2 (2 - rho))", h * V_star / 2, a * sigma2 / (2 * (2 - a * h)))
identity(
    "L3b with sigma2 = c/B: 1/2 h V* = a c / (2 B (2 - a h))",
    (h * V_star / 2).subs(sigma2, c / B),
    a * c / (2 * B * (2 - a * h)),
)

# ---- Step 4: full transient risk of SGD (Result 1), from m_t = r^t m_0, V_t = V* + r^(2t)(V_0 - V*) ----
m_t = r**t * m0
V_t = V_star + r ** (2 * t) * (V0 - V_star)
identity(
    "L4 1/2 h (m_t^2 + V_t) = r^(2t) 1/2 h (m_0^2 + V_0) + (1 - r^(2t)) 1/2 h V*",
    h * (m_t**2 + V_t) / 2,
    r ** (2 * t) * h * (m0**2 + V0) / 2 + (1 - r ** (2 * t)) * h * V_star / 2,
)

# ---- Step 5: averaging lowers the steady risk of every coordinate with sigma2 > 0 -----------------------
gain = h * V_star / 2 * (1 - R)  # SGD risk minus SMA risk, one coordinate
positive(
    "L5 1/2 h V* (1 - R) > 0 for rho in (0,2), beta in (0,1), u in (-1,1)",
    gain.subs(h, rho / a),
    {rho: 2 * unit_interval(v), beta: unit_interval(s), u: symmetric_interval(w)},
)

# ---- Step 6: L*_SGD of the standard NQM (h_i = c_i = 1/i) in closed form, any d --------------------------
term = a * c / (2 * B * (2 - a * h))
identity(
    "L6a h = c = 1/i: a c/(2B(2 - a h)) = a / (2B(2i - a))",
    term.subs({h: 1 / i, c: 1 / i}),
    a / (2 * B * (2 * i - a)),
)


def L_sgd_closed(dd: sp.Expr) -> sp.Expr:
    """sum_{i=1}^d a/(2B(2i - a)) = a/(4B) [psi(d + 1 - a/2) - psi(1 - a/2)]."""
    return a / (4 * B) * (sp.polygamma(0, dd + 1 - a / 2) - sp.polygamma(0, 1 - a / 2))


identity("L6b digamma closed form: d = 0 gives the empty sum 0", L_sgd_closed(0), 0)
identity(
    "L6c digamma closed form: step d-1 -> d adds a/(2B(2d - a)) (psi(x+1) = psi(x) + 1/x)",
    sp.expand_func(L_sgd_closed(d) - L_sgd_closed(d - 1)),
    a / (2 * B * (2 * d - a)),
)

# ---- Step 7 (numerical): table D, SGD column, exact rational sum and digamma closed form -------------------
D = 10_000
TABLE_D = {
    # a: (L*_SGD, {(k, beta): (L*_SMA, ratio)})
    "0.1": ("0.246825", {(1, "0.9"): ("0.221428", "0.8971"), (5, "0.9"): ("0.189280", "0.7669"),
                         (10, "0.9"): ("0.173304", "0.7021"), (5, "0.99"): ("0.132502", "0.5368")}),
    "0.5": ("1.287028", {(1, "0.9"): ("0.950902", "0.7388"), (5, "0.9"): ("0.760949", "0.5912"),
                         (10, "0.9"): ("0.679235", "0.5278"), (5, "0.99"): ("0.465271", "0.3615")}),
    "1.0": ("2.793463", {(1, "0.9"): ("1.742803", "0.6239"), (5, "0.9"): ("1.369873", "0.4904"),
                         (10, "0.9"): ("1.207033", "0.4321"), (5, "0.99"): ("0.765219", "0.2739")}),
    "1.9": ("14.111367", {(1, "0.9"): ("3.044173", "0.2157"), (5, "0.9"): ("2.432225", "0.1724"),
                          (10, "0.9"): ("2.929185", "0.2076"), (5, "0.99"): ("1.179401", "0.0836")}),
}  # fmt: skip


def printed_ok(value: float | Fraction, printed: str) -> bool:
    """Within half a unit in the last printed decimal place."""
    decimals = len(printed.split(".")[1])
    return abs(Fraction(value) - Fraction(printed)) <= Fraction(1, 2 * 10**decimals)


mpmath.mp.dps = 30
problem = standard(dim=D)  # h_i = c_i = 1/i, B = 1
l_sgd_ref: dict[str, mpmath.mpf] = {}
for a_str, (sgd_printed, _) in TABLE_D.items():
    av = Fraction(a_str)
    exact = sum((av / (2 * (2 * n - av)) for n in range(1, D + 1)), Fraction(0))
    am = mpmath.mpf(a_str)
    digamma = am / 4 * (mpmath.digamma(D + 1 - am / 2) - mpmath.digamma(1 - am / 2))
    numeric(
        f"L7a a = {a_str}: exact rational sum = digamma closed form (to 1e-25)",
        abs(mpmath.mpf(exact.numerator) / exact.denominator - digamma) < mpmath.mpf(10) ** -25,
        f"{mpmath.nstr(digamma, 12)}",
    )
    numeric(
        f"L7b a = {a_str}: L*_SGD = {sgd_printed} (table D)",
        printed_ok(exact, sgd_printed),
        f"{float(exact):.9f}",
    )
    nqm_value = cf.steady_loss(problem, SGD(float(av)))
    numeric(
        f"L7c a = {a_str}: nqm.closed_form.steady_loss(SGD) = exact sum (rel 1e-13)",
        abs(Fraction(nqm_value) - exact) <= Fraction(1, 10**13) * exact,
        f"{nqm_value!r}",
    )
    l_sgd_ref[a_str] = digamma


# ---- Step 8 (numerical): table D, SMA / EMA columns; Lookahead on the same grid --------------------------
def reference_sums(a_str: str, k: int, b_str: str) -> tuple[mpmath.mpf, mpmath.mpf]:
    """30-digit sums over i = 1..D of 1/2 h_i V*_i R_i for SMA and for Lookahead (alpha = 1 - beta)."""
    am, bm = mpmath.mpf(a_str), mpmath.mpf(b_str)
    alpha = 1 - bm
    sma = la = mpmath.mpf(0)
    for n in range(1, D + 1):
        hh = mpmath.mpf(1) / n
        risk = am * hh / (2 * (2 - am * hh))  # 1/2 h V*, c = h, B = 1
        uu = (1 - am * hh) ** k
        sma += risk * (1 - bm) * (1 + bm * uu) / ((1 + bm) * (1 - bm * uu))
        la += risk * alpha * (1 + uu) / (alpha * (1 + uu) + 2 * (1 - alpha))
    return sma, la


sma_refs: dict[tuple[str, int, str], mpmath.mpf] = {}
for a_str, (_, rows) in TABLE_D.items():
    lr = float(a_str)
    for (k, b_str), (loss_printed, ratio_printed) in rows.items():
        beta_v = float(b_str)
        sma_ref, la_ref = reference_sums(a_str, k, b_str)
        sma_refs[a_str, k, b_str] = sma_ref
        tag = f"a = {a_str}, k = {k}, beta = {b_str}"
        numeric(
            f"L8a {tag}: L*_SMA = {loss_printed} (table D)",
            printed_ok(float(sma_ref), loss_printed),
            mpmath.nstr(sma_ref, 10),
        )
        ratio = sma_ref / l_sgd_ref[a_str]
        numeric(
            f"L8b {tag}: L*_SMA / L*_SGD = {ratio_printed} (table D)",
            printed_ok(float(ratio), ratio_printed),
            mpmath.nstr(ratio, 6),
        )
        nqm_sma = cf.steady_loss(problem, SMA(SGD(lr), k, beta_v))
        numeric(
            f"L8c {tag}: nqm steady_loss(SMA) = 30-digit sum (rel 1e-12)",
            abs(nqm_sma - sma_ref) <= mpmath.mpf("1e-12") * sma_ref,
            f"{nqm_sma!r}",
        )
        if k == 1:
            nqm_ema = cf.steady_loss(problem, EMA(SGD(lr), beta_v))
            numeric(
                f"L8d {tag}: nqm steady_loss(EMA) = steady_loss(SMA, k = 1)",
                abs(nqm_ema - nqm_sma) <= 1e-14 * nqm_sma,
                f"{nqm_ema!r}",
            )
        nqm_la = cf.steady_loss(problem, Lookahead(SGD(lr), k, 1 - beta_v))
        numeric(
            f"L8e {tag}: nqm steady_loss(Lookahead, alpha = 1 - beta) = 30-digit sum (rel 1e-12)",
            abs(nqm_la - la_ref) <= mpmath.mpf("1e-12") * la_ref,
            f"{nqm_la!r}",
        )
        numeric(
            f"L8f {tag}: L*_SMA < L*_SGD and L*_LA < L*_SGD",
            sma_ref < l_sgd_ref[a_str] and la_ref < l_sgd_ref[a_str],
        )

# ---- Step 9 (numerical): non-monotone in k at a = 1.9 (table D) -----------------------------------------
losses = {k: sma_refs["1.9", k, "0.9"] for k in (1, 5, 10)}
numeric(
    "L9 a = 1.9, beta = 0.9: L*_SMA(k=5) < L*_SMA(k=1) and < L*_SMA(k=10)",
    losses[5] < losses[1] and losses[5] < losses[10],
)

done("Result 8 (expected loss and the standard NQM's steady-state losses)")
