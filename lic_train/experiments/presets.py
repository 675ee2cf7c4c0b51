"""The presets of ``lic-train compare`` and of the training benchmarks: a base configuration, the
seeds, the lambdas, the SMA and STDET configurations the methods start from, and the methods.

``tiny`` is the default of ``lic-train compare`` (the field's step decay, and the EMA baseline);
``convergence`` and ``ablation`` are what ``benchmarks/convergence.py`` and
``benchmarks/ablations.py`` ran for the earlier, shorter results (docs/results/earlier-runs.md),
every knob they depend on pinned; ``stability`` and ``stability-2`` are the two rounds of
``benchmarks/stdet_stability.py`` (the candidates for a stable STDET, from which 0.2's defaults
were chosen, on the time-to-quality benchmark's configuration); ``mid`` is a mid-size model for a
GPU. The time-to-quality benchmark has its own protocols
(:mod:`lic_train.experiments.time_to_quality`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from lic_dynamics import validation
from lic_dynamics.validation import InvalidValue
from lic_train.rules import SMAConfig, STDETConfig
from lic_train.trainer.config import FitConfig

# The methods of ``lic-train compare`` and of the earlier, shorter benchmarks (the time-to-quality
# benchmark adds the EMA baseline, ``ema``).
COMPARED = ("adam", "sma", "stdet", "stdet+sma")


@dataclass(frozen=True)
class Preset:
    """A base configuration, the seeds, the lambdas and the methods of a comparison; ``sma`` and
    ``stdet`` are the configurations the methods start from (see
    :func:`~lic_train.experiments.methods.parse_method`)."""

    base: FitConfig
    seeds: tuple[int, ...]
    lambdas: tuple[float, ...]
    sma: SMAConfig
    stdet: STDETConfig
    methods: tuple[str, ...] = COMPARED

    def __post_init__(self) -> None:
        """Every seed and lambda checked, before anything trains; each given once (the same run
        twice would write into one folder and compare a method with itself)."""
        seeds = tuple(
            validation.integer("seeds", seed, minimum=0) for seed in _entries(self.seeds, "seeds")
        )
        lambdas = tuple(
            float(validation.interval_array("lambdas", value, "(0, inf)", low=0, high=math.inf))
            for value in _entries(self.lambdas, "lambdas")
        )
        for name, values in (("seeds", seeds), ("lambdas", lambdas), ("methods", self.methods)):
            _distinct(name, values)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "lambdas", lambdas)


def _entries(values: object, name: str) -> tuple:
    if not isinstance(values, tuple | list) or not values:
        raise InvalidValue(name, f"must be a non-empty list, got {values!r}")
    return tuple(values)


def _distinct(name: str, values: tuple) -> None:
    for index, value in enumerate(values):
        if value in values[:index]:
            raise InvalidValue(name, f"must each be given once, got {value!r} twice", index=index)


# The field's step decay (x0.1 at 90% of the run), as the time-to-quality benchmark trains.
_TINY_BASE = FitConfig(
    model="bmshj2018-hyperprior",
    N=32,
    M=48,
    patch_size=(128, 128),
    batch_size=8,
    steps=200,
    validate_every=20,
    checkpoint_every=200,
    log_every=10,
    learning_rate=1e-3,
    lr_schedule="multistep",
    device="auto",
)
_TINY_SMA = SMAConfig(k=5, beta=0.9)
_TINY_STDET = STDETConfig(
    snapshot_every=5,
    snapshots=10,
    every=20,
    samples=1000,
    fraction=0.1,
    max_embedded=0.6,
)
# The benchmarks' STDET, every knob the published results depend on pinned, so that they stay
# reproducible whatever the defaults become.
_MEASURED_STDET = replace(
    _TINY_STDET, modes=10, variant="sensitivity", granularity="scalar", trajectory="sma", min_r2=0.5,
    keep_sensitive=0.1, sensitivity_quantile=0.5, live_references=False, max_amplification=0.0,
    release_beyond=0.0, route_gradients=False,
)  # fmt: skip
# The earlier benchmarks' runs, as published (their plateau schedule never fired in 1000 steps).
_LONG = replace(_TINY_BASE, steps=1000, validate_every=50, checkpoint_every=1000, log_every=50,
                lr_schedule="plateau")  # fmt: skip
# The time-to-quality benchmark's CPU configuration (lic_train.experiments.time_to_quality):
# sized by measurement for 2 CPU cores, two trainings at once.
CPU_BASE = FitConfig(
    model="bmshj2018-hyperprior", N=32, M=48, patch_size=(128, 128), batch_size=8,
    learning_rate=1e-3, lr_schedule="multistep", lr_milestones=(0.9,), lr_gamma=0.1,
    steps=1200, validate_every=60, checkpoint_every=None, log_every=20, device="auto",
)  # fmt: skip
# 0.1's STDET, as the time-to-quality benchmark first measured it (the defaults then), pinned.
_STDET_V1 = STDETConfig(
    snapshot_every=10, snapshots=10, every=50, modes=10, samples=1000, fraction=0.1,
    max_embedded=0.6, min_r2=0.5, keep_sensitive=0.1, sensitivity_quantile=0.5,
    variant="sensitivity", granularity="scalar", trajectory="sma", live_references=False,
    max_amplification=0.0, release_beyond=0.0, route_gradients=False,
)  # fmt: skip
# The candidates for a stable STDET (0.2), one change at a time from _STDET_V1.
_LIVE = "live_references=true"
_BOUNDED = f"{_LIVE},modes=256,max_amplification=30"
STABILITY_METHODS = (
    "adam", "stdet", f"stdet:{_LIVE}", f"stdet:{_BOUNDED}", f"stdet:{_BOUNDED},release_beyond=1.0",
    f"stdet:{_BOUNDED},route_gradients=true", f"stdet:{_LIVE},modes=256,max_amplification=10",
)  # fmt: skip
# The second round, from the first's best (bounded leverage and routed gradients): release, a
# looser bound that embeds half the model, dummy embedding only, and a later start.
_ROUTED = f"{_BOUNDED},route_gradients=true"
_LOOSER = f"{_LIVE},modes=256,max_amplification=50,route_gradients=true"
STABILITY_2_METHODS = (
    "adam", f"stdet:{_ROUTED},release_beyond=1.0", f"stdet:{_LOOSER}",
    f"stdet:{_LOOSER},release_beyond=1.0", f"stdet:{_LOOSER},variant=dummy",
    f"stdet:{_LOOSER},snapshot_every=20",
)  # fmt: skip
# CompressAI's lambdas of qualities 2 to 5 (MSE).
LADDER = (0.0035, 0.0067, 0.013, 0.025)

PRESETS = {
    # A small hyperprior on the built-in photographs: under 5 minutes on 2 CPU cores.
    "tiny": Preset(base=_TINY_BASE, seeds=(0, 1, 2), lambdas=(0.01,), sma=_TINY_SMA,
                   stdet=_TINY_STDET, methods=("adam", "ema", "sma", "stdet", "stdet+sma")),
    # benchmarks/convergence.py: the same model, 5x longer, over four lambdas (BD-rate).
    "convergence": Preset(base=_LONG, seeds=(0, 1, 2), lambdas=LADDER, sma=_TINY_SMA,
                          stdet=_MEASURED_STDET),
    # A mid-size model for a GPU (not measured yet: no GPU was lent to this project so far):
    # benchmarks/convergence.py --preset mid --device cuda.
    "mid": Preset(
        base=FitConfig(model="mbt2018-mean", quality=3, patch_size=(256, 256), batch_size=16,
                       steps=3000, validate_every=100, checkpoint_every=1000, log_every=50,
                       learning_rate=1e-4, device="auto"),
        seeds=(0, 1, 2), lambdas=LADDER, sma=_TINY_SMA, stdet=STDETConfig(),
    ),
    # benchmarks/ablations.py: one lambda, the variants that decide the defaults.
    "ablation": Preset(
        base=_LONG, seeds=(0, 1, 2), lambdas=(0.0067,), sma=_TINY_SMA, stdet=_MEASURED_STDET,
        methods=(
            "adam",
            "stdet", "stdet:variant=true", "stdet:variant=dummy", "stdet:granularity=tensor",
            "stdet:modes=3", "stdet:modes=30", "stdet:fraction=0.3",
            "sma", "sma:feedback=true", "sma:k=1,beta=0.98", "sma:k=20,beta=0.5",
            "stdet+sma", "stdet+sma:trajectory=raw",
        ),
    ),
    # benchmarks/stdet_stability.py: the candidates for a stable STDET on the time-to-quality
    # benchmark's configuration (one lambda, full-length runs, no budget sweep).
    "stability": Preset(
        base=CPU_BASE, seeds=(0, 1, 2), lambdas=(0.0018,), sma=_TINY_SMA, stdet=_STDET_V1,
        methods=STABILITY_METHODS,
    ),
    "stability-2": Preset(
        base=CPU_BASE, seeds=(0, 1, 2), lambdas=(0.0018,), sma=_TINY_SMA, stdet=_STDET_V1,
        methods=STABILITY_2_METHODS,
    ),
}  # fmt: skip


def preset_dict(preset: Preset, methods: list[str]) -> dict:
    """The preset as ``results.json`` stores it, with the methods actually compared."""
    return {
        "seeds": list(preset.seeds),
        "lambdas": list(preset.lambdas),
        "base": preset.base.to_dict(),
        "sma": preset.sma.__dict__,
        "stdet": preset.stdet.__dict__,
        "methods": list(methods),
    }


def preset_from_dict(saved: dict) -> Preset:
    """The preset stored by :func:`preset_dict`."""
    return Preset(
        base=FitConfig.from_dict(saved["base"]),
        seeds=tuple(saved["seeds"]),
        lambdas=tuple(saved["lambdas"]),
        sma=SMAConfig(**saved["sma"]),
        stdet=STDETConfig(**saved["stdet"]),
        methods=tuple(saved["methods"]),
    )
