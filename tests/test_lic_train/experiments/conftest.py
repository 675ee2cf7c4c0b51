"""A comparison small enough to train in seconds, shared by the tests of the experiments."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the tests that use the fixture skip without torch
    from lic_train.experiments import Preset


def _small_preset(lambdas: tuple[float, ...]) -> Preset:
    from lic_train.experiments import Preset
    from lic_train.rules import SMAConfig, STDETConfig
    from lic_train.trainer.config import FitConfig

    return Preset(
        base=FitConfig(model="bmshj2018-hyperprior", N=8, M=12, patch_size=(64, 64),
                       batch_size=2, steps=6, validate_every=2, log_every=2, device="cpu",
                       learning_rate=1e-3),
        seeds=(0, 1),
        lambdas=lambdas,
        sma=SMAConfig(k=1, beta=0.5),
        stdet=STDETConfig(snapshot_every=1, snapshots=3, every=1, samples=50, modes=2,
                          fraction=0.3, max_embedded=0.6),
    )  # fmt: skip


@pytest.fixture
def small_preset() -> Callable[[tuple[float, ...]], Preset]:
    """``small_preset(lambdas)``: a tiny hyperprior, 6 steps, seeds 0 and 1, at ``lambdas``."""
    return _small_preset
