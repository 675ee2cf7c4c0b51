"""Steps to a target loss versus batch size: Zhang et al. (2019, arXiv 1907.04164) computed exactly
and extended to SMA, Lookahead and preconditioned averaging.

The expected loss of a rule's readout after t steps, ``E[L_t] = sum_i w_i E[s_i^2]`` with
``w_i = h_i / 2``, is summed over every coordinate (no binning unless asked for, no sampling), from the
same per-step maps as :mod:`nqm.moments`:

- :class:`Ladder` holds the maps of 1, 2, 4, ..., 2^J periods of a rule on the second moments
  ``S = E[s s^T]`` (``S <- M S M^T + sigma2 N``); :meth:`Ladder.crossing` finds the smallest t with
  ``E[L_t] <= C`` by binary lifting over them, O(d log t) for any batch size.
- :func:`tune` minimises the steps over the learning rate for each batch size (a log grid, then
  Brent's method on log lr to a relative tolerance of ``LR_TOLERANCE``) and over a grid of the
  rule's other hyperparameters, as Zhang et al.'s notebook does for momentum and the EMA decay;
  :func:`sweep` runs it for several rules on several processes.
- :func:`critical_batch` is the batch size at which the tuned steps are twice the fewest any batch
  size can reach (McCandlish et al. 2018, arXiv 1812.06162: there doubling the batch saves a quarter
  of the steps instead of half).
- :func:`binned` is the notebook's approximation: 100 geometric bins of curvatures.

A target is *reached* when the loss falls to C and its limit (the steady-state loss) is below C; a
rule whose steady-state loss is C or more, or which diverges, never reaches it, whatever a transient
does. Binary lifting finds a step t with ``E[L_t] <= C < E[L_{t-k}]`` (k the rule's period); it
is the smallest such t whenever ``E[L]`` does not dip below C and come back above it before, which
holds for a loss that decreases until it crosses (``tests/test_nqm/test_scaling.py`` checks it
against a step-by-step scan). Heavy-ball momentum at a large learning rate can oscillate around C;
then the step found may be a later crossing.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from lic_dynamics import validation
from nqm import closed_form, resources
from nqm.moments import transition
from nqm.problem import Problem, standard
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak, Rule, State
from nqm.verify import Claim

# A level's map is converged when every entry of M^(2^J) is below this: the initial condition then
# contributes at most 1e-18 of itself to the loss, and the noise sum has reached its limit.
CONVERGED = 1e-9
DIVERGED = 1e30  # an entry of M^(2^j) this large: |eigenvalue| >= 1 (squaring again would overflow)
MAX_LEVELS = 62  # 2^62 periods: beyond any count of steps worth reporting
# Learning rates of the coarse grid, as fractions of the base optimizer's stability limit.
COARSE = tuple(10.0 ** np.linspace(-8, -0.005, 17))  # two per decade
# Grid points refined by Brent's method at each batch size: the best three on the coarse grid.
REFINE = 3
# Relative tolerance of the tuned learning rate. At an interior optimum the steps are flat in lr, so
# an error of 1e-3 in lr costs about tau'' * 1e-6 / 2 steps, where tau'' = d^2 steps / d(log lr)^2
# is of the order of the steps themselves: under one step for any count up to about 10^6.
LR_TOLERANCE = 1e-3


# ---- per-coordinate small matrices: n x n nested lists of (d,) arrays ----------------------------
# One numpy operation per entry: for n <= 3 this is several times faster than a batched matmul over
# (d, n, n), whose per-matrix overhead dominates at these sizes. An entry that is zero at every
# coordinate is None and costs nothing (the period map of an average over SGD is triangular); a
# symmetric matrix stores each off-diagonal array once, under both of its positions.

Matrix = list[list[np.ndarray | None]]


def _dot(pairs: list[tuple[np.ndarray | None, np.ndarray | None]]) -> np.ndarray | None:
    """``sum a * b`` over the pairs with neither factor None; None if there are none."""
    acc = None
    for a, b in pairs:
        if a is None or b is None:
            continue
        if acc is None:
            acc = a * b
        else:
            acc += a * b
    return acc


def _mul(a: Matrix, b: Matrix) -> Matrix:
    """``a @ b`` per coordinate."""
    columns = range(len(b[0]))
    return [[_dot([(row[k], b[k][j]) for k in range(len(b))]) for j in columns] for row in a]


def _sandwich(m: Matrix, s: Matrix, plus: Matrix | None = None, scale=None) -> Matrix:
    """``m s m^T + scale * plus`` per coordinate (``scale`` None: 1), for symmetric s and plus:
    only the upper triangle is computed."""
    ms = _mul(m, s)
    n = len(m)
    out: Matrix = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            acc = _dot([(ms[i][k], m[j][k]) for k in range(n)])
            extra = None if plus is None else plus[i][j]
            if extra is not None:
                extra = extra if scale is None else scale * extra
                acc = extra if acc is None else acc + extra
            out[i][j] = out[j][i] = acc
    return out


def _probe(weight: np.ndarray, row: list[np.ndarray | None]) -> list[tuple[int, int, np.ndarray]]:
    """``sum_i w_i (row S row^T)_i = sum_(a<=b) c_ab . S_ab`` with ``c_ab = w row_a row_b``
    (doubled off the diagonal): the loss after a map, as a few dot products with S."""
    out = []
    for a in range(len(row)):
        for b in range(a, len(row)):
            if row[a] is not None and row[b] is not None:
                out.append((a, b, weight * row[a] * row[b] * (1.0 if a == b else 2.0)))
    return out


def _matrix(array: np.ndarray) -> Matrix:
    """Nested lists from an array (d, n, n), entries that are zero everywhere as None."""
    n = array.shape[1]
    return [[np.ascontiguousarray(array[:, i, j]) if array[:, i, j].any() else None
             for j in range(n)] for i in range(n)]  # fmt: skip


def _largest(m: Matrix) -> float:
    return max((float(np.abs(entry).max()) for row in m for entry in row if entry is not None),
               default=0.0)  # fmt: skip


def _period_maps(rule: Rule, h: np.ndarray) -> tuple[Matrix, Matrix]:
    """``(M, N)`` of one period on the second moments over ``rule.states``:
    ``S <- M S M^T + sigma2 N``. Built from :func:`nqm.moments.transition` (the rule's own step),
    the k - 1 plain steps by repeated squaring."""
    idx = [State._fields.index(s) for s in rule.states]

    def step(t: int) -> tuple[Matrix, Matrix]:
        a, b = transition(rule, t, h)
        b = b[:, idx]
        return _matrix(a[:, idx][:, :, idx]), _matrix(b[:, :, None] * b[:, None, :])

    plain = step(1)
    sample = step(rule.period) if rule.period > 1 else plain
    count = rule.period - 1
    power = None
    while count:
        if count & 1:
            power = plain if power is None else _then(power, plain)
        count >>= 1
        if count:
            plain = _then(plain, plain)
    return sample if power is None else _then(power, sample)


def _then(first: tuple[Matrix, Matrix], second: tuple[Matrix, Matrix]) -> tuple[Matrix, Matrix]:
    """The map ``first`` followed by ``second``: ``(M2 M1, M2 N1 M2^T + N2)``."""
    m1, n1 = first
    m2, n2 = second
    return _mul(m2, m1), _sandwich(m2, n1, plus=n2)


# ---- steps to target for fixed hyperparameters ----------------------------------------------------


@dataclass(frozen=True)
class Crossing:
    """When a rule's expected loss reaches a target C.

    ``steps``: the smallest t with ``E[L_t] <= C`` (a multiple of the rule's period: an average only
    moves on sampling steps), or None when C is never reached. ``fractional``: the crossing
    interpolated (in log L) between the last period above C and the first at or below it, in steps; it
    is continuous in the learning rate, which the tuner needs (inf when never reached).
    ``steady_loss``: the limit of ``E[L_t]`` (inf when the rule diverges). ``reason``: why C is never
    reached, else ''.

    Examples:
        >>> crossing = steps_to_target(standard(100, batch=16), EMA(SGD(0.5), 0.9), 0.1)
        >>> crossing.steps, round(crossing.fractional, 2), crossing.reason
        (131, 130.96, '')
    """

    steps: int | None
    fractional: float
    steady_loss: float
    reason: str = ""


class Ladder:
    """The expected loss of one rule on one problem at any step, through the maps of 2^j periods.

    ``weight`` (d,) multiplies each coordinate's ``E[s^2]`` in the loss: ``h / 2`` by default, times
    a bin's count for the binned approximation. The noise variance per step is given per call, so one
    ladder serves every batch size.

    Examples:
        >>> problem = standard(100, batch=8)
        >>> ladder = Ladder(SGD(0.5), problem)
        >>> crossing = ladder.crossing(problem.sigma2, target=0.1)
        >>> crossing.steps, round(crossing.steady_loss, 6)
        (258, 0.088961)
        >>> from nqm.moments import loss_curve  # the exact moments, step by step, agree
        >>> loss = loss_curve(problem, SGD(0.5), 258, record=[257, 258]).loss
        >>> bool(loss[0] > 0.1 >= loss[1])
        True
        >>> ladder.crossing(problem.sigma2, target=0.08).reason  # below the steady-state loss
        'the steady-state loss 0.089 is above the target 0.08'
        >>> ladder.crossing(problem.sigma2 / 2, target=0.08).steps  # B = 16, the same ladder
        173
    """

    def __init__(self, rule: Rule, problem: Problem, weight: np.ndarray | None = None) -> None:
        if isinstance(rule, Polyak):
            raise ValueError(
                "rule: Polyak averaging has no steps to target here: its weights change with every "
                "sample, so its steps have no fixed period map"
            )
        self.rule = rule
        self.weight = 0.5 * problem.h if weight is None else np.asarray(weight, dtype=np.float64)
        self.readout = rule.states.index(rule.readout)
        # E[s s^T] at t = 0 (nqm.moments.initial_moments): x_0 = y_0 ~ N(mean0, var0), v_0 = 0.
        position = problem.var0 + problem.mean0**2
        self.start = [[position if a != "v" and b != "v" else None for b in rule.states]
                      for a in rule.states]  # fmt: skip
        self.levels = [_period_maps(rule, problem.h)]
        self._probes: list = []  # per level, what _loss_after needs
        self.unit_variance = self._steady_variance(problem.h)

    def _steady_variance(self, h: np.ndarray) -> np.ndarray | None:
        """The readout's stationary variance at unit noise, per coordinate (the variance is
        proportional to sigma2), or None when the rule has no steady state. The closed forms where
        they exist; otherwise the noise sum of the converged ladder (a doubling solution of the
        Lyapunov equation)."""
        try:
            return closed_form.steady_variance(self.rule, h, np.ones_like(h))
        except ValueError:
            return None
        except NotImplementedError:
            pass
        with np.errstate(over="ignore", invalid="ignore"):  # a divergent map is caught below
            while (biggest := _largest(self.levels[-1][0])) >= CONVERGED:
                if not biggest < DIVERGED or len(self.levels) > MAX_LEVELS:
                    return None
                self._double()
        i = self.readout
        noise = self.levels[-1][1][i][i]
        return np.zeros_like(h) if noise is None else noise

    def _double(self) -> None:
        self.levels.append(_then(self.levels[-1], self.levels[-1]))

    def loss(self, second: Matrix) -> float:
        """``sum_i w_i E[readout_i^2]`` of second moments."""
        i = self.readout
        return 0.0 if second[i][i] is None else float(self.weight @ second[i][i])

    def steady_loss(self, sigma2: np.ndarray) -> float:
        """The limit of ``E[L_t]`` for noise variance ``sigma2`` (d,) per step; inf when the rule has
        no steady state."""
        if self.unit_variance is None:
            return math.inf
        return float(self.weight @ (sigma2 * self.unit_variance))

    def crossing(self, sigma2: np.ndarray, target: float) -> Crossing:
        """The first step at which ``E[L_t] <= target`` for noise variance ``sigma2`` (d,) per step."""
        steady = self.steady_loss(sigma2)
        if not math.isfinite(steady):
            return Crossing(None, math.inf, steady, f"{self.rule.label()} has no steady state")
        if not steady < target:
            return Crossing(
                None,
                math.inf,
                steady,
                f"the steady-state loss {steady:.3g} is above the target {target:.3g}",
            )
        second = self.start
        if self.loss(second) <= target:
            return Crossing(0, 0.0, steady)
        # The loss tends to steady < target, so some 2^top periods reach the target.
        top = 0
        while self._loss_after(top, second, sigma2) > target:
            top += 1
            if top > MAX_LEVELS:
                return Crossing(
                    None, math.inf, steady, f"not reached within 2^{MAX_LEVELS} periods"
                )
            if top == len(self.levels):
                self._double()
        # Binary lifting. Invariant: E[L] > target after `periods`, <= after periods + 2^(j+1).
        periods = 0
        for j in range(top - 1, -1, -1):
            if self._loss_after(j, second, sigma2) > target:
                m, n = self.levels[j]
                second = _sandwich(m, second, plus=n, scale=sigma2)
                periods += 1 << j
        above = self.loss(second)
        below = self._loss_after(0, second, sigma2)
        # Between two periods the loss falls about geometrically: interpolating log L makes the
        # fractional crossing smooth in lr, which the tuner's Brent steps rely on.
        fraction = math.log(above / target) / math.log(above / below) if below > 0 else 1.0
        k = self.rule.period
        return Crossing((periods + 1) * k, (periods + fraction) * k, steady)

    def losses(self, sigma2: np.ndarray, periods: int) -> np.ndarray:
        """``E[L]`` after 0, 1, ..., ``periods`` periods, one period at a time: O(d periods), the
        step-by-step reference that :meth:`crossing` avoids (the benchmark checks crossings with it).

        Examples:
            >>> problem = standard(100, batch=8)
            >>> ladder = Ladder(SGD(0.5), problem)
            >>> loss = ladder.losses(problem.sigma2, 258)
            >>> int(np.argmax(loss <= 0.1)), ladder.crossing(problem.sigma2, 0.1).steps
            (258, 258)
        """
        periods = validation.integer("periods", periods, minimum=0)
        m, n = self.levels[0]
        second = self.start
        out = np.empty(periods + 1)
        out[0] = self.loss(second)
        for t in range(1, periods + 1):
            second = _sandwich(m, second, plus=n, scale=sigma2)
            out[t] = self.loss(second)
        return out

    def _loss_after(self, level: int, second: Matrix, sigma2: np.ndarray) -> float:
        """The loss 2^level periods after second moments ``second``: a few dot products with the
        level's probes (``_probe``), nothing of size d allocated."""
        while len(self._probes) <= level:
            m, n = self.levels[len(self._probes)]
            i = self.readout
            noise = None if n[i][i] is None else self.weight * n[i][i]
            self._probes.append((_probe(self.weight, m[i]), noise))
        probes, noise = self._probes[level]
        total = 0.0 if noise is None else float(noise @ sigma2)
        for a, b, c in probes:
            if second[a][b] is not None:
                total += float(c @ second[a][b])
        return total


def steps_to_target(
    problem: Problem, rule: Rule, target: float, weight: np.ndarray | None = None
) -> Crossing:
    """The smallest t with ``E[L_t] <= target`` for the rule as given (see :class:`Ladder`).

    Examples:
        >>> problem = standard(1000, batch=64)
        >>> steps_to_target(problem, SGD(0.5), 0.05).steps
        1755
        >>> steps_to_target(problem, SMA(SGD(0.5), k=5, beta=0.9), 0.05).steps  # a multiple of k
        1655
        >>> steps_to_target(problem, SGD(2.5), 0.05).reason  # rho = 2.5 > 2 at h = 1
        'SGD(lr=2.5) has no steady state'
    """
    target = validation.real("target", target, "(0, inf)", low=0, high=math.inf)
    return Ladder(rule, problem, weight).crossing(problem.sigma2, target)


# ---- the rule families of the sweep ---------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A rule with its learning rate tuned and its other hyperparameters taken from ``grid``.

    ``build(lr, precondition, **point)`` makes the rule; ``grid`` lists the points (dicts of
    hyperparameters); ``preconditioned`` says whether the family's base uses ``P = h^-precondition``.

    Examples:
        >>> family = FAMILIES["precond-sma"]
        >>> family.rule(0.1, 0.5, family.grid[0]).label()
        'SMA(k=4, beta=0.5) over SGD(lr=0.1, P=h^-0.5)'
        >>> round(family.lr_limit(np.array([1.0, 0.01]), 0.5, family.grid[0]), 6)  # 2 / max h^0.5
        2.0
    """

    name: str
    description: str
    build: Callable[..., Rule]
    grid: tuple[dict[str, float], ...] = ({},)
    preconditioned: bool = False

    def rule(self, lr: float, precondition: float, point: dict[str, float]) -> Rule:
        return self.build(lr, precondition if self.preconditioned else 0.0, **point)

    def lr_limit(self, h: np.ndarray, precondition: float, point: dict[str, float]) -> float:
        """The base optimizer's stability limit: ``lr * P_i h_i < 2 (1 + mu)`` at every i."""
        p = precondition if self.preconditioned else 0.0
        return 2.0 * (1.0 + point.get("mu", 0.0)) / float(np.max(h ** (1.0 - p)))


# The grids cover the notebook's range (it used 1 - logspace(-5, 0, 20) for momentum and the EMA
# decay) with fewer values, so that the default sweep stays under a minute on 2 cores; docs/scaling.md
# shows what the notebook's finer grid buys (benchmarks/nqm_scaling.py, "grid check"). SMA and
# Lookahead reach averaging horizons (k / (1 - beta), k / alpha) like the EMA's, and each grid has a
# weak average (beta = 0.5, alpha = 0.8) for where averaging does not pay.
DECAYS = tuple(float(1 - 10 ** (-j / 2)) for j in range(1, 11))  # 0.684, 0.9, ..., 0.99999
SMA_GRID = tuple({"k": k, "beta": b} for k in (4, 16) for b in (0.5, 0.9, 0.99, 0.999, 0.9999))
LOOKAHEAD_GRID = tuple({"k": k, "alpha": a} for k in (4, 16) for a in (0.01, 0.05, 0.25, 0.8))


# Module-level builders (not lambdas), so that a family can be sent to a worker process.
def _sgd(lr: float, p: float) -> Rule:
    return SGD(lr, precondition=p)


def _momentum(lr: float, p: float, mu: float) -> Rule:
    return Momentum(lr, mu, precondition=p)


def _ema(lr: float, p: float, beta: float) -> Rule:
    return EMA(SGD(lr, precondition=p), beta)


def _sma(lr: float, p: float, k: float, beta: float) -> Rule:
    return SMA(SGD(lr, precondition=p), int(k), beta)


def _lookahead(lr: float, p: float, k: float, alpha: float) -> Rule:
    return Lookahead(SGD(lr, precondition=p), int(k), alpha)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sgd", "SGD", _sgd),
        Family("momentum", "heavy-ball momentum, mu tuned", _momentum,
               tuple({"mu": mu} for mu in DECAYS)),
        Family("precond-sgd", "SGD with P = h^-p", _sgd, preconditioned=True),
        Family("ema", "per-step EMA of SGD, decay tuned", _ema,
               tuple({"beta": b} for b in DECAYS)),
        Family("sma", "SMA of SGD, k and beta tuned", _sma, SMA_GRID),
        Family("lookahead", "Lookahead over SGD, k and alpha tuned", _lookahead, LOOKAHEAD_GRID),
        Family("precond-sma", "SMA of SGD with P = h^-p, k and beta tuned", _sma, SMA_GRID,
               preconditioned=True),
    )
}  # fmt: skip


# ---- tuning -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tuned:
    """The best of a family at one batch size (``batch`` None: infinite, no gradient noise).

    ``steps`` is None when no learning rate reaches the target (``lr`` is then None).

    Examples:
        >>> Tuned("ema", 64, 510, 1.989, {"beta": 0.97}, "EMA(...)").record()
        {'rule': 'ema', 'batch': 64, 'steps': 510, 'lr': 1.989, 'beta': 0.97, 'label': 'EMA(...)'}
    """

    family: str
    batch: int | None
    steps: int | None
    lr: float | None
    point: dict[str, float] = field(default_factory=dict)
    label: str = ""
    evaluations: int = 0

    def record(self) -> dict:
        """A JSON-ready dict: ``rule``, ``batch``, ``steps``, ``lr`` and the tuned hyperparameters."""
        return {
            "rule": self.family,
            "batch": self.batch,
            "steps": self.steps,
            "lr": self.lr,
            **self.point,
            "label": self.label,
        }


@dataclass(frozen=True)
class Instance:
    """The problem a sweep runs on: curvatures ``h`` with per-example noise ``c``, x_0 ~ N(0, var0)
    (as :func:`nqm.problem.standard`), and the loss weight of each coordinate (a bin's count).

    Examples:
        >>> h = np.array([1.0, 0.5])
        >>> instance = Instance(h=h, c=h, counts=np.array([1.0, 3.0]))
        >>> instance.weight.tolist(), instance.problem(4).sigma2.tolist()
        ([0.5, 0.75], [0.25, 0.125])
        >>> instance.problem(None).sigma2.tolist()  # no batch: no noise
        [0.0, 0.0]
    """

    h: np.ndarray
    c: np.ndarray
    counts: np.ndarray
    var0: float = 1.0

    def problem(self, batch: int | None) -> Problem:
        c = self.c if batch is not None else 0.0
        return Problem(h=self.h, c=c, batch=batch or 1, var0=self.var0)

    @property
    def weight(self) -> np.ndarray:
        return 0.5 * self.h * self.counts


def exact(dim: int = 10_000) -> Instance:
    """Zhang et al.'s instance, every coordinate: ``h_i = c_i = 1/i``, i = 1..dim.

    Examples:
        >>> exact(4).h.round(3).tolist(), exact(4).counts.tolist()
        ([1.0, 0.5, 0.333, 0.25], [1.0, 1.0, 1.0, 1.0])
    """
    problem = standard(dim)
    return Instance(problem.h, problem.c, np.ones(problem.dim))


def binned(dim: int = 10_000, bins: int = 100) -> Instance:
    """The notebook's approximation of :func:`exact`: ``bins`` geometric values from h_1 = 1 to
    h_d = 1/d; each ``h_i`` is replaced by the largest bin value not above it and counted there
    (``toy_problem`` in Zhang et al.'s ``nqm.ipynb``); empty bins are dropped.

    Examples:
        >>> instance = binned(10_000, 100)
        >>> int(instance.counts.sum()), instance.h.size, round(float(instance.h[1]), 6)
        (10000, 84, 0.475081)
    """
    dim = validation.integer("dim", dim, minimum=1)
    bins = validation.integer("bins", bins, minimum=2)
    h = 1.0 / np.arange(1, dim + 1, dtype=np.float64)
    values = np.geomspace(h[0], h[-1], bins)
    # h_i goes to the first bin (in decreasing order) whose value it reaches.
    which = np.searchsorted(-values, -h, side="left")
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    keep = counts > 0
    return Instance(values[keep], values[keep], counts[keep])


def tune(
    instance: Instance,
    family: Family,
    batches: Iterable[int | None],
    target: float,
    precondition: float = 0.5,
    tolerance: float = LR_TOLERANCE,
    refine: int | None = REFINE,
) -> list[Tuned]:
    """For each batch size (results in the order of ``batches``), the fewest steps to ``target``
    over the learning rate and the family's grid.

    1. Every grid point's learning rate runs over a log grid, ``COARSE`` fractions of its
       stability limit; one ladder per value serves every batch size.
    2. The ``refine`` points with the fewest steps on that grid (all with ``refine=None``) are
       refined by Brent's method on log lr between the neighbours of their best grid value, to a
       relative ``tolerance``, minimising the interpolated crossing (:class:`Crossing`, continuous
       in lr). The steps reported are the exact integer count at the tuned lr.
    3. Noise only adds to the loss, so at any lr a larger batch needs at most the steps of a smaller
       one: the choice tuned at the next smaller batch is tried too, which keeps the tuned steps
       non-increasing in the batch size even where the steps are not unimodal in lr.

    Examples:
        >>> [t.steps for t in tune(exact(100), FAMILIES["sgd"], [1, 64, None], target=0.1)]
        [1719, 51, 28]
        >>> [round(t.point["beta"], 4) for t in tune(exact(100), FAMILIES["ema"], [1, 64], target=0.1)]
        [0.9968, 0.6838]
    """
    target = validation.real("target", target, "(0, inf)", low=0, high=math.inf)
    tolerance = validation.real("tolerance", tolerance, "(0, 1)", low=0, high=1)
    if refine is not None:
        refine = validation.integer("refine", refine, minimum=1)
    batches = list(batches)
    tuner = _Tuner(instance, family, target, precondition, tolerance)
    found: dict[int | None, Tuned] = {}
    previous: Tuned | None = None  # the choice at the next smaller batch
    for batch in sorted(set(batches), key=_batch_key):
        sigma2 = instance.c / batch if batch is not None else np.zeros_like(instance.h)
        ranked, evaluations = tuner.scan(sigma2)
        refined = []
        for score, j, i in ranked[:refine]:
            lr, spent = tuner.refine(j, i, score, sigma2)
            refined.append((lr, tuner.grids[j].point))
            evaluations += spent
        best, spent = tuner.monotone(batch, sigma2, refined, previous)
        found[batch] = replace(best, evaluations=evaluations + spent)
        previous = best if best.lr is not None else previous
    return [found[b] for b in batches]


@dataclass(frozen=True)
class _Coarse:
    """One grid point's coarse learning rates (``COARSE`` fractions of its stability ``limit``) and
    their ladders, built once for every batch size."""

    point: dict[str, float]
    lrs: list[float]
    ladders: list[Ladder]
    limit: float


class _Tuner:
    """The three steps of :func:`tune` for one family on one instance, at one noise level each."""

    def __init__(
        self,
        instance: Instance,
        family: Family,
        target: float,
        precondition: float,
        tolerance: float,
    ) -> None:
        self.instance, self.family, self.target = instance, family, target
        self.precondition, self.tolerance = precondition, tolerance
        self.problem = instance.problem(1)
        self.grids = [self._coarse(point) for point in family.grid]

    def _coarse(self, point: dict[str, float]) -> _Coarse:
        limit = self.family.lr_limit(self.instance.h, self.precondition, point)
        lrs = [limit * f for f in COARSE]
        ladders = [Ladder(self.family.rule(lr, self.precondition, point), self.problem,
                          self.instance.weight) for lr in lrs]  # fmt: skip
        return _Coarse(point, lrs, ladders, limit)

    def crossing(
        self, lr: float, point: dict[str, float], sigma2: np.ndarray
    ) -> tuple[Crossing, Rule]:
        """Where the rule at ``lr`` and ``point`` crosses the target under noise ``sigma2``."""
        rule = self.family.rule(lr, self.precondition, point)
        return Ladder(rule, self.problem, self.instance.weight).crossing(sigma2, self.target), rule

    def scan(self, sigma2: np.ndarray) -> tuple[list[tuple[float, int, int]], int]:
        """Step 1, the grid scan: for each grid point that reaches the target on its coarse grid,
        ``(interpolated crossing at its best coarse lr, index of the point, index of that lr)``,
        fewest steps first; and the number of crossings evaluated."""
        ranked = []
        evaluations = 0
        for j, grid in enumerate(self.grids):
            scores = [ladder.crossing(sigma2, self.target).fractional for ladder in grid.ladders]
            evaluations += len(grid.lrs)
            i = int(np.argmin(scores))
            if math.isfinite(scores[i]):
                ranked.append((scores[i], j, i))
        ranked.sort()
        return ranked, evaluations

    def refine(self, j: int, i: int, score: float, sigma2: np.ndarray) -> tuple[float, int]:
        """Step 2, the refinement of grid point ``j`` around its best coarse lr ``i`` (whose
        interpolated crossing is ``score``): Brent's method on log lr between the neighbours of
        that lr (the stability limit above the last), to the relative tolerance. Returns the lr
        found, or the coarse one if the search did no better, and the crossings evaluated."""
        grid = self.grids[j]
        evaluations = 0

        def objective(log_lr: float) -> float:
            nonlocal evaluations
            evaluations += 1
            crossed, _ = self.crossing(math.exp(log_lr), grid.point, sigma2)
            return crossed.fractional if crossed.steps is not None else 1e300

        import scipy.optimize  # here: its import is slow, and bad input is refused first

        low = math.log(grid.lrs[max(i - 1, 0)])
        high = math.log(grid.lrs[i + 1] if i + 1 < len(grid.lrs) else grid.limit)
        search = scipy.optimize.minimize_scalar(
            objective, bounds=(low, high), method="bounded", options={"xatol": self.tolerance}
        )
        return (math.exp(search.x) if search.fun <= score else grid.lrs[i]), evaluations

    def monotone(
        self,
        batch: int | None,
        sigma2: np.ndarray,
        refined: list[tuple[float, dict[str, float]]],
        previous: Tuned | None,
    ) -> tuple[Tuned, int]:
        """Step 3, the monotone-in-B pass: the fewest exact steps at ``batch`` over the choice
        tuned at the next smaller batch (``previous``, tried first, so it wins a tie) and the
        ``refined`` (lr, point)s; steps None if none reaches the target. And the crossings
        evaluated."""
        candidates = [] if previous is None or previous.lr is None else [
            (previous.lr, previous.point)
        ]  # fmt: skip
        candidates += refined
        best = Tuned(self.family.name, batch, None, None)
        for lr, point in candidates:
            crossed, rule = self.crossing(lr, point, sigma2)
            if crossed.steps is not None and (best.steps is None or crossed.steps < best.steps):
                best = Tuned(self.family.name, batch, crossed.steps, lr, dict(point), rule.label())
        return best, len(candidates)


def sweep(
    instance: Instance,
    families: Iterable[Family],
    batches: Iterable[int | None],
    target: float,
    precondition: float = 0.5,
    workers: int = 1,
    refine: int | None = REFINE,
) -> dict[str, list[Tuned]]:
    """:func:`tune` for several families on ``workers`` processes. Each family's batch sizes are
    tuned in ``PARTS`` contiguous parts, the parts spread over the workers with the longest first;
    then, as :func:`tune` does within a part, each batch size tries the choice of the next smaller
    one. The parts do not depend on ``workers``, so neither do the results.

    Examples:
        >>> result = sweep(exact(100), [FAMILIES["sgd"], FAMILIES["momentum"]], [1, 64], 0.1)
        >>> {name: [t.steps for t in tuned] for name, tuned in result.items()}
        {'sgd': [1719, 51], 'momentum': [1658, 29]}
    """
    families = list(families)
    batches = list(batches)
    workers = validation.integer("workers", workers, minimum=1)
    ordered = sorted(set(batches), key=_batch_key)
    size = math.ceil(len(ordered) / PARTS)
    parts = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    # Longest first: large grids, then small batch sizes (long searches).
    tasks = sorted(((f, part) for f in families for part in parts),
                   key=lambda task: (-len(task[0].grid), _batch_key(task[1][0])))  # fmt: skip
    arguments = [
        (instance, f, part, target, precondition, LR_TOLERANCE, refine) for f, part in tasks
    ]
    if workers == 1:
        results = [tune(*args) for args in arguments]
    else:
        results = _run_parallel(arguments, workers)
    found: dict[str, dict[int | None, Tuned]] = {f.name: {} for f in families}
    for (family, _), tuned in zip(tasks, results, strict=True):
        found[family.name].update((t.batch, t) for t in tuned)
    problem = instance.problem(1)
    for family in families:
        column = found[family.name]
        for smaller, batch in itertools.pairwise(ordered):
            previous, current = column[smaller], column[batch]
            if previous.lr is None or (
                current.steps is not None and current.steps <= previous.steps
            ):
                continue
            sigma2 = instance.c / batch if batch is not None else np.zeros_like(instance.h)
            rule = family.rule(previous.lr, precondition, previous.point)
            crossed = Ladder(rule, problem, instance.weight).crossing(sigma2, target)
            better = crossed.steps is not None and (
                current.steps is None or crossed.steps < current.steps
            )
            column[batch] = (
                Tuned(family.name, batch, crossed.steps, previous.lr, dict(previous.point),
                      rule.label(), current.evaluations + 1)
                if better else replace(current, evaluations=current.evaluations + 1)
            )  # fmt: skip
    return {f.name: [found[f.name][b] for b in batches] for f in families}


PARTS = 2  # each family's batch sizes are tuned in this many parts (the unit of parallel work)


def _batch_key(batch: int | None) -> float:
    return math.inf if batch is None else batch


def _run_parallel(arguments: list[tuple], workers: int) -> list[list[Tuned]]:
    """:func:`tune` on each argument tuple, on ``workers`` processes, results in order."""
    pool = concurrent.futures.ProcessPoolExecutor(
        min(workers, len(arguments)), initializer=_quiet_worker
    )
    try:
        futures = [pool.submit(tune, *args) for args in arguments]
        return [future.result() for future in futures]
    except BaseException:  # Ctrl-C, SIGTERM or an error: the workers' work is lost anyway
        for process in list(getattr(pool, "_processes", {}).values()):  # no public way
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _quiet_worker() -> None:
    """A worker leaves Ctrl-C to its parent, which ends it, and dies silently on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ---- the critical batch size ----------------------------------------------------------------------


@dataclass(frozen=True)
class CriticalBatch:
    """Where a family stops scaling: ``min_steps`` is S_min, the tuned steps with no gradient noise
    (B -> infinity), and ``batch`` the batch size at which the tuned steps S(B) fall to 2 S_min,
    interpolated log-log between the two swept batch sizes around it. ``where`` is 'inside' the
    sweep, or 'below' / 'above' it (then ``batch`` is the sweep's end, a bound).

    Under the model ``S(B) = S_min (1 + B_noise / B)`` of McCandlish et al. (2018), which the NQM
    follows closely, this is B_noise: below it doubling B nearly halves the steps, at it doubling
    saves a quarter of them, and beyond it little.

    Examples:
        >>> CriticalBatch(1024.0, 190, "inside").where
        'inside'
    """

    batch: float | None
    min_steps: int | None
    where: str

    @staticmethod
    def of(record: dict) -> CriticalBatch:
        """The critical batch size a record of :meth:`Study.records` (or its JSON) carries."""
        return CriticalBatch(
            record["critical_batch"], record["min_steps"], record["critical_where"]
        )

    def short(self) -> str:
        """``1.23e+03`` inside the sweep, ``> 4`` or ``<= 4`` as a bound at its end, or why it is
        unknown.

        Examples:
            >>> CriticalBatch(1234.5, 190, "inside").short(), CriticalBatch(4, 28, "above").short()
            ('1.23e+03', '> 4')
        """
        if self.batch is None:
            return self.where
        if self.where == "inside":
            return f"{self.batch:.3g}"
        return f"{'<=' if self.where == 'below' else '>'} {self.batch:g}"


def critical_batch(tuned: list[Tuned]) -> CriticalBatch:
    """The critical batch size of one family's sweep, which must include ``batch=None``.

    Examples:
        >>> sweep = [Tuned("sgd", b, s, 0.1) for b, s in [(1, 800), (2, 400), (4, 220), (None, 100)]]
        >>> critical_batch(sweep)  # S(4) = 220 > 200 = 2 S_min: above the sweep
        CriticalBatch(batch=4, min_steps=100, where='above')
        >>> sweep[2] = Tuned("sgd", 4, 150, 0.1)  # S crosses 200 between B = 2 and 4
        >>> round(critical_batch(sweep).batch, 3)
        3.264
    """
    infinite = [t for t in tuned if t.batch is None]
    if not infinite or infinite[0].steps is None:
        return CriticalBatch(None, None, "unknown: no steps without noise")
    floor = 2 * infinite[0].steps
    finite = sorted((t for t in tuned if t.batch is not None), key=lambda t: t.batch)
    if not finite:
        return CriticalBatch(None, infinite[0].steps, "unknown: no finite batch size")
    previous = None
    for t in finite:
        if t.steps is not None and t.steps <= floor:
            if previous is None:
                return CriticalBatch(t.batch, infinite[0].steps, "below")
            if previous.steps is None:  # unreachable just before: the crossing is in (prev, t]
                return CriticalBatch(t.batch, infinite[0].steps, "inside")
            x0, x1 = math.log(previous.batch), math.log(t.batch)
            y0, y1 = math.log(previous.steps), math.log(t.steps)
            at = x0 + (math.log(floor) - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x1
            return CriticalBatch(math.exp(at), infinite[0].steps, "inside")
        previous = t
    return CriticalBatch(finite[-1].batch, infinite[0].steps, "above")


# ---- a whole study, as the command line runs it ---------------------------------------------------

DEFAULT_BATCHES = tuple(2**j for j in range(2, 22))  # the notebook's 2^2 ... 2^21


@dataclass(frozen=True)
class Study:
    """Tuned steps to ``target`` for several families over batch sizes, on the standard NQM of
    dimension ``dim`` (every coordinate, or the notebook's ``bins``). ``tuned[name]`` lists one
    :class:`Tuned` per batch size of ``batches``, then the noiseless limit (``batch`` None).

    Examples:
        >>> result = study(["sgd"], batches=[4, 64], dim=100, target=0.1)
        >>> result.settings()["batches"], [t.steps for t in result.tuned["sgd"]]
        ([4, 64], [442, 51, 28])
    """

    dim: int
    bins: int | None
    target: float
    precondition: float
    batches: tuple[int, ...]
    tuned: dict[str, list[Tuned]]
    seconds: float
    workers: int

    @property
    def evaluations(self) -> int:
        """Steps-to-target searches run (each builds one ladder or reuses one)."""
        return sum(t.evaluations for column in self.tuned.values() for t in column)

    def critical(self) -> dict[str, CriticalBatch]:
        return {name: critical_batch(column) for name, column in self.tuned.items()}

    def records(self) -> list[dict]:
        """One dict per family and batch size (``batch`` None: no noise), with the family's
        critical batch size."""
        out = []
        for column in self.tuned.values():
            crit = critical_batch(column)
            extra = {"critical_batch": crit.batch, "critical_where": crit.where,
                     "min_steps": crit.min_steps}  # fmt: skip
            out.extend({**t.record(), **extra} for t in column)
        return out

    def settings(self) -> dict:
        return {"dim": self.dim, "bins": self.bins, "target": self.target,
                "precondition": self.precondition, "batches": list(self.batches),
                "seconds": self.seconds, "workers": self.workers,
                "evaluations": self.evaluations}  # fmt: skip


def check_study(
    rules: Iterable[str], batches: Iterable[int], target: float, precondition: float,
    dim: int, bins: int | None, workers: int,
) -> tuple[list[str], tuple[int, ...], float, float, int, int | None, int]:  # fmt: skip
    """Every argument of :func:`study` checked (cheap, before any work); raises InvalidValue.

    Examples:
        >>> check_study(["sgd"], [64, 4], 0.01, 0.5, 1000, None, 2)[1]  # batches come back sorted
        (4, 64)
        >>> check_study(["adam"], [4], 0.01, 0.5, 1000, None, 2)
        Traceback (most recent call last):
        ...
        lic_dynamics.validation.InvalidValue: rules[0] must be among sgd, momentum, ..., got 'adam'
    """
    rules = list(rules)
    for i, name in enumerate(rules):
        if name not in FAMILIES:
            raise validation.InvalidValue(
                "rules", f"must be among {', '.join(FAMILIES)}, got {name!r}", index=i
            )
    if not rules or len(set(rules)) != len(rules):
        raise validation.InvalidValue("rules", f"must be distinct and at least one, got {rules}")
    batches = tuple(validation.integer_array("batch", list(batches), minimum=1).tolist())
    if not batches or len(set(batches)) != len(batches):
        raise validation.InvalidValue(
            "batch", f"must be distinct and at least one, got {list(batches)}"
        )
    target = validation.real("target", target, "(0, inf)", low=0, high=math.inf)
    precondition = validation.real(
        "precondition", precondition, "[0, 1]", low=0, high=1, low_open=False, high_open=False
    )
    dim = validation.integer("dim", dim, minimum=1, maximum=MAX_DIM)
    if bins is not None:
        bins = validation.integer("bins", bins, minimum=2, maximum=dim)
    workers = validation.integer("workers", workers, minimum=1, maximum=256)
    return rules, tuple(sorted(batches)), target, precondition, dim, bins, workers


MAX_DIM = 10**6  # memory: a ladder holds about 40 levels of a few (d,) arrays
# The cost model of :func:`cost`, measured on a 2-core machine: a ladder holds up to about 40 levels
# of a few (d,) arrays, 1.9 to 2.4 kB per coordinate (2.5 kB taken); a steps-to-target search
# (a ladder built, or one crossed) takes about 0.4 us per coordinate (the default sweep: 106 CPU-s
# over about 26000 searches at d = 10^4; 0.5 us taken); besides the grid scan, each batch size
# costs about 45 searches (Brent's steps at the REFINE best grid points, and the monotone pass).
LADDER_BYTES = 2500
SEARCH_SECONDS = 0.5e-6
SEARCHES_PER_BATCH = 45
WORKER_BYTES = 150 * 2**20  # a worker process: Python, numpy and scipy


def cost(
    rules: Iterable[str], batches: int, dim: int, bins: int | None, workers: int
) -> resources.Cost:
    """The estimated cost of :func:`study` from its sizes alone, before anything is built.

    Each family runs in ``PARTS`` parts of ``n`` of the ``batches + 1`` batch sizes; a part builds
    ``17 G`` ladders (G points on the family's grid, 17 coarse learning rates) and runs
    ``17 G + n (17 G + 45)`` searches of ``d`` coordinates each (``bins`` where binned), 0.5 us per
    search and coordinate. The parts run on ``w = min(workers, parts, cores)`` processes, longest
    first: about ``max(all searches / w, longest part)``. Memory: the ``min(workers, parts)``
    largest parts at once, each ``17 G`` ladders of 2500 bytes per coordinate, and 150 MiB per
    worker.

    Examples:
        >>> estimate = cost(["momentum"], len(DEFAULT_BATCHES), 10_000, None, workers=1)
        >>> resources.gib(estimate.bytes), resources.duration(estimate.seconds)
        ('4.1 GiB', '24 s')
    """
    coords = dim if bins is None else min(bins, dim)
    sizes = batches + 1  # and the noiseless limit
    per_part = math.ceil(sizes / PARTS)
    counts = [per_part] * (sizes // per_part) + ([sizes % per_part] if sizes % per_part else [])
    searches, held = [], []
    for name in rules:
        ladders = len(COARSE) * len(FAMILIES[name].grid)
        for n in counts:
            searches.append(ladders + n * (ladders + SEARCHES_PER_BATCH))
            held.append(ladders * LADDER_BYTES * coords)
    running = max(1, min(workers, len(held)))
    parallel = max(1, min(running, os.cpu_count() or 1))
    seconds = SEARCH_SECONDS * coords * max(sum(searches) / parallel, max(searches, default=0))
    nbytes = sum(sorted(held, reverse=True)[:running]) + WORKER_BYTES * running
    return resources.Cost(float(nbytes), seconds)


def study(
    rules: Iterable[str] = tuple(FAMILIES),
    batches: Iterable[int] = DEFAULT_BATCHES,
    target: float = 0.01,
    precondition: float = 0.5,
    dim: int = 10_000,
    bins: int | None = None,
    workers: int = 1,
) -> Study:
    """:func:`sweep` of the named families (:data:`FAMILIES`) over ``batches`` and the noiseless
    limit, on the standard NQM (``bins``: the notebook's binned approximation of it).

    Examples:
        >>> result = study(["sgd", "precond-sgd"], batches=[4, 64, 1024], dim=100, target=0.1)
        >>> [(r["rule"], r["batch"], r["steps"]) for r in result.records()][:4]
        [('sgd', 4, 442), ('sgd', 64, 51), ('sgd', 1024, 30), ('sgd', None, 28)]
        >>> {name: c.where for name, c in result.critical().items()}
        {'sgd': 'inside', 'precond-sgd': 'inside'}
    """
    checked = check_study(rules, batches, target, precondition, dim, bins, workers)
    rules, batches, target, precondition, dim, bins, workers = checked
    instance = exact(dim) if bins is None else binned(dim, bins)
    start = time.perf_counter()
    tuned = sweep(instance, [FAMILIES[r] for r in rules], [*batches, None], target,
                  precondition, workers)  # fmt: skip
    seconds = time.perf_counter() - start
    return Study(dim, bins, target, precondition, batches, tuned, seconds, workers)


def examples_needed(instance: Instance, target: float) -> int:
    """The fewest examples N with which any estimator reaches ``E[L] <= target``: one example is an
    observation of the optimum with noise variance ``c_i / h_i^2`` per coordinate, so with the
    prior x_0 ~ N(0, var0) the best (posterior-mean) loss after N examples is
    ``sum_i w_i / (1/var0 + N h_i^2 / c_i)``, decreasing in N. Steps at batch B are at least N / B.
    (The notebook draws ``d / (2 C B)``, this bound without the prior.)

    Examples:
        >>> examples_needed(exact(10_000), 0.01)  # about d / (2C) = 500000
        495017
    """
    target = validation.real("target", target, "(0, inf)", low=0, high=math.inf)
    precision = instance.h**2 / np.where(instance.c > 0, instance.c, np.inf)

    def loss(n: float) -> float:
        return float(instance.weight @ (1.0 / (1.0 / instance.var0 + n * precision)))

    if loss(0) <= target:
        return 0
    high = 1
    while loss(high) > target:
        high *= 2
        if high > 2**62:
            raise ValueError(f"target: {target:g} is below what any number of examples reaches")
    low = high // 2  # loss(low) > target >= loss(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if loss(mid) > target else (low, mid)
    return high


# ---- findings: the notebook's qualitative claims and the new ones, with their numbers ------------


def findings(
    records: list[dict],
    binned_records: list[dict] | None = None,
    examples: int | None = None,
) -> list[Claim]:
    """What a sweep says, as :class:`nqm.verify.Claim` s with their evidence: Zhang et al.'s
    qualitative findings (reproduced or not: SGD scales perfectly up to a critical batch size;
    preconditioning and momentum help at large batch, where they extend perfect scaling; an
    exponential moving average of the iterates saves steps mainly at small batch) and the new ones
    about SMA and Lookahead, from :meth:`Study.records` (or their JSON). A claim needs the families
    it compares; one whose families are missing is left out. ``binned_records`` (the same sweep
    with ``bins``) adds the distance of the notebook's approximation from the exact answer;
    ``examples`` (:func:`examples_needed`) the information bound.

    Examples:
        >>> batches = [2**j for j in range(16)]
        >>> result = study(["sgd", "momentum"], batches=batches, dim=300, target=0.05)
        >>> claims = findings(result.records())
        >>> [(c.key, c.holds) for c in claims]
        [('perfect-scaling', True), ('momentum-helps-only-at-large-batch', True)]
        >>> claims[0].evidence
        'B_crit = 110; per doubling 1.945-1.994x up to B = 16, 1.009-1.153x from B = 256'
    """
    view = _Records(records)
    claims = [check(view) for check in _CLAIMS]
    if binned_records is not None:
        claims.append(_binned_close_to_exact(view, binned_records))
    if examples is not None:
        claims.append(_information_bound(view, examples))
    return [c for c in claims if c is not None]


class _Records:
    """A sweep's records, as the claims read them (rule families x batch sizes)."""

    def __init__(self, records: list[dict]) -> None:
        self.steps = {(r["rule"], r["batch"]): r["steps"] for r in records}
        self.rules = set(r["rule"] for r in records)
        self.batches = sorted({r["batch"] for r in records if r["batch"] is not None})
        self.critical = {r["rule"]: CriticalBatch.of(r) for r in records}
        self.small, self.large = self.batches[0], self.batches[-1]

    def has(self, *rules: str) -> bool:
        return set(rules) <= self.rules

    def ratio(self, a: str, b: str, batch: int | None) -> float:
        """Steps of ``a`` over steps of ``b`` at one batch size (inf if ``a`` never got there)."""
        sa, sb = self.steps.get((a, batch)), self.steps.get((b, batch))
        return math.inf if sa is None or not sb else sa / sb

    def crit(self, rule: str) -> str:
        return self.critical[rule].short()


def _perfect_scaling(v: _Records) -> Claim | None:
    if not v.has("sgd") or len(v.batches) < 2:
        return None
    bc, where = v.critical["sgd"].batch, v.critical["sgd"].where
    halving, flat = [], []  # (B, steps saved per doubling) below B_crit/4 and from 2 B_crit
    for b1, b2 in itertools.pairwise(v.batches):
        s1, s2 = v.steps[("sgd", b1)], v.steps[("sgd", b2)]
        if s1 is None or s2 is None or where != "inside":
            continue
        per_doubling = (s1 / s2) ** (1 / math.log2(b2 / b1))
        if b2 <= bc / 4:
            halving.append((b1, per_doubling))
        if b1 >= 2 * bc:
            flat.append((b1, per_doubling))
    low = (f"{min(r for _, r in halving):.3f}-{max(r for _, r in halving):.3f}x up to "
           f"B = {halving[-1][0] * 2}" if halving else "no pair below B_crit/4")  # fmt: skip
    high = (f"{min(r for _, r in flat):.3f}-{max(r for _, r in flat):.3f}x from B = {flat[0][0]}"
            if flat else "no pair beyond 2 B_crit")  # fmt: skip
    holds = bool(halving and flat)
    holds = holds and min(r for _, r in halving) >= 1.9 and max(r for _, r in flat) < 1.5
    return Claim(
        "perfect-scaling",
        "SGD scales perfectly up to a critical batch size: each doubling of B nearly halves the "
        "steps (by >= 1.9x) up to B_crit/4, and saves less than a third (< 1.5x) from 2 B_crit on",
        holds,
        f"B_crit = {v.crit('sgd')}; per doubling {low}, {high}",
    )


def _preconditioning_raises_critical_batch(v: _Records) -> Claim | None:
    if not v.has("sgd", "precond-sgd"):
        return None
    plain, preconditioned = v.critical["sgd"], v.critical["precond-sgd"]
    a, wa, b, wb = plain.batch, plain.where, preconditioned.batch, preconditioned.where
    # an 'above' value is a lower bound on the preconditioned one, enough to show it larger
    holds = a is not None and b is not None and wa == "inside" and wb != "below" and b > a
    return Claim(
        "preconditioning-raises-critical-batch",
        "preconditioning (P = h^-p) raises the critical batch size",
        holds,
        f"B_crit: SGD {v.crit('sgd')}, preconditioned {v.crit('precond-sgd')}"
        + (f" ({b / a:.2g}x)" if holds else ""),
    )


def _gains(v: _Records, rule: str) -> tuple[float, float, str]:
    """``rule``'s speed-up over SGD minus 1 at the smallest and at the largest B (the saving, 0 for
    none; scale-free, no threshold on its size) and the evidence: its steps over SGD's at both and
    without noise."""
    gain_small = 1 / v.ratio(rule, "sgd", v.small) - 1
    gain_large = 1 / v.ratio(rule, "sgd", v.large) - 1
    evidence = (
        f"steps / SGD's: {v.ratio(rule, 'sgd', v.small):.3f} at B = {v.small}, "
        f"{v.ratio(rule, 'sgd', v.large):.3f} at B = {v.large}, "
        f"{v.ratio(rule, 'sgd', None):.3f} without noise"
    )
    return gain_small, gain_large, evidence


def _momentum_helps_only_at_large_batch(v: _Records) -> Claim | None:
    if not v.has("sgd", "momentum"):
        return None
    gain_small, gain_large, evidence = _gains(v, "momentum")
    return Claim(
        "momentum-helps-only-at-large-batch",
        "momentum helps only at large batch: its speed-up over SGD minus 1 at the smallest B "
        "is under a tenth of that at the largest",
        gain_small < 0.1 * gain_large,
        evidence,
    )


def _ema_helps_mainly_at_small_batch(v: _Records) -> Claim | None:
    # Zhang et al.'s EMA finding, the mirror of momentum's: a saving at the smallest B (> 0) of
    # which at most a tenth is left at the largest.
    if not v.has("sgd", "ema"):
        return None
    gain_small, gain_large, evidence = _gains(v, "ema")
    return Claim(
        "ema-helps-mainly-at-small-batch",
        "EMA saves steps mainly at small batch (Zhang et al.): its speed-up over SGD minus 1 at the "
        "largest B is under a tenth of that at the smallest",
        gain_small > 0 and gain_large < 0.1 * gain_small,
        evidence,
    )


def _averaging_helps_at_small_batch(v: _Records) -> Claim | None:
    averages = [r for r in ("ema", "sma", "lookahead") if v.has(r)]
    if not v.has("sgd") or not averages:
        return None
    parts = [f"{r} {v.ratio(r, 'sgd', v.small):.3f} / {v.ratio(r, 'sgd', v.large):.3f}"
             for r in averages]  # fmt: skip
    return Claim(
        "averaging-helps-at-small-batch",
        "averaging the weights (EMA, SMA, Lookahead) speeds SGD up only where gradient noise "
        "dominates: fewer steps than SGD at the smallest B, none saved (>= 0.95x) at the largest",
        all(
            v.ratio(r, "sgd", v.small) < 1 and v.ratio(r, "sgd", v.large) >= 0.95 for r in averages
        ),
        f"steps / SGD's at B = {v.small} / {v.large}: " + ", ".join(parts),
    )


def _sma_close_to_ema(v: _Records) -> Claim | None:
    if not v.has("sma", "ema"):
        return None
    ratios = [v.ratio("sma", "ema", b) for b in [*v.batches, None]]
    return Claim(
        "sma-close-to-ema",
        "SMA (an average updated every k steps) needs at most 10% more steps than the per-step "
        "EMA at every batch size",
        max(ratios) <= 1.1,
        f"SMA / EMA steps from {min(ratios):.3f} to {max(ratios):.3f} over B = {v.small} ... "
        f"{v.large} and no noise",
    )


def _lookahead_behind_ema_and_sma(v: _Records) -> Claim | None:
    versus = [r for r in ("ema", "sma") if v.has(r)]
    if not v.has("lookahead") or not versus:
        return None
    ratios = {r: [v.ratio("lookahead", r, b) for b in [*v.batches, None]] for r in versus}
    spans = [f"{r.upper()} steps from {min(x):.3f} to {max(x):.3f}" for r, x in ratios.items()]
    return Claim(
        "lookahead-behind-ema-and-sma",
        "Lookahead (the average fed back into the fast weights) needs more steps than "
        + " and ".join(r.upper() for r in versus)
        + " at every batch size",
        all(x > 1 for values in ratios.values() for x in values),
        "Lookahead / " + ", ".join(spans),
    )


def _momentum_wins_at_large_batch(v: _Records) -> Claim | None:
    others = [r for r in ("sma", "lookahead", "ema") if v.has(r)]
    if not v.has("momentum") or not others:
        return None
    return Claim(
        "momentum-wins-at-large-batch",
        "at the largest batch no average of SGD comes near heavy-ball momentum (2x its steps or "
        "more)",
        all(v.ratio(r, "momentum", v.large) > 2 for r in others),
        f"steps / momentum's at B = {v.large}: "
        + ", ".join(f"{r} {v.ratio(r, 'momentum', v.large):.1f}x" for r in others),
    )


def _averaging_lowers_critical_batch(v: _Records) -> Claim | None:
    pairs = [(a, b) for a, b in (("ema", "sgd"), ("sma", "sgd"), ("lookahead", "sgd"),
                                 ("precond-sma", "precond-sgd")) if v.has(a, b)]  # fmt: skip
    if not pairs:
        return None

    def lower(a: str, b: str) -> bool:
        ca, cb = v.critical[a], v.critical[b]
        inside = ca.where == cb.where == "inside"
        return inside and ca.batch is not None and cb.batch is not None and ca.batch < cb.batch

    return Claim(
        "averaging-lowers-critical-batch",
        "averaging lowers the critical batch size (it saves steps only at small batch, so the "
        "steps reach twice the noiseless minimum at a smaller B)",
        all(lower(a, b) for a, b in pairs),
        "; ".join(f"{a} {v.crit(a)} vs {b} {v.crit(b)}" for a, b in pairs),
    )


def _binned_close_to_exact(v: _Records, binned_records: list[dict]) -> Claim:
    binned = {(r["rule"], r["batch"]): r["steps"] for r in binned_records}
    errors = sorted(((abs(binned[k] / s - 1), k) for k, s in v.steps.items() if s and binned.get(k)),
                    key=lambda error: error[0])  # fmt: skip
    evidence = "no common results"
    if errors:
        worst, (rule, batch) = errors[-1]
        evidence = (f"|binned / exact - 1| over {len(errors)} (rule, B): median "
                    f"{statistics.median(e for e, _ in errors):.2%}, largest {worst:.2%} "
                    f"({rule}, B = {_batch_name(batch)})")  # fmt: skip
    return Claim(
        "binned-close-to-exact",
        "the notebook's 100-bin approximation gives the exact tuned steps within 10%",
        bool(errors) and errors[-1][0] <= 0.1,
        evidence,
    )


def _information_bound(v: _Records, examples: int) -> Claim:
    gaps = {
        r: v.steps[(r, v.small)] * v.small / examples for r in v.rules if v.steps.get((r, v.small))
    }
    best = min(gaps, key=gaps.get) if gaps else None
    return Claim(
        "information-bound",
        "no rule beats the information bound (at least N* examples, N* / B steps)",
        all(v.steps[(r, b)] * b >= examples for r in v.rules for b in v.batches if v.steps.get((r, b))),
        f"N* = {examples}; at B = {v.small} the closest is {best} at {gaps[best]:.2f}x the bound"
        if best else f"N* = {examples}",
    )  # fmt: skip


# The claims about the rules, in the order docs/scaling.md lists them: Zhang et al.'s four (perfect
# scaling, preconditioning and momentum at large batch, the EMA at small batch), then the new ones.
_CLAIMS = (
    _perfect_scaling,
    _preconditioning_raises_critical_batch,
    _momentum_helps_only_at_large_batch,
    _ema_helps_mainly_at_small_batch,
    _averaging_helps_at_small_batch,
    _sma_close_to_ema,
    _lookahead_behind_ema_and_sma,
    _momentum_wins_at_large_batch,
    _averaging_lowers_critical_batch,
)


def _batch_name(batch: int | None) -> str:
    return "inf" if batch is None else str(batch)
