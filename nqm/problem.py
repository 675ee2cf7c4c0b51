"""The noisy quadratic model (Zhang et al. 2019, arXiv 1907.04164, section 3).

Loss ``L(x) = 1/2 * sum_i h_i x_i^2``; a stochastic gradient is ``g_i = h_i x_i + eps_i`` with
``eps_i ~ N(0, c_i / B)`` independent across coordinates and steps. Coordinates evolve independently,
so every array here has shape ``(d,)`` and every engine works coordinate-wise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lic_dynamics import validation


@dataclass(frozen=True, eq=False)
class Problem:
    """One NQM instance.

    Attributes:
        h: curvatures, shape (d,), each > 0.
        c: gradient-noise variance of one example, shape (d,) or scalar, each >= 0.
        batch: batch size B; the noise variance per step is ``sigma2 = c / B``.
        mean0: E[x_0], shape (d,) or scalar.
        var0: Var[x_0], shape (d,) or scalar, each >= 0 (x_0 is Gaussian).

    Examples:
        >>> problem = Problem(h=[1.0, 0.5], c=2.0, batch=4)
        >>> problem.dim, problem.sigma2.tolist()
        (2, [0.5, 0.5])
        >>> bias, variance = problem.expected_loss(np.array([1.0, 2.0]), np.array([0.1, 0.2]))
        >>> round(float(bias), 6), round(float(variance), 6)
        (1.5, 0.1)
        >>> Problem(h=[1.0, 0.0], c=1.0)
        Traceback (most recent call last):
        ...
        lic_dynamics.validation.InvalidValue: h[1] must be finite and > 0, got 0.0
    """

    h: np.ndarray
    c: np.ndarray
    batch: int = 1
    mean0: np.ndarray | float = 0.0
    var0: np.ndarray | float = 1.0

    def __post_init__(self) -> None:
        h = np.atleast_1d(validation.array("h", self.h, positive=True))
        d = h.size
        c = _broadcast("c", validation.array("c", self.c, positive=False), d)
        mean0 = np.asarray(self.mean0, dtype=np.float64)
        if not np.isfinite(mean0).all():
            raise validation.InvalidValue("mean0", f"must be finite, got {mean0!r}")
        mean0 = _broadcast("mean0", mean0, d)
        var0 = _broadcast("var0", validation.array("var0", self.var0, positive=False), d)
        for name, value in (("h", h), ("c", c), ("mean0", mean0), ("var0", var0)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "batch", validation.integer("batch", self.batch, minimum=1))

    @property
    def dim(self) -> int:
        return self.h.size

    @property
    def sigma2(self) -> np.ndarray:
        """Gradient-noise variance per step, ``c / B``, shape (d,)."""
        return self.c / self.batch

    def expected_loss(self, mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
        """``(bias, variance)`` parts of ``E[L] = 1/2 sum h (m^2 + V)`` for moments of shape
        (..., d); the expected loss is their sum."""
        return 0.5 * (mean**2) @ self.h, 0.5 * var @ self.h


def standard(dim: int = 10_000, batch: int = 1, mean0: float = 0.0, var0: float = 1.0) -> Problem:
    """Zhang et al.'s instance: ``h_i = 1/i``, ``c_i = h_i`` for i = 1..dim, ``x_0 ~ N(mean0, var0)``.

    Examples:
        >>> problem = standard(4, batch=2)
        >>> problem.h.round(4).tolist()
        [1.0, 0.5, 0.3333, 0.25]
        >>> problem.sigma2.round(4).tolist()
        [0.5, 0.25, 0.1667, 0.125]
    """
    dim = validation.integer("dim", dim, minimum=1)
    h = 1.0 / np.arange(1, dim + 1, dtype=np.float64)
    return Problem(h=h, c=h, batch=batch, mean0=mean0, var0=var0)


def _broadcast(name: str, value: np.ndarray, d: int) -> np.ndarray:
    if value.ndim == 0 or value.size == 1:
        return np.full(d, float(value.reshape(-1)[0]))
    if value.shape != (d,):
        raise validation.InvalidValue(
            name, f"must be a scalar or have shape ({d},) like h, got {value.shape}"
        )
    return value.astype(np.float64, copy=True)
