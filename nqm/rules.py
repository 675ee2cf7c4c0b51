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

from lic_dynamics import validation


class State(NamedTuple):
    """Per-coordinate state; arrays of one shape (chains x d for Monte Carlo).

    Examples:
        >>> s = State(x=np.array([1.0, 2.0]), y=np.array([1.0, 2.0]), v=np.zeros(2))
        >>> State._fields, s._replace(x=np.array([0.5, 1.0])).x.tolist()
        (('x', 'y', 'v'), [0.5, 1.0])
    """

    x: np.ndarray  # fast weights
    y: np.ndarray  # average / slow weights (the readout of averaging rules)
    v: np.ndarray  # heavy-ball momentum buffer


STATE_NAMES = State._fields


def _check_precondition(value: object) -> float:
    return _signless(
        validation.real(
            "precondition", value, "[0, 1]", low=0, high=1, low_open=False, high_open=False
        )
    )


def _signless(value: float) -> float:
    """``value`` with -0.0 made 0.0 (``-0.0 + 0.0`` is 0.0), so that a label never shows ``-0``."""
    return value + 0.0


def _precondition_label(power: float) -> str:
    return f", P=h^-{power:g}" if power else ""


class _Preconditioned:
    """What the base optimizers share: a diagonal preconditioner ``P = h^(-precondition)`` (Zhang
    et al. 2019 and their notebook: ``precondition = 0`` is plain SGD, 1 is Newton's method, values
    in between stand for preconditioners of increasing quality such as Adam or K-FAC). The step of
    coordinate i is ``lr * P_i``, so every formula for the plain optimizer holds with
    ``lr -> lr * h_i^(-precondition)`` (``proofs/09-preconditioning.md``)."""

    lr: float
    precondition: float

    def step_size(self, h: np.ndarray) -> np.ndarray:
        """``lr * h^(-precondition)``, the effective learning rate of each coordinate, shape of h."""
        # h**0 keeps h's shape (and lets sympy run the rules on symbols, as proofs/ does)
        return self.lr * (h ** (-self.precondition) if self.precondition else h**0)

    def rho(self, h: np.ndarray) -> np.ndarray:
        """``rho = lr * P * h = lr * h^(1 - precondition)``, the step times the curvature
        (dimensionless; stability needs ``0 < rho < 2`` for SGD), shape of h. It is
        ``step_size(h) * h`` where that is a positive finite float, and ``lr * h^(1 - p)`` where
        the step size alone overflows or underflows (``h = 5e-324``, ``p = 1``: rho is ``lr``).

        Examples:
            >>> rule = SGD(0.5, precondition=1.0)
            >>> rule.rho(np.array([5e-324, 1e300])).tolist()  # lr*P alone is inf at h = 5e-324
            [0.5, 0.5]
        """
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            rho = self.step_size(h) * h
            wrong = ~(np.isfinite(rho) & (rho > 0))
            if np.any(wrong):
                safe = self.lr * np.asarray(h, dtype=np.float64) ** (1.0 - self.precondition)
                rho = np.where(wrong, safe, rho)
        return rho


@dataclass(frozen=True)
class SGD(_Preconditioned):
    """``x <- x - lr * P * g`` with the diagonal preconditioner ``P = h^(-precondition)``
    (``precondition = 0``, the default, is plain SGD).

    Examples:
        >>> rule = SGD(0.1)
        >>> rule.label(), rule.states, rule.readout
        ('SGD(lr=0.1)', ('x',), 'x')
        >>> s = State(x=np.array([1.0]), y=np.array([1.0]), v=np.zeros(1))
        >>> rule.step(1, s, h=np.array([2.0]), noise=np.array([0.5])).x.tolist()  # 1 - 0.1 * 2.5
        [0.75]
        >>> SGD(-1.0)
        Traceback (most recent call last):
        ...
        lic_dynamics.validation.InvalidValue: lr must be in (0, inf), got -1.0
        >>> rule = SGD(0.1, precondition=0.5)  # P = h^-0.5: step 0.1 * 4**-0.5 = 0.05 at h = 4
        >>> rule.label(), rule.step_size(np.array([4.0, 1.0])).tolist()
        ('SGD(lr=0.1, P=h^-0.5)', [0.05, 0.1])
        >>> rule.step(1, s, h=np.array([4.0]), noise=np.array([0.0])).x.tolist()  # 1 - 0.05 * 4
        [0.8]
    """

    lr: float
    precondition: float = 0.0
    states: ClassVar[tuple[str, ...]] = ("x",)
    readout: ClassVar[str] = "x"
    period: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "lr", validation.real("lr", self.lr, "(0, inf)", low=0, high=np.inf)
        )
        object.__setattr__(self, "precondition", _check_precondition(self.precondition))

    @property
    def base(self) -> SGD:
        return self

    def label(self) -> str:
        return f"SGD(lr={self.lr:g}{_precondition_label(self.precondition)})"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        return s._replace(x=s.x - self.step_size(h) * (h * s.x + noise))


@dataclass(frozen=True)
class Momentum(_Preconditioned):
    """Heavy ball: ``v <- mu*v - lr*P*g``, ``x <- x + v`` (PyTorch's SGD with momentum, up to the
    scaling of v), with the diagonal preconditioner ``P = h^(-precondition)`` (default 0: none).

    Examples:
        >>> rule = Momentum(0.1, 0.9)
        >>> s = State(x=np.array([1.0]), y=np.array([1.0]), v=np.zeros(1))
        >>> s = rule.step(1, s, h=np.array([1.0]), noise=np.array([0.0]))
        >>> rule.label(), s.x.tolist(), s.v.tolist()
        ('Momentum(lr=0.1, mu=0.9)', [0.9], [-0.1])
    """

    lr: float
    mu: float
    precondition: float = 0.0
    states: ClassVar[tuple[str, ...]] = ("x", "v")
    readout: ClassVar[str] = "x"
    period: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "lr", validation.real("lr", self.lr, "(0, inf)", low=0, high=np.inf)
        )
        object.__setattr__(
            self, "mu", _signless(validation.real("mu", self.mu, "(-1, 1)", low=-1, high=1))
        )
        object.__setattr__(self, "precondition", _check_precondition(self.precondition))

    @property
    def base(self) -> Momentum:
        return self

    def label(self) -> str:
        return f"Momentum(lr={self.lr:g}, mu={self.mu:g}{_precondition_label(self.precondition)})"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        v = self.mu * s.v - self.step_size(h) * (h * s.x + noise)
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

    Examples:
        >>> rule = SMA(SGD(0.5), k=2, beta=0.9)
        >>> rule.label(), rule.states, rule.readout, rule.period
        ('SMA(k=2, beta=0.9) over SGD(lr=0.5)', ('x', 'y'), 'y', 2)
        >>> s = State(x=np.array([1.0]), y=np.array([1.0]), v=np.zeros(1))
        >>> for t in (1, 2):  # noiseless, h = 1: x halves every step; y moves on step 2 only
        ...     s = rule.step(t, s, np.array([1.0]), np.array([0.0]))
        ...     print(t, s.x.tolist(), s.y.tolist())
        1 [0.5] [1.0]
        2 [0.25] [0.925]
    """

    base: Base
    k: int
    beta: float
    feedback: bool = False

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(self, "k", validation.integer("k", self.k, minimum=1))
        object.__setattr__(
            self,
            "beta",
            _signless(validation.real("beta", self.beta, "[0, 1)", low=0, high=1, low_open=False)),
        )
        validation.flag("feedback", self.feedback)

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
    SMA with k = 1.

    Examples:
        >>> rule = EMA(SGD(0.5), 0.9)
        >>> s = State(x=np.array([1.0]), y=np.array([1.0]), v=np.zeros(1))
        >>> s = rule.step(1, s, np.array([1.0]), np.array([0.0]))
        >>> rule.label(), rule.period, s.x.tolist(), s.y.tolist()
        ('EMA(beta=0.9) over SGD(lr=0.5)', 1, [0.5], [0.95])
    """

    base: Base
    beta: float
    k: ClassVar[int] = 1  # every step

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(
            self,
            "beta",
            _signless(validation.real("beta", self.beta, "[0, 1)", low=0, high=1, low_open=False)),
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

    Examples:
        >>> rule = Lookahead(SGD(0.5), k=2, alpha=0.5)
        >>> twin = SMA(SGD(0.5), k=2, beta=0.5, feedback=True)
        >>> s = t_s = State(x=np.array([1.0]), y=np.array([1.0]), v=np.zeros(1))
        >>> for t in (1, 2):
        ...     s = rule.step(t, s, np.array([1.0]), np.array([0.0]))
        ...     t_s = twin.step(t, t_s, np.array([1.0]), np.array([0.0]))
        ...     print(t, s.x.tolist(), s.y.tolist(), t_s.y.tolist())
        1 [0.5] [1.0] [1.0]
        2 [0.625] [0.625] [0.625]
    """

    base: Base
    k: int
    alpha: float

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(self, "k", validation.integer("k", self.k, minimum=1))
        object.__setattr__(
            self,
            "alpha",
            validation.real("alpha", self.alpha, "(0, 1]", low=0, high=1, high_open=False),
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
    steady state; :func:`nqm.closed_form.polyak_variance` gives the variance after n samples.

    Examples:
        >>> rule = Polyak(SGD(0.5))
        >>> s = State(x=np.array([1.0]), y=np.array([1.0]), v=np.zeros(1))
        >>> for t in (1, 2):  # y is the mean of x_1, ..., x_t
        ...     s = rule.step(t, s, np.array([1.0]), np.array([0.0]))
        ...     print(t, s.x.tolist(), s.y.tolist())
        1 [0.5] [0.5]
        2 [0.25] [0.375]
        >>> rule.label()
        'Polyak(k=1) over SGD(lr=0.5)'
    """

    base: Base
    k: int = 1

    def __post_init__(self) -> None:
        _check_base(self.base)
        object.__setattr__(self, "k", validation.integer("k", self.k, minimum=1))

    def label(self) -> str:
        return f"Polyak(k={self.k}) over {self.base.label()}"

    def step(self, t: int, s: State, h: np.ndarray, noise: np.ndarray) -> State:
        s = self.base.step(t, s, h, noise)
        if t % self.k:
            return s
        return s._replace(y=s.y + (s.x - s.y) / (t // self.k))


Rule = SGD | Momentum | SMA | EMA | Lookahead | Polyak
