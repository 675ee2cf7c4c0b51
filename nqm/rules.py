"""Update rules on the NQM, each a small object with validated hyperparameters.

Every rule advances a :class:`State` by one optimizer step, given the curvature ``h`` and the
gradient noise of that step; the gradient is ``g = h*x + noise``. Averaging rules wrap a base
optimizer (:class:`SGD` or :class:`Momentum`) the way optax transformations chain: the base moves the
fast weights, the wrapper then updates the average on its sampling steps.

``step`` is the single definition of each rule's dynamics. The Monte Carlo engine runs it on sampled
noise; the exact-moment engine runs it on basis vectors to read off the rule's linear map (every rule
here is linear in state and noise), so both engines follow exactly the code below.

Time convention: ``step(t, ...)`` performs optimizer step number ``t`` (t = 1, 2, ...); a rule that
samples every k steps samples after the base update of steps k, 2k, ... The average starts equal to
the initial fast weight, ``y_0 = x_0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from nqm import _checks


class State(NamedTuple):
    """Per-coordinate state; arrays of one shape (chains x d for Monte Carlo)."""

    x: np.ndarray  # fast weights
    y: np.ndarray  # average / slow weights (the readout of averaging rules)
    v: np.ndarray  # heavy-ball momentum buffer


STATE_NAMES = State._fields


@dataclass(frozen=True)
class SGD:
    """``x <- x - lr * g``."""

    lr: float
    states: ClassVar[tuple[str, ...]] = ("x",)
    readout: ClassVar[str] = "x"
    period: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _checks.real("lr", self.lr, "(0, inf)", low=0, high=np.inf))

    @property
    def base(self) -> SGD:
        return self

    def label(self) -> str:
        return f"SGD(lr={self.lr:g})"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        return s._replace(x=s.x - self.lr * (h * s.x + noise))


@dataclass(frozen=True)
class Momentum:
    """Heavy ball: ``v <- mu*v - lr*g``, ``x <- x + v`` (PyTorch's SGD with momentum, up to the
    scaling of v)."""

    lr: float
    mu: float
    states: ClassVar[tuple[str, ...]] = ("x", "v")
    readout: ClassVar[str] = "x"
    period: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr", _checks.real("lr", self.lr, "(0, inf)", low=0, high=np.inf))
        object.__setattr__(self, "mu", _checks.real("mu", self.mu, "(-1, 1)", low=-1, high=1))

    @property
    def base(self) -> Momentum:
        return self

    def label(self) -> str:
        return f"Momentum(lr={self.lr:g}, mu={self.mu:g})"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        v = self.mu * s.v - self.lr * (h * s.x + noise)
        return s._replace(x=s.x + v, v=v)


Base = SGD | Momentum


def _check_base(base: object) -> Base:
    if not isinstance(base, SGD | Momentum):
        raise ValueError(f"base must be an SGD or Momentum rule, got {base!r}")
    return base


class _Averaging:
    """What the averaging wrappers share: a base optimizer's states plus the average ``y``, which
    is their readout, and a period of k steps."""

    readout: ClassVar[str] = "y"

    @property
    def states(self) -> tuple[str, ...]:
        return (*self.base.states, "y")

    @property
    def period(self) -> int:
        return self.k


@dataclass(frozen=True)
class SMA(_Averaging):
    """Sampling-then-moving-average: every k steps ``y <- beta*y + (1-beta)*x``.

    With ``feedback=True`` the fast weights are reset to the average after each sample, which makes
    it Lookahead with ``alpha = 1 - beta``. The readout is ``y``.
    """

    base: Base
    k: int
    beta: float
    feedback: bool = False

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(self, "k", _checks.integer("k", self.k, minimum=1))
        object.__setattr__(
            self, "beta", _checks.real("beta", self.beta, "[0, 1)", low=0, high=1, low_open=False)
        )
        if not isinstance(self.feedback, bool):
            raise ValueError(f"feedback must be True or False, got {self.feedback!r}")

    def label(self) -> str:
        fb = ", feedback" if self.feedback else ""
        return f"SMA(k={self.k}, beta={self.beta:g}{fb}) over {self.base.label()}"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        s = self.base.step(t, s, h, noise)
        if t % self.k:
            return s
        y = self.beta * s.y + (1.0 - self.beta) * s.x
        return s._replace(y=y, x=y if self.feedback else s.x)


@dataclass(frozen=True)
class EMA(_Averaging):
    """Per-step exponential moving average ``y <- beta*y + (1-beta)*x`` (Zhang et al.'s EMA):
    SMA with k = 1."""

    base: Base
    beta: float
    k: ClassVar[int] = 1  # every step

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(
            self, "beta", _checks.real("beta", self.beta, "[0, 1)", low=0, high=1, low_open=False)
        )

    def label(self) -> str:
        return f"EMA(beta={self.beta:g}) over {self.base.label()}"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        s = self.base.step(t, s, h, noise)
        return s._replace(y=self.beta * s.y + (1.0 - self.beta) * s.x)


@dataclass(frozen=True)
class Lookahead(_Averaging):
    """Lookahead (Zhang, Lucas, Hinton, Ba 2019): every k fast steps the slow weights move
    ``phi <- phi + alpha*(x - phi)`` and the fast weights restart from them, ``x <- phi``.

    Written in the paper's form on purpose; it equals ``SMA(feedback=True, beta=1-alpha)`` and the
    tests show it. The slow weights live in ``State.y`` and are the readout.
    """

    base: Base
    k: int
    alpha: float

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(self, "k", _checks.integer("k", self.k, minimum=1))
        object.__setattr__(
            self,
            "alpha",
            _checks.real("alpha", self.alpha, "(0, 1]", low=0, high=1, high_open=False),
        )

    def label(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha:g}) over {self.base.label()}"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        s = self.base.step(t, s, h, noise)
        if t % self.k:
            return s
        slow = s.y + self.alpha * (s.x - s.y)
        return s._replace(x=slow, y=slow)


@dataclass(frozen=True)
class Polyak(_Averaging):
    """Uniform (Polyak-Ruppert) averaging of every k-th iterate since the start:
    ``y_n = y_{n-1} + (x_{nk} - y_{n-1}) / n``. Its variance keeps falling like 1/n, so it has no
    steady state; :func:`nqm.closed_form.polyak_variance` gives the variance after n samples."""

    base: Base
    k: int = 1

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(self, "k", _checks.integer("k", self.k, minimum=1))

    def label(self) -> str:
        return f"Polyak(k={self.k}) over {self.base.label()}"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        s = self.base.step(t, s, h, noise)
        if t % self.k:
            return s
        return s._replace(y=s.y + (s.x - s.y) / (t // self.k))


Rule = SGD | Momentum | SMA | EMA | Lookahead | Polyak
