"""STDET's configuration and the kinds of a tracked scalar (docs/rules.md; the measurements behind
the defaults: docs/results/stdet-stability.md, and for the knobs the stability rounds did not
revisit, docs/results/earlier-runs.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lic_dynamics import validation
from lic_dynamics.validation import InvalidValue

VARIANTS = ("sensitivity", "true", "dummy")
GRANULARITIES = ("scalar", "tensor")
TRAJECTORIES = ("sma", "raw")
MAX_MODES = 256  # as in CMD; keeps the clustering and the reference gathers small
TRAINABLE, TRUE, DUMMY = 0, 1, 2  # the kind of a tracked scalar (FrozenLines.kind)


@dataclass(frozen=True)
class STDETConfig:
    """STDET's knobs; every field is validated on construction.

    The defaults (since 0.2) are the most stable formalisation measured on the time-to-quality
    benchmark's configuration (``benchmarks/stdet_stability.py``, two rounds of 3 seeds;
    docs/results/stdet-stability.md): live references, 256 modes, ``||a||_2 <= 50`` behind one
    reference, routed gradients and dummy embedding ended at 1.020 +- 0.017 of Adam's validation
    loss with 0.448 of the parameters trained, where 0.1's STDET (10 modes, sensitivity-aware, no
    bound) ended at 1.218 +- 0.083 with 0.40.

    Attributes:
        snapshot_every: s, steps between observations of the trajectory (>= 1).
        snapshots: T, observations before the fit (>= 3); the warm-up is ``s * T`` steps.
        every: L, steps between embedding events (>= 1).
        modes: M, the most modes, in [1, 256].
        samples: K, scalars sampled for the clustering (>= 2).
        fraction: share of the tracked scalars chosen per event, in (0, 1].
        max_embedded: cap on the embedded share of the tracked scalars, in (0, 1].
        min_r2: floor on a candidate's R^2, in [0, 1].
        keep_sensitive: share of each event's chosen scalars, the most sensitive, left trainable,
            in [0, 1).
        sensitivity_quantile: in the "sensitivity" variant, the share of each event's embedded
            scalars, the least sensitive, that are embedded true (the rest dummy), in [0, 1].
        variant: "sensitivity", "true" or "dummy".
        granularity: "scalar" (CMD's choice: any scalar may be embedded) or "tensor" (whole
            tensors only, ranked by their mean drift, so that each embedded tensor leaves the
            optimizer and autograd at once: the choice that saves compute).
        trajectory: what CMD observes: "sma" (the SMA average, when an SMA runs; the default) or
            "raw" (the optimizer's weights). Measured with SMA over 4 lambdas x 3 seeds
            (``benchmarks/results/convergence*``): "sma" ended at 1.11 +- 0.49x Adam's validation
            loss, "raw" at 1.77 +- 2.47x; at one lambda (0.0067, the ablation) "raw" looked
            better, 0.86x against 1.41x.
        live_references: cluster only the scalars that moved during the warm-up, so that no mode
            is wasted on a reference that cannot move (:class:`~lic_train.rules.modes.Modes`).
        max_amplification: the most ``||a||_2`` over one reference's embedded members (>= 0; 0:
            unbounded). One step ``dr`` of a reference moves its members by ``||a||_2 |dr|`` in
            L2, in a direction its own gradient chose: this bounds that leverage. Scalar
            granularity only (whole tensors are chosen without it).
        release_beyond: release (make trainable again) the embedded scalars whose reference has
            left the range their line was fitted on by more than this many times the range's
            width (>= 0; 0: never). Observations and events then go on after the cap, so the
            lines of released scalars are refitted on the longer trajectory.
        route_gradients: give each reference the gradient of its mode, the reparameterisation
            ``w = a r + b`` seen by the chain rule, in the least-squares step's scale:
            ``(g_r + sum_i a_i g_i) / (1 + sum_i a_i^2)`` over its embedded members that are
            still in autograd (a tensor embedded whole computes no gradient).
        seed: seed of the clustering sample (>= 0).
    """

    snapshot_every: int = 10
    snapshots: int = 10
    every: int = 50
    modes: int = 256
    samples: int = 1000
    fraction: float = 0.1
    max_embedded: float = 0.6
    min_r2: float = 0.5
    keep_sensitive: float = 0.1
    sensitivity_quantile: float = 0.5
    variant: str = "dummy"
    granularity: str = "scalar"
    trajectory: str = "sma"
    live_references: bool = True
    max_amplification: float = 50.0
    release_beyond: float = 0.0
    route_gradients: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum, maximum in (
            ("snapshot_every", 1, validation.MAX_INTEGER),
            ("snapshots", 3, validation.MAX_INTEGER),
            ("every", 1, validation.MAX_INTEGER),
            ("modes", 1, MAX_MODES),
            ("samples", 2, validation.MAX_INTEGER),
            ("seed", 0, validation.MAX_INTEGER),
        ):
            value = validation.integer(name, getattr(self, name), minimum=minimum, maximum=maximum)
            object.__setattr__(self, name, value)
        for name, allowed, low_open, high_open in (
            ("fraction", "(0, 1]", True, False),
            ("max_embedded", "(0, 1]", True, False),
            ("min_r2", "[0, 1]", False, False),
            ("keep_sensitive", "[0, 1)", False, True),
            ("sensitivity_quantile", "[0, 1]", False, False),
        ):
            value = validation.real(
                name, getattr(self, name), allowed, low=0, high=1,
                low_open=low_open, high_open=high_open,
            )  # fmt: skip
            object.__setattr__(self, name, value)
        for name in ("max_amplification", "release_beyond"):
            value = validation.real(
                name, getattr(self, name), "[0, inf)", low=0, high=math.inf, low_open=False
            )
            object.__setattr__(self, name, value)
        for name in ("live_references", "route_gradients"):
            object.__setattr__(self, name, validation.flag(name, getattr(self, name)))
        if self.every < self.snapshot_every:
            # Sensitivity is read on observation steps: every window between events needs one.
            raise InvalidValue(
                "every",
                f"must be at least snapshot_every ({self.snapshot_every}), got {self.every}",
            )
        validation.choice("variant", self.variant, VARIANTS)
        validation.choice("granularity", self.granularity, GRANULARITIES)
        validation.choice("trajectory", self.trajectory, TRAJECTORIES)

    @property
    def warmup(self) -> int:
        """Optimizer steps before the fit (and the first possible event at ``warmup + every``)."""
        return self.snapshot_every * self.snapshots
