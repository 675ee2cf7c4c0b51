"""The noisy quadratic model as a torch module, to run the trainer's update rules on the exact
problem that :mod:`nqm` solves (docs/theory.md). The
tests run SMA, modes and STDET on it and compare with :mod:`nqm`'s exact moments.

``loss = 1/2 * sum_i h_i (x_i - center_i)^2``; after ``backward()``, :meth:`NoisyQuadratic.add_noise`
adds ``eps_i = sign_i * sqrt(c_i / batch) * xi_g(i)`` to ``x.grad``, with one standard normal
``xi_g`` per noise group. With the default groups (one per coordinate) the noise is independent,
``Var(eps_i) = c_i / batch``, as in ``nqm.Problem``. Coordinates sharing a group and a curvature
share their dynamics: under SGD ``x_j - center_j - (s_j sqrt(c_j) / (s_r sqrt(c_r))) (x_r - center_r)``
decays like ``(1 - lr h)^t``, so their trajectories are affine images of each other, the structure
that modes (CMD) and STDET look for.
"""

from __future__ import annotations

import torch
from torch import nn


class NoisyQuadratic(nn.Module):
    """One float64 parameter ``x`` of shape (d,), started at ``x0`` (default: the center).

    Args:
        h: curvatures, (d,) > 0.
        c: per-example gradient-noise variances, (d,) >= 0.
        batch: batch size B; the noise variance per step is ``c / B``.
        center: minimiser (default 0).
        group: noise group of each coordinate, int (d,) (default: ``arange(d)``).
        sign: +-1 per coordinate, the sign of its share of the group's noise (default +1).
        x0: initial point (default: the center).
    """

    def __init__(
        self,
        h: torch.Tensor,
        c: torch.Tensor,
        batch: int = 1,
        *,
        center: torch.Tensor | None = None,
        group: torch.Tensor | None = None,
        sign: torch.Tensor | None = None,
        x0: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        h = torch.as_tensor(h, dtype=torch.float64)
        c = torch.as_tensor(c, dtype=torch.float64)
        if h.ndim != 1 or c.shape != h.shape:
            raise ValueError(
                f"h and c must be 1-D of one length, got {tuple(h.shape)}, {tuple(c.shape)}"
            )
        if not (torch.isfinite(h) & (h > 0)).all():
            raise ValueError(f"h must be finite and > 0 in every coordinate, got {h.tolist()[:8]}")
        if not (torch.isfinite(c) & (c >= 0)).all():
            raise ValueError(f"c must be finite and >= 0 in every coordinate, got {c.tolist()[:8]}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        d = h.numel()
        center = (
            torch.zeros(d, dtype=torch.float64)
            if center is None
            else torch.as_tensor(center, dtype=torch.float64)
        )
        if group is not None and torch.as_tensor(group).is_floating_point():
            raise ValueError(f"group must hold integers, got {torch.as_tensor(group).tolist()[:8]}")
        group = torch.arange(d) if group is None else torch.as_tensor(group, dtype=torch.long)
        sign = (
            torch.ones(d, dtype=torch.float64)
            if sign is None
            else torch.as_tensor(sign, dtype=torch.float64)
        )
        for name, value in (("center", center), ("group", group), ("sign", sign)):
            if value.shape != (d,):
                raise ValueError(f"{name} must have shape ({d},), got {tuple(value.shape)}")
        if group.min() < 0:
            raise ValueError(f"group must hold indices >= 0, got {int(group.min())}")
        self.register_buffer("h", h)
        self.register_buffer("center", center)
        self.register_buffer("group", group)
        self.register_buffer("noise_scale", sign * (c / batch).sqrt())
        start = center if x0 is None else torch.as_tensor(x0, dtype=torch.float64)
        if start.shape != (d,):
            raise ValueError(f"x0 must have shape ({d},), got {tuple(start.shape)}")
        self.x = nn.Parameter(start.clone())

    def forward(self) -> torch.Tensor:
        """The loss ``1/2 sum h (x - center)^2`` (a scalar)."""
        return 0.5 * (self.h * (self.x - self.center) ** 2).sum()

    @torch.no_grad()
    def add_noise(self, generator: torch.Generator | None = None) -> None:
        """Add one draw of the gradient noise to ``x.grad`` (call after ``backward()``)."""
        xi = torch.randn(
            int(self.group.max()) + 1,
            dtype=torch.float64,
            device=self.x.device,
            generator=generator,
        )
        self.x.grad.add_(self.noise_scale * xi[self.group])
