"""Exact first and second moments of every rule, at every step and in steady state.

Each rule is linear in its state ``s = (x, y, v)`` and the gradient noise, so one optimizer step is
``s <- A_t s + b_t * eps`` with ``eps ~ N(0, sigma2)``. ``A_t`` and ``b_t`` are read off the rule's own
``step`` by applying it to basis vectors (:func:`transition`), so the propagated moments follow the same
code as the Monte Carlo chains. Moments propagate exactly:
``m <- A m``, ``P <- A P A^T + sigma2 * b b^T`` (shapes (d, 3) and (d, 3, 3)).

The steady state of a rule with period k is that of the period map ``M = A_k ... A_1`` with noise
``Q = sum_j (A_k ... A_{j+1}) b_j b_j^T (...)^T sigma2``, restricted to the states the rule uses, from
``scipy.linalg.solve_discrete_lyapunov(M, Q)`` (``X = M X M^T + Q``), per coordinate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from lic_dynamics import validation
from nqm.embedding import Tie
from nqm.problem import Problem
from nqm.rules import STATE_NAMES, Polyak, Rule, State

N_STATES = len(STATE_NAMES)


def transition(rule: Rule, t: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` of optimizer step t: shapes (d, 3, 3) and (d, 3), state order (x, y, v).

    Examples:
        >>> from nqm.rules import SGD, SMA
        >>> a, b = transition(SMA(SGD(0.5), k=2, beta=0.9), 2, np.array([1.0]))  # a sampling step
        >>> a.shape, b.shape
        ((1, 3, 3), (1, 3))
        >>> a[0].round(6).tolist(), b[0].round(6).tolist()
        ([[0.5, 0.0, 0.0], [0.05, 0.9, 0.0], [0.0, 0.0, 1.0]], [-0.5, -0.05, 0.0])
    """
    h = np.atleast_1d(np.asarray(h, dtype=np.float64))
    # Columns 0..2 probe the basis states without noise, column 3 probes unit noise from zero state.
    probe = np.zeros((N_STATES, h.size, N_STATES + 1))
    for i in range(N_STATES):
        probe[i, :, i] = 1.0
    noise = np.zeros((h.size, N_STATES + 1))
    noise[:, N_STATES] = 1.0
    out = np.stack(rule.step(t, State(*probe), h[:, None], noise), axis=1)  # (d, 3, 4)
    return out[:, :, :N_STATES], out[:, :, N_STATES]


@dataclass(frozen=True)
class Moments:
    """Moments after ``t`` optimizer steps: ``mean`` (d, 3), ``cov`` (d, 3, 3) over (x, y, v).

    Examples:
        >>> from nqm.rules import SGD, SMA
        >>> m = initial_moments(Problem(h=1.0, c=1.0, mean0=2.0, var0=0.5))
        >>> m.t, m.mean.tolist(), m.cov.shape
        (0, [[2.0, 2.0, 0.0]], (1, 3, 3))
        >>> mean, var = m.readout(SMA(SGD(0.5), k=2, beta=0.9))  # the readout y
        >>> mean.tolist(), var.tolist()
        ([2.0], [0.5])
    """

    t: int
    mean: np.ndarray
    cov: np.ndarray

    def readout(self, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the rule's readout, each (d,)."""
        i = STATE_NAMES.index(rule.readout)
        return self.mean[:, i], self.cov[:, i, i]


def initial_moments(problem: Problem) -> Moments:
    """``x_0 ~ N(mean0, var0)``, ``y_0 = x_0``, ``v_0 = 0``.

    Examples:
        >>> m = initial_moments(Problem(h=[1.0, 2.0], c=1.0, mean0=[1.0, -1.0], var0=0.5))
        >>> m.mean.tolist()
        [[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]]
        >>> m.cov[0].tolist()  # x_0 and y_0 are the same variable
        [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
    """
    d = problem.dim
    mean = np.zeros((d, N_STATES))
    mean[:, 0] = mean[:, 1] = problem.mean0
    cov = np.zeros((d, N_STATES, N_STATES))
    cov[:, :2, :2] = problem.var0[:, None, None]
    return Moments(0, mean, cov)


def iterate(problem: Problem, rule: Rule, steps: int, tie: Tie | None = None) -> Iterator[Moments]:
    """Yields the exact moments after 0, 1, ..., ``steps`` optimizer steps. With a ``tie``, members
    report the affine image of their reference from ``tie.start`` on (their marginal moments).

    Examples:
        >>> from nqm.rules import SGD
        >>> problem = Problem(h=1.0, c=1.0, mean0=2.0, var0=0.5)
        >>> rule = SGD(0.5)  # m <- m/2, V <- V/4 + 1/4, towards V* = 1/3
        >>> for m in iterate(problem, rule, 3):
        ...     mean, var = m.readout(rule)
        ...     print(m.t, mean.tolist(), var.tolist())
        0 [2.0] [0.5]
        1 [1.0] [0.375]
        2 [0.5] [0.34375]
        3 [0.25] [0.3359375]
    """
    steps = validation.integer("steps", steps, minimum=0)
    if tie is not None:
        tie.check_dim(problem.dim)
    m = initial_moments(problem)
    mean, cov, sigma2 = m.mean, m.cov, problem.sigma2[:, None, None]
    for t in range(steps + 1):
        if t:
            a, b = transition(rule, t, problem.h)
            mean = np.einsum("dij,dj->di", a, mean)
            cov = a @ cov @ a.transpose(0, 2, 1) + sigma2 * (b[:, :, None] * b[:, None, :])
        if tie is not None and tie.active(t):
            # Members follow their references exactly, so their own propagated moments are
            # replaced, not just reported: Var would otherwise keep the pre-tie history.
            mean, cov = tie.apply_moments(mean, cov)
        yield Moments(t, mean, cov)


@dataclass(frozen=True)
class LossCurve:
    """Expected loss of the readout at ``steps``: ``loss = bias + variance`` with
    ``bias = 1/2 sum h m^2`` and ``variance = 1/2 sum h V`` (units of the loss). ``spread`` is the
    standard deviation of the loss itself across independent runs,
    ``sqrt(sum (h/2)^2 (2 V^2 + 4 m^2 V))`` (Gaussian coordinates, independent across i).

    Examples:
        >>> from nqm.rules import SGD
        >>> curve = loss_curve(Problem(h=1.0, c=1.0, mean0=2.0, var0=0.5), SGD(0.5), 3)
        >>> curve.steps.tolist(), curve.bias.tolist()
        ([0, 1, 2, 3], [2.0, 0.5, 0.125, 0.03125])
        >>> curve.variance.round(6).tolist(), curve.loss.round(6).tolist()
        ([0.25, 0.1875, 0.171875, 0.167969], [2.25, 0.6875, 0.296875, 0.199219])
        >>> curve.spread.round(6).tolist()
        [1.457738, 0.667317, 0.380814, 0.27825]
    """

    steps: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    spread: np.ndarray

    @property
    def loss(self) -> np.ndarray:
        return self.bias + self.variance


def loss_curve(
    problem: Problem,
    rule: Rule,
    steps: int,
    record: np.ndarray | None = None,
    tie: Tie | None = None,
    on_step: Callable[[], None] | None = None,
) -> LossCurve:
    """Exact expected loss of the readout after each step in ``record`` (default 0..steps);
    ``on_step()`` is called after each step (a caller's progress report).

    Examples:
        >>> from nqm.problem import standard
        >>> from nqm.rules import SGD, SMA
        >>> rule = SMA(SGD(0.5), k=5, beta=0.9)
        >>> curve = loss_curve(standard(100), rule, 1000, record=[0, 10, 1000])
        >>> curve.steps.tolist(), curve.loss.round(6).tolist()
        ([0, 10, 1000], [2.593689, 2.167732, 0.211823])
    """
    record = _record_steps(steps, record)
    wanted = set(record.tolist())
    bias, variance, spread = [], [], []
    quarter_h2 = 0.25 * problem.h**2
    for m in iterate(problem, rule, int(record[-1]), tie):
        if m.t and on_step is not None:
            on_step()
        if m.t in wanted:
            mean, var = m.readout(rule)
            b, v = problem.expected_loss(mean, var)
            bias.append(b)
            variance.append(v)
            # Var(y^2) = 2 V^2 + 4 m^2 V for y ~ N(m, V). A tied member is a copy of its
            # reference, so with a tie this ignores their covariance: a lower bound, not exact.
            spread.append(np.sqrt(quarter_h2 @ (2 * var**2 + 4 * mean**2 * var)))
    return LossCurve(record, np.array(bias), np.array(variance), np.array(spread))


Affine = tuple[np.ndarray, np.ndarray]  # (M, N): s -> M s + noise with covariance sigma2 * N


def _then(first: Affine, second: Affine) -> Affine:
    """The map ``first`` followed by ``second``."""
    m1, n1 = first
    m2, n2 = second
    return m2 @ m1, m2 @ n1 @ m2.transpose(0, 2, 1) + n2


def _power(step: Affine, count: int) -> Affine:
    """``step`` applied ``count`` times, by repeated squaring: O(log count) matrix products."""
    d = step[0].shape[0]
    result: Affine = (
        np.broadcast_to(np.eye(N_STATES), (d, N_STATES, N_STATES)).copy(),
        np.zeros((d, N_STATES, N_STATES)),
    )
    while count:
        if count & 1:
            result = _then(result, step)
        step = _then(step, step)
        count >>= 1
    return result


def _step_map(rule: Rule, t: int, h: np.ndarray) -> Affine:
    a, b = transition(rule, t, h)
    return a, b[:, :, None] * b[:, None, :]


def _period(rule: Rule, h: np.ndarray) -> Affine:
    """One period over all three states: k - 1 plain steps, then the sampling step. Every rule
    here makes the same move on every step that is not a sampling step, so those k - 1 steps are
    one map raised to a power (k = 10^9 costs 30 squarings)."""
    plain = _power(_step_map(rule, 1, h), rule.period - 1) if rule.period > 1 else None
    sample = _step_map(rule, rule.period, h)
    return sample if plain is None else _then(plain, sample)


def period_map(rule: Rule, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, N)`` with ``s_{t+k} = M s_t + noise``, noise covariance ``sigma2 * N``, over one period
    that ends on a sampling step; shapes (d, n, n) over ``rule.states`` only.

    Examples:
        >>> from nqm.rules import SGD, SMA
        >>> m, n = period_map(SMA(SGD(0.5), k=2, beta=0.9), np.array([1.0]))  # states (x, y)
        >>> m[0].round(6).tolist(), n[0].round(6).tolist()
        ([[0.25, 0.0], [0.025, 0.9]], [[0.3125, 0.03125], [0.03125, 0.003125]])
    """
    if isinstance(rule, Polyak):
        raise ValueError("rule: Polyak averaging has no steady state (its variance falls like 1/n)")
    m, n = _period(rule, np.atleast_1d(np.asarray(h, dtype=np.float64)))
    idx = [STATE_NAMES.index(s) for s in rule.states]
    return m[:, idx][:, :, idx], n[:, idx][:, :, idx]


def moments_at(problem: Problem, rule: Rule, t: int, tie: Tie | None = None) -> Moments:
    """The exact moments after ``t`` optimizer steps in O(log t) matrix products (whole periods by
    repeated squaring, then the remaining plain steps), equal to the ``t``-th item of
    :func:`iterate`. Polyak averaging changes its weights every sample and is stepped through.

    Examples:
        >>> from nqm.rules import SGD, SMA
        >>> problem = Problem(h=1.0, c=1.0, mean0=2.0, var0=0.5)
        >>> moments_at(problem, SGD(0.5), 3).readout(SGD(0.5))[1].tolist()  # as iterate, step 3
        [0.3359375]
        >>> rule = SMA(SGD(0.5), k=10, beta=0.9)
        >>> m = moments_at(problem, rule, 10**6)  # about 40 matrix products
        >>> m.t, round(float(m.readout(rule)[1][0]), 6)  # the steady state
        (1000000, 0.017575)
    """
    t = validation.integer("t", t, minimum=0)
    if isinstance(rule, Polyak):
        *_, last = iterate(problem, rule, t, tie)
        return last
    if tie is not None:
        tie.check_dim(problem.dim)
    periods, rest = divmod(t, rule.period)
    m0 = initial_moments(problem)
    mean, cov = m0.mean, m0.cov
    if tie is not None and tie.active(0):
        mean, cov = tie.apply_moments(mean, cov)  # as iterate does at t = 0
    move = _power(_period(rule, problem.h), periods)
    if rest:
        move = _then(move, _power(_step_map(rule, 1, problem.h), rest))
    m, n = move
    mean = np.einsum("dij,dj->di", m, mean)
    cov = m @ cov @ m.transpose(0, 2, 1) + problem.sigma2[:, None, None] * n
    if tie is not None and tie.active(t):
        mean, cov = tie.apply_moments(mean, cov)
    return Moments(t, mean, cov)


def stationary_covariance(rule: Rule, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Stationary covariance over ``rule.states`` just after a sampling step, (d, n, n).

    Raises ``ValueError`` when the period map has spectral radius >= 1 (no steady state).

    Examples:
        >>> from nqm.rules import SGD, SMA
        >>> cov = stationary_covariance(SMA(SGD(0.5), k=10, beta=0.9), [1.0], [1.0])  # (x, y)
        >>> cov.round(6).tolist()
        [[[0.333333, 0.033363], [0.033363, 0.017575]]]
        >>> stationary_covariance(SGD(2.5), [1.0], [1.0])
        Traceback (most recent call last):
        ...
        ValueError: no steady state: the period-1 map of SGD(lr=2.5) has spectral radius 1.5 ...
    """
    h = np.atleast_1d(validation.array("h", h, positive=True))
    sigma2 = np.broadcast_to(validation.array("sigma2", sigma2, positive=False), h.shape)
    m, n = period_map(rule, h)
    radius = np.abs(np.linalg.eigvals(m)).max(axis=-1)
    if not (radius < 1).all():
        i = int(np.flatnonzero(~(radius < 1))[0])
        raise ValueError(
            f"no steady state: the period-{rule.period} map of {rule.label()} has spectral radius "
            f"{radius[i]:.6g} >= 1 at h = {float(h[i])!r} "
            f"(rho = lr*h = {float(rule.base.rho(h[i]))!r})"
        )
    return np.stack(
        [
            scipy.linalg.solve_discrete_lyapunov(mi, s2 * ni)
            for mi, ni, s2 in zip(m, n, sigma2, strict=True)
        ]
    )


def stationary_variance(rule: Rule, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
    """Stationary variance of the readout from the Lyapunov solve, shape (d,).

    Examples:
        >>> from nqm.rules import SGD, SMA, Lookahead, Momentum
        >>> stationary_variance(SMA(SGD(0.5), k=10, beta=0.9), [1.0], [1.0]).round(6)
        array([0.017575])
        >>> rule = Lookahead(Momentum(0.5, 0.5), k=5, alpha=0.5)  # no closed form
        >>> stationary_variance(rule, [1.0], [1.0]).round(6)
        array([0.173392])
    """
    i = rule.states.index(rule.readout)
    return stationary_covariance(rule, h, sigma2)[:, i, i]


def _record_steps(steps: int, record: np.ndarray | None) -> np.ndarray:
    steps = validation.integer("steps", steps, minimum=0)
    if record is None:
        return np.arange(steps + 1)
    record = np.unique(np.asarray(record, dtype=np.int64))
    if record.size == 0 or record[0] < 0 or record[-1] > steps:
        raise ValueError(f"record must hold step numbers in [0, {steps}], got {record!r}")
    return record
