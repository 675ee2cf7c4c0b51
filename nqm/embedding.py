"""Embedding on the NQM (the STDET side): member coordinates stop training and follow a reference,
``x_j = a_j * x_r + b_j`` (this project's formalisation of a *true* embedding; derivation in
``proofs/07-embedding.md``).

From its start step on, an embedded coordinate receives no gradient and no noise of its own: its fast
weight, average and momentum are the affine image of the reference's, ``(x, y, v)_j =
a_j (x, y, v)_r + b_j (1, 1, 0)`` (an average of affine images is the affine image of the average;
a velocity has no offset). Hence its marginal moments are ``mean_j = a_j mean_r + b_j`` and
``Var_j = a_j^2 Var_r`` at every step, and in steady state ``E[x_j] = b_j``, ``Var_j = a_j^2 V_r``:
coordinate j adds ``1/2 h_j (b_j^2 + a_j^2 V_r)`` to the expected loss instead of ``1/2 h_j V_j``.
Embedding lowers the steady-state loss exactly when ``b_j^2 + a_j^2 V_r < V_j``; an imperfect tie
(``b_j != 0``: the fitted line misses the optimum x* = 0) adds the bias ``b_j^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lic_dynamics import validation
from nqm.rules import State

# Offsets of (x, y, v) under the tie: positions move by b, velocities do not.
OFFSET = np.array([1.0, 1.0, 0.0])


@dataclass(frozen=True, eq=False)
class Tie:
    """Members tied to references: ``x[member[i]] = a[i] * x[reference[i]] + b[i]`` from optimizer
    step ``start`` on (before it the members train like every other coordinate).

    Arrays of one length; members are distinct, no member is a reference (references keep
    training), indices lie in ``[0, d)`` of the problem they are used with.

    Examples:
        >>> tie = Tie(member=[1], reference=[0], a=[0.5], b=[0.1], start=2)
        >>> tie.active(1), tie.active(2)
        (False, True)
        >>> mean, variance = tie.apply_steady(np.array([2.0, 3.0]))  # the untied variances
        >>> mean.tolist(), variance.tolist()
        ([0.0, 0.1], [2.0, 0.5])
        >>> s = State(x=np.array([[4.0, 9.0]]), y=np.array([[2.0, 9.0]]), v=np.array([[1.0, 9.0]]))
        >>> [value.tolist() for value in tie.apply_state(s)]  # velocities get no offset
        [[[4.0, 2.1]], [[2.0, 1.1]], [[1.0, 0.5]]]
        >>> tie.check_dim(1)
        Traceback (most recent call last):
        ...
        ValueError: member must index coordinates in [0, 1), got 1
        >>> Tie(member=[0], reference=[0], a=[1.0], b=[0.0])
        Traceback (most recent call last):
        ...
        ValueError: member: coordinate 0 is also a reference; references train
    """

    member: np.ndarray
    reference: np.ndarray
    a: np.ndarray
    b: np.ndarray
    start: int = 0

    def __post_init__(self) -> None:
        member = np.atleast_1d(validation.integer_array("member", self.member, minimum=0))
        reference = np.atleast_1d(validation.integer_array("reference", self.reference, minimum=0))
        a = np.atleast_1d(np.asarray(self.a, dtype=np.float64))
        b = np.atleast_1d(np.asarray(self.b, dtype=np.float64))
        n = member.size
        for name, value in (("reference", reference), ("a", a), ("b", b)):
            if value.shape != (n,):
                raise ValueError(f"{name} must have one entry per member ({n}), got {value.shape}")
        for name, value in (("a", a), ("b", b)):
            if not np.isfinite(value).all():
                raise ValueError(f"{name} must be finite, got {value!r}")
        if np.unique(member).size != n:
            raise ValueError(f"member must not repeat a coordinate, got {member.tolist()}")
        if np.isin(member, reference).any():
            shared = int(member[np.isin(member, reference)][0])
            raise ValueError(f"member: coordinate {shared} is also a reference; references train")
        for name, value in (("member", member), ("reference", reference), ("a", a), ("b", b)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "start", validation.integer("start", self.start, minimum=0))

    def check_dim(self, d: int) -> None:
        """Raise unless every index fits a problem of dimension ``d``."""
        for name, value in (("member", self.member), ("reference", self.reference)):
            if value.max() >= d:
                raise ValueError(f"{name} must index coordinates in [0, {d}), got {value.max()}")

    def active(self, t: int) -> bool:
        return t >= self.start

    def apply_state(self, s: State) -> State:
        """Monte Carlo: overwrite the members of (x, y, v), coordinates on the last axis."""
        for value, offset in zip(s, OFFSET, strict=True):
            value[..., self.member] = self.a * value[..., self.reference] + offset * self.b
        return s

    def apply_moments(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact moments: members' marginal mean (d, 3) and covariance (d, 3, 3) from the
        references'."""
        mean, cov = mean.copy(), cov.copy()
        mean[self.member] = self.a[:, None] * mean[self.reference] + self.b[:, None] * OFFSET
        cov[self.member] = (self.a**2)[:, None, None] * cov[self.reference]
        return mean, cov

    def apply_steady(self, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steady state: ``(mean, variance)`` of every coordinate's readout, shape (d,), from the
        untied steady variances (every untied mean is 0)."""
        mean = np.zeros_like(variance)
        variance = variance.copy()
        mean[self.member] = self.b
        variance[self.member] = self.a**2 * variance[self.reference]
        return mean, variance
