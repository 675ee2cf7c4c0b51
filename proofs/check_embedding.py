"""Result 7: embedding on the NQM (proofs/07-embedding.md). Every step is certified by sympy."""

import sympy as sp
from certify import done, identity, numeric, positive

# --- Step 1: the affine image of a random variable -------------------------------------------
a, b = sp.symbols("a_j b_j", real=True)
m, second = sp.symbols("m s2", real=True)  # E[x_r] and E[x_r^2]
mean_j = a * m + b
second_j = sp.expand(a**2 * second + 2 * a * b * m + b**2)  # E[(a x + b)^2] by linearity
identity("step 1: Var(a x + b) = a^2 Var x", second_j - mean_j**2, a**2 * (second - m**2))

# --- Step 2: the tie commutes with every update of the reference ------------------------------
beta, alpha = sp.symbols("beta alpha", real=True)
x, y, x_prev = sp.symbols("x_r y_r x_r_prev", real=True)
identity(
    "step 2a: SMA average of the member = a * (average of the reference) + b",
    beta * (a * y + b) + (1 - beta) * (a * x + b),
    a * (beta * y + (1 - beta) * x) + b,
)
identity(
    "step 2b: Lookahead step of the member = a * (step of the reference) + b",
    (a * y + b) + alpha * ((a * x + b) - (a * y + b)),
    a * (y + alpha * (x - y)) + b,
)
identity(
    "step 2c: heavy-ball velocity of the member = a * velocity of the reference (no offset)",
    (a * x + b) - (a * x_prev + b),
    a * (x - x_prev),
)

# --- Step 3: steady state of the member -------------------------------------------------------
# In steady state the reference has mean 0 and variance V_r; step 1 then gives the member's moments.
V_r, V_j = sp.symbols("V_r V_j", positive=True)
stationary = {m: 0, second: V_r}
identity("step 3a: stationary mean of the member = b_j", mean_j.subs(stationary), b)
identity(
    "step 3b: stationary variance of the member = a_j^2 V_r",
    (second_j - mean_j**2).subs(stationary),
    a**2 * V_r,
)

# --- Step 4/5: the loss change and its sign ---------------------------------------------------
h_j = sp.symbols("h_j", positive=True)
change = sp.Rational(1, 2) * h_j * (b**2 + a**2 * V_r) - sp.Rational(1, 2) * h_j * V_j
identity(
    "step 4: change of the steady-state loss = 1/2 h_j (b^2 + a^2 V_r - V_j)",
    change,
    sp.Rational(1, 2) * h_j * (b**2 + a**2 * V_r - V_j),
)
s = sp.symbols("s", positive=True)
perfect_shared = change.subs({b: 0, V_j: V_r})
identity(
    "step 5a: shared dynamics, perfect tie: change = 1/2 h V_r (a - 1)(a + 1)",
    perfect_shared,
    sp.Rational(1, 2) * h_j * V_r * (a - 1) * (a + 1),
)
positive("step 5b: |a| > 1 raises the loss (a = 1 + s)", perfect_shared.subs(a, 1 + s))
positive("step 5b: |a| > 1 raises the loss (a = -1 - s)", perfect_shared.subs(a, -1 - s))
positive(
    "step 5c: |a| < 1 lowers the loss (a = (1 - w)/(1 + w), w > 0)",
    -perfect_shared.subs(a, (1 - s) / (1 + s)),
)
identity("step 5d: |a| = 1 leaves it unchanged", perfect_shared.subs(a, 1), 0)
identity(
    "step 5e: an imperfect tie adds exactly its bias 1/2 h_j b^2",
    change - change.subs(b, 0),
    sp.Rational(1, 2) * h_j * b**2,
)
positive("step 5e: the bias is positive for b != 0 (b^2 = s)", sp.Rational(1, 2) * h_j * s)
d = sp.symbols("d", positive=True)  # d = V_j - a^2 V_r > 0
threshold = change.subs(V_j, a**2 * V_r + d)
identity(
    "step 5f: with V_j = a^2 V_r + d, change = 1/2 h_j (b^2 - d): lowers iff b^2 < d",
    threshold,
    sp.Rational(1, 2) * h_j * (b**2 - d),
)

# --- Step 6: when the least-squares tie is perfect --------------------------------------------
# Snapshots of the means, x_r(t) = m_r r^t and x_j(t) = m_j r^t with the same r (shared dynamics):
# the normal equations of min sum (x_j - a x_r - b)^2 give a = m_j/m_r and b = 0.
r, m_r, m_j = sp.symbols("r m_r m_j", nonzero=True)
times = range(4)
xs = [m_r * r**t for t in times]
ys = [m_j * r**t for t in times]
A, B = sp.symbols("A B")
normal = [
    sum((yy - A * xx - B) * xx for xx, yy in zip(xs, ys, strict=True)),
    sum(yy - A * xx - B for xx, yy in zip(xs, ys, strict=True)),
]
solution = sp.solve(normal, [A, B], dict=True)
numeric("step 6a: least squares has one solution", len(solution) == 1)
identity("step 6a: shared dynamics give a = m_j / m_r", solution[0][A], m_j / m_r)
identity("step 6a: shared dynamics give b = 0 (a perfect tie)", solution[0][B], 0)
# Different curvatures: the points are not on a line through 0, the fitted b is not 0.
r_j = sp.Rational(1, 2)
r_ref = sp.Rational(9, 10)
xs = [r_ref**t for t in times]
ys = [r_j**t for t in times]
fit = sp.solve(
    [
        sum((yy - A * xx - B) * xx for xx, yy in zip(xs, ys, strict=True)),
        sum(yy - A * xx - B for xx, yy in zip(xs, ys, strict=True)),
    ],
    [A, B],
    dict=True,
)[0]
numeric(
    "step 6b: r_j = 1/2, r_r = 9/10, t = 0..3: the fitted b is not 0 (an imperfect tie)",
    fit[B] != 0,
    f"b = {fit[B]} = {float(fit[B]):.6f}",
)

# --- Step 7: the reference may run SMA; the member inherits the reduction ---------------------
# By step 2a the member's average is a_j * (reference's average) + b_j; the reference's average has
# stationary mean 0 and variance R V_r (proofs/02-sma-ratio.md); step 1 gives the member's.
R = sp.symbols("R", positive=True)
identity(
    "step 7: readout variance of the member = a_j^2 R V_r when the reference runs SMA",
    (second_j - mean_j**2).subs({m: 0, second: R * V_r}),
    a**2 * R * V_r,
)

done("Result 7 (embedding)")
