"""The claims that ``nqm verify`` checks, as data: each returns a :class:`Claim` with its evidence.

Nothing here prints or writes files; :mod:`nqm.report` and :mod:`nqm.cli` sit on top.

1. SMA's and Lookahead's steady-state variance is below SGD's wherever both exist (random sample of
   (rho, beta, k, alpha) and the standard NQM), with the size of the reduction.
2. The closed forms equal the Lyapunov solution of each rule's period-k system (and Polyak's finite-n
   formula equals the exact moments).
3. Monte Carlo agrees with the exact moments within its confidence interval at every step.
4. The limits, bounds and counterexamples of ``proofs/03-theorem.md``, ``04-lookahead.md`` and
   ``06-counterexamples.md``: bounds on R, no monotonicity in k for rho > 1, no order between SMA
   and Lookahead, SMA worse than SGD before steady state, divergent cases raise.
5. Embedding (proofs/07): a tied coordinate in the three engines, and when it lowers the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lic_dynamics import validation
from nqm import closed_form, moments, montecarlo
from nqm.embedding import Tie
from nqm.problem import Problem, standard
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak, Rule

# Family-wise false-alarm rate of the Monte Carlo claim (Bonferroni over normal z-scores): with a
# fixed seed the run is deterministic, and a correct engine fails it for about 1e-3 of the seeds.
FAMILY_ALPHA = 1e-3
LYAPUNOV_RTOL = 1e-9
EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Settings:
    """Sizes of one run; ``quick`` fits in seconds, the default in under a minute on 2 cores.

    Examples:
        >>> settings = Settings(seed=3, quick=True)
        >>> settings.random_points, settings.curve_dim, settings.small_chains
        (20000, 1000, 4000)
        >>> Settings(seed=-1)
        Traceback (most recent call last):
        ...
        lic_dynamics.validation.InvalidValue: seed must be an integer in [0, 2**53], got -1
    """

    seed: int = 0
    quick: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", validation.integer("seed", self.seed, minimum=0))

    @property
    def random_points(self) -> int:
        return 20_000 if self.quick else 200_000

    @property
    def lyapunov_points(self) -> int:
        return 40 if self.quick else 300

    @property
    def curve_dim(self) -> int:
        return 1_000 if self.quick else 10_000

    @property
    def curve_steps(self) -> int:
        return 200 if self.quick else 1_000

    @property
    def curve_chains(self) -> int:
        return 64 if self.quick else 32

    @property
    def small_chains(self) -> int:
        return 4_000 if self.quick else 20_000


@dataclass
class Claim:
    """One checked statement: ``holds`` is the verdict, ``evidence`` a one-line summary,
    ``details`` the numbers behind it (JSON-serialisable).

    Examples:
        >>> Claim("demo", "1 + 1 = 2", holds=True, evidence="checked by hand")
        Claim(key='demo', statement='1 + 1 = 2', holds=True, evidence='checked by hand', details={})
    """

    key: str
    statement: str
    holds: bool
    evidence: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Curves:
    """Exact and Monte Carlo loss of each rule's readout on the standard NQM (for the plot).

    Examples:
        >>> problem, rule = small_problem(), SGD(0.5)
        >>> curves = Curves(
        ...     "small problem",
        ...     [rule.label()],
        ...     [moments.loss_curve(problem, rule, 20)],
        ...     [montecarlo.simulate(problem, rule, 20, 200, per_coordinate=False)],
        ... )
        >>> curves.labels, curves.exact[0].steps.size, curves.sampled[0].chains
        (['SGD(lr=0.5)'], 21, 200)
    """

    problem_label: str
    labels: list[str]
    exact: list[moments.LossCurve]
    sampled: list[montecarlo.MonteCarlo]


def _crowded(rng: np.random.Generator, n: int, low: float, high: float, tiny: float) -> np.ndarray:
    """Uniform on (low, high) for a third of the draws; the rest log-uniformly close to either end,
    down to a gap of ``tiny``."""
    gap = (high - low) * 10.0 ** rng.uniform(np.log10(tiny / (high - low)), 0, n)
    pick = rng.integers(0, 3, n)
    return np.where(
        pick == 0, rng.uniform(low, high, n), np.where(pick == 1, low + gap, high - gap)
    )


def random_domain(rng: np.random.Generator, n: int, tiny: float = 1e-8) -> dict[str, np.ndarray]:
    """A broad sample of the valid domain: rho in (0, 2), beta in (0, 1), alpha in (0, 1), each
    crowding its ends down to ``tiny``; k log-uniform on 1..1000 with a third on 1..10.

    Examples:
        >>> domain = random_domain(np.random.default_rng(0), 1000)
        >>> sorted(domain), domain["k"].shape
        (['alpha', 'beta', 'k', 'rho'], (1000,))
        >>> bool((domain["rho"] > 0).all() and (domain["rho"] < 2).all())
        True
        >>> bool(domain["k"].min() >= 1 and domain["k"].max() <= 1000)
        True
    """
    k = np.floor(10.0 ** rng.uniform(0, 3, n)).astype(np.int64)
    k[: n // 3] = rng.integers(1, 11, n // 3)
    return {
        "rho": _crowded(rng, n, 0.0, 2.0, tiny),
        "beta": _crowded(rng, n, 0.0, 1.0, tiny),
        "alpha": _crowded(rng, n, 0.0, 1.0, tiny),
        "k": k,
    }


def _spread(values: np.ndarray) -> dict[str, float]:
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


def claim_variance_reduction(settings: Settings) -> Claim:
    """Claim 1: ``0 < R < 1`` for SMA and Lookahead over a random sample of the domain.

    Examples:
        >>> claim = claim_variance_reduction(Settings(quick=True))
        >>> claim.key, claim.holds, claim.details["points"]
        ('variance-reduction', True, 20000)
    """
    n = settings.random_points
    dom = random_domain(np.random.default_rng([settings.seed, 1]), n)
    r_sma = closed_form.sma_ratio(dom["beta"], dom["rho"], dom["k"])
    r_la = closed_form.lookahead_ratio(dom["alpha"], dom["rho"], dom["k"])
    # R < 1 is checked as 1 - R > 0, computed without cancellation: R itself rounds to 1.0 where
    # beta * rho * k is below machine epsilon.
    cut_sma = closed_form.sma_reduction(dom["beta"], dom["rho"], dom["k"])
    cut_la = closed_form.lookahead_reduction(dom["alpha"], dom["rho"], dom["k"])
    # The two forms must agree, so that 1 - R > 0 is a statement about the same R.
    consistent = bool(
        (np.abs(r_sma + cut_sma - 1) <= 4 * EPS).all()
        and (np.abs(r_la + cut_la - 1) <= 4 * EPS).all()
    )
    holds = consistent and bool(
        (r_sma > 0).all() and (cut_sma > 0).all() and (r_la > 0).all() and (cut_la > 0).all()
    )
    worst = int(np.argmin(cut_sma))
    return Claim(
        key="variance-reduction",
        statement="SMA's and Lookahead's steady-state variance is below SGD's wherever both exist",
        holds=holds,
        evidence=(
            f"{n} random (rho, beta, k, alpha): 0 < R_SMA < 1 with 1 - R >= {cut_sma.min():.2g} "
            f"(median R {np.median(r_sma):.3g}), 0 < R_LA < 1 with 1 - R >= {cut_la.min():.2g} "
            f"(median {np.median(r_la):.3g}); R -> 1 only as rho*k -> 0 or beta -> 0"
        ),
        details={
            "points": n,
            "R_sma": _spread(r_sma),
            "R_lookahead": _spread(r_la),
            "variance_reduction_sma": _spread(cut_sma),
            "variance_reduction_lookahead": _spread(cut_la),
            "fraction_halved_sma": float((r_sma < 0.5).mean()),
            "worst_sma": {key: float(dom[key][worst]) for key in ("rho", "beta", "k")},
        },
    )


STANDARD_LRS = (0.1, 0.5, 1.0, 1.9)


def standard_rules(lr: float) -> list[Rule]:
    """The averaging rules compared with SGD on the standard NQM, over ``SGD(lr)``.

    Examples:
        >>> for rule in standard_rules(0.5):
        ...     print(rule.label())
        EMA(beta=0.9) over SGD(lr=0.5)
        SMA(k=5, beta=0.9) over SGD(lr=0.5)
        SMA(k=10, beta=0.9) over SGD(lr=0.5)
        SMA(k=5, beta=0.99) over SGD(lr=0.5)
        Lookahead(k=5, alpha=0.5) over SGD(lr=0.5)
    """
    base = SGD(lr)
    return [
        EMA(base, 0.9),
        SMA(base, 5, 0.9),
        SMA(base, 10, 0.9),
        SMA(base, 5, 0.99),
        Lookahead(base, 5, 0.5),
    ]


def claim_standard_nqm(settings: Settings) -> Claim:
    """Claim 1 on the standard NQM: every averaging rule's steady-state loss is below SGD's.

    Examples:
        >>> claim = claim_standard_nqm(Settings(quick=True))
        >>> claim.key, claim.holds, len(claim.details["rows"])
        ('standard-nqm', True, 20)
        >>> row = claim.details["rows"][1]
        >>> row["lr"], row["rule"], round(row["ratio"], 4)
        (0.1, 'SMA(k=5, beta=0.9) over SGD(lr=0.1)', 0.7669)
    """
    problem = standard(10_000)
    rows, ratios = [], []
    for lr in STANDARD_LRS:
        sgd = closed_form.steady_loss(problem, SGD(lr))
        for rule in standard_rules(lr):
            loss = closed_form.steady_loss(problem, rule)
            rows.append(
                {"lr": lr, "rule": rule.label(), "loss": loss, "sgd_loss": sgd, "ratio": loss / sgd}
            )
            ratios.append(loss / sgd)
    ratios = np.array(ratios)
    return Claim(
        key="standard-nqm",
        statement="On the standard NQM (d = 10^4, h_i = c_i = 1/i) every averaging rule's "
        "steady-state loss is below SGD's",
        holds=bool(((ratios > 0) & (ratios < 1)).all()),
        evidence=(
            f"L*/L*_SGD from {ratios.min():.4f} to {ratios.max():.4f} over lr in "
            f"{list(STANDARD_LRS)} x {len(standard_rules(1.0))} rules (EMA, SMA, Lookahead)"
        ),
        details={"rows": rows},
    )


def _lyapunov_families(rng: np.random.Generator) -> list[Rule]:
    """One rule of each family with random hyperparameters (lr = 1 so that rho = h)."""
    k = int(np.floor(10.0 ** rng.uniform(0, 1.8)))
    beta, alpha, mu = rng.uniform(0.01, 0.99, 3)
    sgd, heavy = SGD(1.0), Momentum(1.0, mu)
    return [
        sgd,
        heavy,
        SMA(sgd, k, beta),
        SMA(sgd, k, beta, feedback=True),
        Lookahead(sgd, k, alpha),
        EMA(sgd, beta),
        SMA(heavy, k, beta),
    ]


def claim_closed_form_equals_lyapunov(settings: Settings) -> Claim:
    """Claim 2: the closed forms equal the Lyapunov solution (and Polyak's formula the moments).

    Examples:
        >>> claim = claim_closed_form_equals_lyapunov(Settings(quick=True))
        >>> claim.key, claim.holds, claim.details["max_rel_error"] < LYAPUNOV_RTOL
        ('closed-form-equals-lyapunov', True, True)
    """
    rng = np.random.default_rng([settings.seed, 2])
    per_rule = 25
    worst, count = 0.0, 0
    worst_case: dict = {}
    for _ in range(max(1, settings.lyapunov_points // per_rule)):
        for rule in _lyapunov_families(rng):
            high = 2 * (1 + rule.base.mu) if isinstance(rule.base, Momentum) else 2.0
            h = _crowded(rng, per_rule, 0.0, high, 1e-3)  # lr = 1, so h is rho
            sigma2 = rng.uniform(0.1, 10.0, per_rule)
            exact = moments.stationary_variance(rule, h, sigma2)
            closed = closed_form.steady_variance(rule, h, sigma2)
            err = np.abs(closed - exact) / np.abs(exact)
            count += per_rule
            if err.max() >= worst:
                i = int(np.argmax(err))
                worst = float(err.max())
                worst_case = {"rule": rule.label(), "rho": float(h[i]), "rel_error": worst}
    polyak_err = _polyak_against_moments(rng)
    holds = worst < LYAPUNOV_RTOL and polyak_err < LYAPUNOV_RTOL
    return Claim(
        key="closed-form-equals-lyapunov",
        statement="Closed forms equal the Lyapunov solution of each rule's period-k system",
        holds=holds,
        evidence=(
            f"{count} (rule, rho) cases over SGD, momentum, SMA +/- feedback, Lookahead, EMA, "
            f"SMA over momentum: max rel. error {worst:.2g}; Polyak finite-n vs exact moments "
            f"{polyak_err:.2g} (tolerance {LYAPUNOV_RTOL:g})"
        ),
        details={
            "cases": count,
            "max_rel_error": worst,
            "worst": worst_case,
            "polyak_max_rel_error": polyak_err,
        },
    )


def _polyak_against_moments(rng: np.random.Generator) -> float:
    """Uniform average of n samples started from SGD's stationary law, exact moments vs formula."""
    worst = 0.0
    for k, n in ((1, 10), (3, 7), (2, 40)):
        rho = _crowded(rng, 20, 0.0, 2.0, 1e-3)
        rule = Polyak(SGD(1.0), k)
        v_star = closed_form.sgd_variance(1.0, rho, 1.0)
        problem = Problem(h=rho, c=1.0, var0=v_star)
        *_, last = moments.iterate(problem, rule, k * n)
        exact = last.readout(rule)[1]
        formula = closed_form.polyak_variance(rule, rho, 1.0, n)
        worst = max(worst, float(np.max(np.abs(formula - exact) / exact)))
    return worst


def small_problem() -> Problem:
    """Four coordinates spanning slow, fast and oscillating directions (rho = lr*h).

    Examples:
        >>> problem = small_problem()
        >>> problem.h.tolist(), problem.sigma2.tolist()
        ([0.02, 0.5, 1.0, 1.6], [1.0, 0.5, 2.0, 1.0])
    """
    return Problem(h=[0.02, 0.5, 1.0, 1.6], c=[1.0, 0.5, 2.0, 1.0], mean0=1.0, var0=0.5)


def small_rules() -> list[Rule]:
    """One rule of each kind, checked against Monte Carlo on :func:`small_problem`.

    Examples:
        >>> for rule in small_rules():
        ...     print(rule.label())
        SGD(lr=1)
        Momentum(lr=0.5, mu=0.5)
        SMA(k=3, beta=0.8) over SGD(lr=1)
        SMA(k=3, beta=0.8, feedback) over SGD(lr=1)
        Lookahead(k=4, alpha=0.5) over SGD(lr=1)
        EMA(beta=0.9) over SGD(lr=1)
        Polyak(k=2) over SGD(lr=1)
        SMA(k=3, beta=0.7) over Momentum(lr=0.5, mu=0.5)
    """
    sgd, heavy = SGD(1.0), Momentum(0.5, 0.5)
    return [
        sgd,
        heavy,
        SMA(sgd, 3, 0.8),
        SMA(sgd, 3, 0.8, feedback=True),
        Lookahead(sgd, 4, 0.5),
        EMA(sgd, 0.9),
        Polyak(sgd, 2),
        SMA(heavy, 3, 0.7),
    ]


def curve_rules() -> list[Rule]:
    """The rules of the loss-versus-step plot on the standard NQM.

    Examples:
        >>> [rule.label() for rule in curve_rules()]  # doctest: +NORMALIZE_WHITESPACE
        ['SGD(lr=0.5)', 'SMA(k=5, beta=0.9) over SGD(lr=0.5)',
         'Lookahead(k=5, alpha=0.5) over SGD(lr=0.5)']
    """
    sgd = SGD(0.5)
    return [sgd, SMA(sgd, 5, 0.9), Lookahead(sgd, 5, 0.5)]


def log_steps(steps: int, count: int = 60) -> np.ndarray:
    """Step 0 and about ``count`` log-spaced steps from 1 to ``steps`` (repeats dropped).

    Examples:
        >>> log_steps(1000, 5).tolist()
        [0, 1, 6, 32, 178, 1000]
        >>> log_steps(10, 20).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    """
    if every_step(steps, count):
        return np.arange(steps + 1)
    grid = np.round(np.geomspace(1, steps, count)).astype(np.int64)
    return np.unique(np.concatenate([np.zeros(1, dtype=np.int64), grid]))


def every_step(steps: int, count: int) -> bool:
    """Whether ``count`` log-spaced points from 1 to ``steps`` are so dense that every step is
    among them once rounded; :func:`log_steps` then skips the grid (a billion points for a thousand
    steps would take gigabytes). The grid spacing in log, ``ln(steps) / (count - 1)``, is then at
    most half the narrowest gap between integers, ``ln((n + 1/2) / (n - 1/2)) > 1 / (steps + 1/2)``,
    so each integer is hit however the grid is rounded.

    Examples:
        >>> every_step(1000, 20), every_step(1000, 10**9)
        (False, True)
    """
    return steps <= 1 or count - 1 >= 2.0 * (steps + 1) * max(math.log(steps), 1.0)


def standard_curves(settings: Settings) -> Curves:
    """Exact and Monte Carlo loss curves of :func:`curve_rules` on the standard NQM.

    Examples:
        >>> curves = standard_curves(Settings(quick=True))  # doctest: +SKIP
        >>> curves.problem_label, len(curves.exact), curves.sampled[0].chains  # doctest: +SKIP
        ('standard NQM, d = 1000', 3, 64)
    """
    problem = standard(settings.curve_dim)
    record = log_steps(settings.curve_steps)
    rules = curve_rules()
    exact = [moments.loss_curve(problem, r, settings.curve_steps, record) for r in rules]
    sampled = [
        montecarlo.simulate(
            problem,
            r,
            settings.curve_steps,
            settings.curve_chains,
            seed=settings.seed + i,
            record=record,
            per_coordinate=False,
        )
        for i, r in enumerate(rules)
    ]
    return Curves(
        f"standard NQM, d = {settings.curve_dim}", [r.label() for r in rules], exact, sampled
    )


def claim_monte_carlo(settings: Settings, curves: Curves) -> Claim:
    """Claim 3: Monte Carlo agrees with the exact moments on :func:`small_problem` and ``curves``.

    Examples:
        >>> problem, rule = small_problem(), SGD(0.5)
        >>> curves = Curves(
        ...     "small problem",
        ...     [rule.label()],
        ...     [moments.loss_curve(problem, rule, 20)],
        ...     [montecarlo.simulate(problem, rule, 20, 200, per_coordinate=False)],
        ... )
        >>> claim = claim_monte_carlo(Settings(quick=True), curves)
        >>> claim.key, claim.holds, claim.details["estimates"]
        ('monte-carlo-agrees', True, 3925)
    """
    problem, steps = small_problem(), 60
    z_all: list[np.ndarray] = []
    per_rule = {}
    for i, rule in enumerate(small_rules()):
        mc = montecarlo.simulate(
            problem, rule, steps, settings.small_chains, seed=settings.seed * 1000 + i
        )
        exact = [m.readout(rule) for m in moments.iterate(problem, rule, steps)]
        mean = np.array([e[0] for e in exact])
        var = np.array([e[1] for e in exact])
        z = np.concatenate(
            [((mc.mean - mean) / mc.mean_se).ravel(), ((mc.var - var) / mc.var_se).ravel()]
        )
        per_rule[rule.label()] = float(np.abs(z).max())
        z_all.append(z)
    for label, exact, mc in zip(curves.labels, curves.exact, curves.sampled, strict=True):
        # The exact standard error: with few chains the sample one is noisy and the per-chain loss
        # skewed, which would make a normal threshold too tight for a correct engine.
        z = (mc.loss - exact.loss) / (exact.spread / np.sqrt(mc.chains))
        per_rule[f"{label} on the {curves.problem_label} (loss)"] = float(np.abs(z).max())
        z_all.append(z)
    import scipy.stats  # here: its import takes half a second, and bad input is refused first

    z = np.concatenate(z_all)
    threshold = float(scipy.stats.norm.isf(FAMILY_ALPHA / (2 * z.size)))
    max_z = float(np.abs(z).max())
    return Claim(
        key="monte-carlo-agrees",
        statement="Monte Carlo agrees with the exact moments within its confidence interval, "
        "transients included",
        holds=max_z < threshold,
        evidence=(
            f"{z.size} estimates (mean and variance of 8 rules at every step of 60, loss of "
            f"{len(curves.labels)} rules on the {curves.problem_label}): max |z| = {max_z:.2f} "
            f"{'<' if max_z < threshold else '>='} {threshold:.2f} (Bonferroni, family-wise "
            f"{FAMILY_ALPHA:g}); z mean {z.mean():+.3f}, sd {z.std():.3f}"
        ),
        details={
            "estimates": int(z.size),
            "max_abs_z": max_z,
            "threshold": threshold,
            "z_mean": float(z.mean()),
            "z_sd": float(z.std()),
            "max_abs_z_by_case": per_rule,
        },
    )


def claim_bounds_and_limits(settings: Settings) -> Claim:
    """Claim 4: the bounds and limits of R (``proofs/03-theorem.md``, ``proofs/04-lookahead.md``).

    Examples:
        >>> claim = claim_bounds_and_limits(Settings(quick=True))
        >>> claim.key, claim.holds, claim.evidence
        ('bounds-and-limits', True, '8/8 hold on 20000 random points')
    """
    dom = random_domain(np.random.default_rng([settings.seed, 3]), settings.random_points)
    beta, rho, k, alpha = dom["beta"], dom["rho"], dom["k"], dom["alpha"]
    r = closed_form.sma_ratio(beta, rho, k)
    iid = (1 - beta) / (1 + beta)
    tiny_cut = closed_form.sma_reduction(beta, 1e-12, k)
    checks = {
        # Strictness of the lower bound is proved in proofs/; in floats the gap can be below
        # rounding (beta ~ 1e-8, rho ~ 2), so it is checked to 4 ulps.
        "((1-beta)/(1+beta))^2 < R (to rounding)": bool((iid**2 <= r * (1 + 4 * EPS)).all()),
        "R = (1-beta)/(1+beta) at rho = 1": bool(
            np.allclose(closed_form.sma_ratio(beta, 1.0, k), iid, rtol=1e-13, atol=0)
        ),
        "R = 1 at beta = 0": bool((closed_form.sma_ratio(0.0, rho, k) == 1.0).all()),
        # 1 - R = 2 beta (1-u) / ((1+beta)(1-beta u)) <= 2 beta k rho / (1 - beta^2) for rho <= 1
        "R -> 1 as rho -> 0 (rho = 1e-12: 0 < 1 - R <= 2 beta k rho / (1 - beta^2))": bool(
            (tiny_cut > 0).all()
            and (tiny_cut <= 2 * beta * k * 1e-12 / (1 - beta**2) * (1 + 1e-12)).all()
        ),
        "R -> 0 as beta -> 1 (beta = 1 - 1e-9: R < 1e-6 where |u| < 0.99)": bool(
            (
                closed_form.sma_ratio(1 - 1e-9, rho, k)[
                    np.abs(closed_form.lag_correlation(rho, k)[0]) < 0.99
                ]
                < 1e-6
            ).all()
        ),
        # alpha >= 1e-6 so that rounding 1 - alpha costs at most eps/alpha relative
        "R_LA = R_SMA(beta = 1 - alpha) at rho = 1": bool(
            np.allclose(
                closed_form.lookahead_ratio(alpha[alpha >= 1e-6], 1.0, k[alpha >= 1e-6]),
                closed_form.sma_ratio(1 - alpha[alpha >= 1e-6], 1.0, k[alpha >= 1e-6]),
                rtol=1e-9,
                atol=0,
            )
        ),
        "R_LA = 1 at alpha = 1": bool((closed_form.lookahead_ratio(1.0, rho, k) == 1.0).all()),
        "R non-increasing in beta (to rounding)": bool(
            (
                closed_form.sma_ratio(np.minimum(beta * 1.01, 1 - 1e-9), rho, k)
                <= r * (1 + 4 * EPS)
            ).all()
        ),
    }
    failed = [name for name, ok in checks.items() if not ok]
    return Claim(
        key="bounds-and-limits",
        statement="Bounds and limits of R hold: ((1-beta)/(1+beta))^2 < R < 1, R = (1-beta)/(1+beta) "
        "at rho = 1, and the limits in beta and rho (proofs/03-theorem.md)",
        holds=not failed,
        evidence=f"{len(checks) - len(failed)}/{len(checks)} hold on {beta.size} random points"
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        details=checks,
    )


def claim_not_monotone_in_k(settings: Settings) -> Claim:
    """Claim 4: R is not monotone in k for rho > 1 (``proofs/06-counterexamples.md``, part A).

    Examples:
        >>> claim = claim_not_monotone_in_k(Settings(quick=True))
        >>> claim.key, claim.holds, claim.details["k"]
        ('not-monotone-in-k', True, [1, 2, 3, 5, 10])
        >>> [round(r, 5) for r in claim.details["R"]]  # rho = 1.9, beta = 0.5: it zig-zags
        [0.12644, 0.78711, 0.15525, 0.18137, 0.4741]
    """
    ks = np.array([1, 2, 3, 5, 10])
    r = closed_form.sma_ratio(0.5, 1.9, ks)
    # Where rho <= 1, u = (1-rho)^k >= 0 falls with k, and so does R: check k -> k+1 on a sample.
    dom = random_domain(np.random.default_rng([settings.seed, 4]), settings.random_points)
    flat = dom["rho"] <= 1
    rho, beta, k = dom["rho"][flat], dom["beta"][flat], dom["k"][flat]
    nonincreasing = bool(
        (closed_form.sma_ratio(beta, rho, k + 1) <= closed_form.sma_ratio(beta, rho, k)).all()
    )
    not_monotone = bool(np.any(np.diff(r) > 0) and np.any(np.diff(r) < 0))
    values = ", ".join(f"{v:.5f}" for v in r)
    return Claim(
        key="not-monotone-in-k",
        statement="R is non-increasing in k for rho <= 1 but not monotone in k for rho > 1",
        holds=not_monotone and nonincreasing,
        evidence=f"rho = 1.9, beta = 0.5, k = {ks.tolist()}: R = {values}; "
        f"R(k+1) <= R(k) at all {rho.size} sampled points with rho <= 1",
        details={"k": ks.tolist(), "R": r.tolist(), "nonincreasing_for_rho_le_1": nonincreasing},
    )


def claim_no_order(settings: Settings) -> Claim:
    """Claim 4: neither SMA nor Lookahead has the lower variance everywhere
    (``proofs/04-lookahead.md``).

    Examples:
        >>> claim = claim_no_order(Settings(quick=True))
        >>> claim.key, claim.holds
        ('no-order-sma-lookahead', True)
        >>> for point in claim.details["points"]:
        ...     print(point["rho"], round(point["R_sma"], 5), round(point["R_lookahead"], 5))
        0.1 0.61262 0.44297
        1.5 0.65839 0.65957
    """
    points = [(0.1, 5, 0.5), (1.5, 5, 0.8)]
    rows = [
        {
            "rho": rho,
            "k": k,
            "alpha": a,
            "R_sma": float(closed_form.sma_ratio(1 - a, rho, k)),
            "R_lookahead": float(closed_form.lookahead_ratio(a, rho, k)),
        }
        for rho, k, a in points
    ]
    dom = random_domain(np.random.default_rng([settings.seed, 5]), settings.random_points)
    la_lower = float(
        (
            closed_form.lookahead_ratio(dom["alpha"], dom["rho"], dom["k"])
            < closed_form.sma_ratio(1 - dom["alpha"], dom["rho"], dom["k"])
        ).mean()
    )
    first, second = rows
    return Claim(
        key="no-order-sma-lookahead",
        statement="Neither SMA nor Lookahead (alpha = 1 - beta) has the lower variance everywhere",
        holds=first["R_lookahead"] < first["R_sma"] and second["R_sma"] < second["R_lookahead"],
        evidence=(
            f"rho=0.1, k=5, alpha=0.5: R_LA {first['R_lookahead']:.5f} < R_SMA {first['R_sma']:.5f}; "
            f"rho=1.5, k=5, alpha=0.8: R_SMA {second['R_sma']:.5f} < R_LA "
            f"{second['R_lookahead']:.5f}; Lookahead lower at {100 * la_lower:.1f}% of random points"
        ),
        details={"points": rows, "fraction_lookahead_lower": la_lower},
    )


def claim_transient(settings: Settings) -> Claim:
    """The two cases of ``proofs/06-counterexamples.md`` (part B), by exact moments.

    Examples:
        >>> claim = claim_transient(Settings())
        >>> claim.key, claim.holds
        ('transient-worse', True)
        >>> round(claim.details["var_y_t5"], 5), round(claim.details["var_x_t5"], 5)
        (0.43636, 0.00431)
    """
    variance_case = Problem(h=1.0, c=0.01, mean0=0.0, var0=1.0)
    ema, sgd = EMA(SGD(0.5), 0.9), SGD(0.5)
    traj = list(moments.iterate(variance_case, ema, 20))
    var_y = float(traj[5].readout(ema)[1][0])
    var_x = float(traj[5].readout(sgd)[1][0])
    steady_y = float(closed_form.steady_variance(ema, 1.0, 0.01))
    steady_x = float(closed_form.steady_variance(sgd, 1.0, 0.01))

    loss_case = Problem(h=1.0, c=1.0, mean0=3.0, var0=0.0)
    sma, sgd2 = SMA(SGD(0.2), 5, 0.8), SGD(0.2)
    at = np.array([5, 50])
    loss_y = moments.loss_curve(loss_case, sma, 50, at).loss
    loss_x = moments.loss_curve(loss_case, sgd2, 50, at).loss
    steady_loss_y = closed_form.steady_loss(loss_case, sma)
    steady_loss_x = closed_form.steady_loss(loss_case, sgd2)
    holds = (
        var_y > var_x
        and steady_y < steady_x
        and bool((loss_y > loss_x).all())
        and steady_loss_y < steady_loss_x
    )
    return Claim(
        key="transient-worse",
        statement="Before steady state SMA's variance and loss can exceed SGD's (the claim is "
        "about steady state only)",
        holds=holds,
        evidence=(
            f"EMA (a=0.5, beta=0.9) at t=5: Var y {var_y:.5f} > Var x {var_x:.5f} (steady: "
            f"{steady_y:.3g} < {steady_x:.3g}); SMA (a=0.2, k=5, beta=0.8, x0=3) at t=5, 50: "
            f"E L(y) {loss_y[0]:.4f}, {loss_y[1]:.4f} > E L(x) {loss_x[0]:.4f}, {loss_x[1]:.4f} "
            f"(steady: {steady_loss_y:.4f} < {steady_loss_x:.4f})"
        ),
        details={
            "var_y_t5": var_y,
            "var_x_t5": var_x,
            "loss_y": loss_y.tolist(),
            "loss_x": loss_x.tolist(),
            "steady_loss_y": steady_loss_y,
            "steady_loss_x": steady_loss_x,
        },
    )


def claim_divergence_raises(settings: Settings) -> Claim:
    """Questions with no answer raise ValueError in both steady-state engines.

    Examples:
        >>> claim = claim_divergence_raises(Settings())
        >>> claim.key, claim.holds, claim.evidence
        ('divergence-raises', True, '14/14 invalid queries raise ValueError')
        >>> claim.details["beta = 1"]
        'ValueError: beta must be in [0, 1), got 1.0'
    """
    one = np.array([1.0])
    queries = {
        "SGD rho = 2": lambda: closed_form.steady_variance(SGD(2.0), one, one),
        "SGD rho = 2.5 (Lyapunov)": lambda: moments.stationary_variance(SGD(2.5), one, one),
        "SMA rho = 3 (closed form)": lambda: closed_form.steady_variance(
            SMA(SGD(3.0), 2, 0.5), one, one
        ),
        "SMA rho = 3 (Lyapunov)": lambda: moments.stationary_variance(
            SMA(SGD(3.0), 2, 0.5), one, one
        ),
        "momentum rho = 2(1+mu)": lambda: closed_form.steady_variance(Momentum(3.0, 0.5), one, one),
        "momentum rho > 2(1+mu) (Lyapunov)": lambda: moments.stationary_variance(
            Momentum(3.5, 0.5), one, one
        ),
        "beta = 1": lambda: SMA(SGD(0.5), 2, 1.0),
        "beta < 0": lambda: SMA(SGD(0.5), 2, -0.1),
        "k = 0": lambda: SMA(SGD(0.5), 0, 0.5),
        "alpha = 0": lambda: Lookahead(SGD(0.5), 2, 0.0),
        "Polyak steady state": lambda: closed_form.steady_variance(Polyak(SGD(0.5)), one, one),
        "h = NaN": lambda: closed_form.steady_variance(SGD(0.5), np.array([np.nan]), one),
        "h = 0": lambda: closed_form.steady_variance(SGD(0.5), np.array([0.0]), one),
        "negative noise": lambda: closed_form.steady_variance(SGD(0.5), one, -one),
    }
    outcome = {}
    for name, query in queries.items():
        try:
            result = query()
        except ValueError as err:
            outcome[name] = f"ValueError: {err}"
        else:
            outcome[name] = f"returned {result!r}"
    failed = [name for name, text in outcome.items() if not text.startswith("ValueError")]
    return Claim(
        key="divergence-raises",
        statement="A question with no answer (no steady state, invalid hyperparameter) raises; "
        "never a finite number",
        holds=not failed,
        evidence=f"{len(queries) - len(failed)}/{len(queries)} invalid queries raise ValueError"
        + (f"; returned a value: {', '.join(failed)}" if failed else ""),
        details=outcome,
    )


def claim_embedding(settings: Settings) -> Claim:
    """A tied coordinate in the three engines, and the sign of the loss change
    (``proofs/07-embedding.md``).

    Examples:
        >>> claim = claim_embedding(Settings(quick=True))
        >>> claim.key, claim.holds, round(claim.details["closed"], 6)
        ('embedding', True, 0.086245)
        >>> round(claim.details["change_a_0.5"], 6), round(claim.details["change_a_1.5"], 6)
        (-0.016975, 0.028292)
    """
    problem = Problem(h=[1.0, 1.0, 0.5, 5.0], c=[1.0, 1.0, 0.3, 1.0], mean0=1.0, var0=0.5)
    tie = Tie(member=[1, 2, 3], reference=[0, 0, 0], a=[0.5, -2.0, 0.3], b=[0.0, 0.1, 0.0])
    rule, steps = SMA(SGD(0.5), 3, 0.8), 600
    closed = closed_form.steady_loss(problem, rule, tie)
    *_, last = moments.iterate(problem, rule, steps, tie)
    exact = float(sum(problem.expected_loss(*last.readout(rule))))
    mc = montecarlo.simulate(
        problem,
        rule,
        steps,
        settings.small_chains,
        seed=settings.seed,
        record=[steps],
        per_coordinate=False,
        tie=tie,
    )
    z = float((mc.loss[-1] - closed) / mc.loss_se[-1])
    shared = Problem(h=[1.0, 1.0], c=1.0)
    lowers = closed_form.embedding_loss_change(shared, rule, Tie([1], [0], [0.5], [0.0]))[0]
    raises = closed_form.embedding_loss_change(shared, rule, Tie([1], [0], [1.5], [0.0]))[0]
    biased = closed_form.embedding_loss_change(shared, rule, Tie([1], [0], [0.5], [1.0]))[0]
    agree = abs(exact - closed) <= 1e-10 * closed and abs(z) < 4.5
    return Claim(
        key="embedding",
        statement="Embedding x_j = a x_r + b: the three engines agree; it lowers the steady-state "
        "loss iff b^2 + a^2 V_r < V_j",
        holds=bool(agree and lowers < 0 < raises and biased > 0),
        evidence=(
            f"steady loss closed form {closed:.6f}, exact moments {exact:.6f}, Monte Carlo "
            f"{mc.loss[-1]:.6f} (z = {z:+.2f}); shared dynamics: a = 0.5 changes it by "
            f"{lowers:+.4f}, a = 1.5 by {raises:+.4f}, a = 0.5 with bias b = 1 by {biased:+.4f}"
        ),
        details={
            "closed": closed,
            "exact": exact,
            "monte_carlo": float(mc.loss[-1]),
            "z": z,
            "change_a_0.5": lowers,
            "change_a_1.5": raises,
            "change_a_0.5_b_1": biased,
        },
    )


def run(settings: Settings) -> tuple[list[Claim], Curves]:
    """Every claim, in the order of the report, and the loss curves of the plot.

    Examples:
        >>> claims, curves = run(Settings(quick=True))  # doctest: +SKIP
        >>> all(claim.holds for claim in claims), len(claims), len(curves.labels)  # doctest: +SKIP
        (True, 10, 3)
    """
    curves = standard_curves(settings)
    claims = [
        claim_variance_reduction(settings),
        claim_standard_nqm(settings),
        claim_closed_form_equals_lyapunov(settings),
        claim_monte_carlo(settings, curves),
        claim_bounds_and_limits(settings),
        claim_not_monotone_in_k(settings),
        claim_no_order(settings),
        claim_transient(settings),
        claim_divergence_raises(settings),
        claim_embedding(settings),
    ]
    return claims, curves
