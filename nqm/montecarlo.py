"""Monte Carlo: many independent chains of a rule on an NQM, every estimate with its standard error.

Chains run in chunks of at most ``max_elements`` floats per state array (memory stays bounded for any
number of chains), each chunk with its own ``np.random.Generator`` spawned from ``seed``, so a result
depends only on (seed, chains, max_elements). Statistics of chunks are merged with Chan et al.'s
pairwise update, which keeps the variance accurate where sum-of-squares would cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lic_dynamics import validation
from nqm.embedding import Tie
from nqm.moments import _record_steps
from nqm.problem import Problem
from nqm.rules import Rule, State

# Numbers per state array of a chunk of chains (8 MiB): memory stays bounded for any number of chains.
CHUNK_NUMBERS = 1 << 20


@dataclass(frozen=True)
class MonteCarlo:
    """Estimates at the recorded ``steps`` over ``chains`` independent chains.

    ``loss``/``loss_se``: mean over chains of the readout's loss ``1/2 sum h y^2`` and its standard
    error ``sd/sqrt(M)``, shape (T,). With ``per_coordinate``: ``mean``/``var`` of the readout, shape
    (T, d); ``mean_se = sqrt(var/M)``, ``var_se = var*sqrt(2/(M-1))`` (exact for Gaussian chains,
    which every chain here is). Otherwise those four are None.

    Examples:
        >>> from nqm.rules import SGD
        >>> mc = simulate(Problem(h=1.0, c=1.0), SGD(0.5), steps=20, chains=2000, record=[0, 20])
        >>> mc.steps.tolist(), mc.chains, mc.loss.shape, mc.var.shape, mc.var_se.shape
        ([0, 20], 2000, (2,), (2, 1), (2, 1))
        >>> bool(abs(mc.var[-1, 0] - 1 / 3) < 4 * mc.var_se[-1, 0])  # V* = 1/3, within 4 SE
        True
    """

    steps: np.ndarray
    chains: int
    loss: np.ndarray
    loss_se: np.ndarray
    mean: np.ndarray | None
    var: np.ndarray | None

    @property
    def mean_se(self) -> np.ndarray | None:
        return None if self.var is None else np.sqrt(self.var / self.chains)

    @property
    def var_se(self) -> np.ndarray | None:
        return None if self.var is None else self.var * np.sqrt(2.0 / (self.chains - 1))


class _Accumulator:
    """Running count, mean and sum of squared deviations over chains, merged chunk by chunk."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.n = 0
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)

    def add(self, index: int, samples: np.ndarray) -> None:
        """Merge ``samples`` (chains along axis 0) into row ``index``; call once per chunk and row,
        with ``commit`` after the chunk."""
        nb = samples.shape[0]
        mean_b = samples.mean(axis=0)
        m2_b = ((samples - mean_b) ** 2).sum(axis=0)
        n = self.n + nb
        delta = mean_b - self.mean[index]
        self.mean[index] += delta * nb / n
        self.m2[index] += m2_b + delta**2 * self.n * nb / n

    def commit(self, nb: int) -> None:
        self.n += nb

    def variance(self) -> np.ndarray:
        return self.m2 / (self.n - 1)


def simulate(
    problem: Problem,
    rule: Rule,
    steps: int,
    chains: int,
    seed: int = 0,
    record: np.ndarray | None = None,
    per_coordinate: bool = True,
    max_elements: int = CHUNK_NUMBERS,
    tie: Tie | None = None,
    on_chunk: Callable[[int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> MonteCarlo:
    """Runs ``chains`` independent chains for ``steps`` optimizer steps and estimates the readout's
    loss (and per-coordinate mean and variance) after each step in ``record`` (default 0..steps).
    With a ``tie``, members are overwritten by the affine image of their references after every
    step from ``tie.start`` on, so they share their reference's noise as in a real model.
    The chains run in chunks of about ``max_elements`` numbers; ``on_chunk(chains done)`` is called
    after each, and ``on_step(chains in the chunk)`` after each step of a chunk (a caller's progress
    report; a chunk of one long chain can take hours).

    Examples:
        >>> from nqm.rules import SGD
        >>> problem = Problem(h=[1.0, 0.5], c=1.0)
        >>> mc = simulate(problem, SGD(0.5), steps=20, chains=2000, seed=1, per_coordinate=False)
        >>> mc.loss.shape, mc.mean is None
        ((21,), True)
        >>> from nqm.moments import loss_curve
        >>> exact = loss_curve(problem, SGD(0.5), 20).loss  # the exact moments, steps 0..20
        >>> round(float(exact[-1]), 6)
        0.309525
        >>> bool((abs(mc.loss - exact) < 4 * mc.loss_se).all())  # within 4 SE at every step
        True
        >>> again = simulate(problem, SGD(0.5), steps=20, chains=2000, seed=1, per_coordinate=False)
        >>> bool((again.loss == mc.loss).all())  # a result depends only on the seed and sizes
        True
    """
    record = _record_steps(steps, record)
    chains = validation.integer("chains", chains, minimum=2)
    seed = validation.integer("seed", seed, minimum=0)
    max_elements = validation.integer("max_elements", max_elements, minimum=1)
    d = problem.dim
    if tie is not None:
        tie.check_dim(d)
    loss = _Accumulator((record.size,))
    coords = _Accumulator((record.size, d)) if per_coordinate else None
    for size, rng in _chunks(chains, d, max_elements, seed):
        _run_chunk(problem, rule, record, size, rng, tie, loss, coords, on_step)
        if on_chunk is not None:
            on_chunk(loss.n)
    return MonteCarlo(
        steps=record,
        chains=chains,
        loss=loss.mean,
        loss_se=np.sqrt(loss.variance() / chains),
        mean=None if coords is None else coords.mean,
        var=None if coords is None else coords.variance(),
    )


def _chunks(
    chains: int, d: int, max_elements: int, seed: int
) -> Iterator[tuple[int, np.random.Generator]]:
    """The chains split into chunks of at most ``max_elements // d`` (at least 1), and each chunk's
    generator, the i-th child of ``SeedSequence(seed)``: what makes a result depend only on (seed,
    chains, max_elements). Made one at a time: a billion chunks would not fit in a list."""
    chunk = max(1, min(chains, max_elements // d))
    full, rest = divmod(chains, chunk)
    for i in range(full + (1 if rest else 0)):
        # The child SeedSequence.spawn would make as its i-th, without making the others.
        child = np.random.SeedSequence(seed, spawn_key=(i,))
        yield (chunk if i < full else rest), np.random.default_rng(child)


def _run_chunk(
    problem: Problem,
    rule: Rule,
    record: np.ndarray,
    size: int,
    rng: np.random.Generator,
    tie: Tie | None,
    loss: _Accumulator,
    coords: _Accumulator | None,
    on_step: Callable[[int], None] | None = None,
) -> None:
    """Runs ``size`` chains from ``x_0 ~ N(mean0, var0)`` to the last recorded step, drawing the
    start and then each step's gradient noise from ``rng``, and merges the readout's loss (and,
    with ``coords``, the readout itself) at each recorded step into the accumulators."""
    d = problem.dim
    readout = rule.readout
    h, sd, sd0 = problem.h, np.sqrt(problem.sigma2), np.sqrt(problem.var0)
    half_h = 0.5 * h
    x = problem.mean0 + sd0 * rng.standard_normal((size, d))
    s = State(x=x, y=x.copy(), v=np.zeros_like(x))
    noise = np.empty((size, d))
    j = 0
    for t in range(int(record[-1]) + 1):
        if t:
            rng.standard_normal(out=noise)
            noise *= sd
            s = rule.step(t, s, h, noise)
            if on_step is not None:
                on_step(size)
        if tie is not None and tie.active(t):
            s = tie.apply_state(s)
        if t == record[j]:
            y = getattr(s, readout)
            loss.add(j, (y * y) @ half_h)
            if coords is not None:
                coords.add(j, y)
            j += 1
    loss.commit(size)
    if coords is not None:
        coords.commit(size)
