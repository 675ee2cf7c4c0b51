"""The training state: one object whose checkpoint holds CompressAI's keys and ours, and restores
every counter, the rules and the optimizers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from lic_train.rules import SMAConfig, STDETConfig  # noqa: E402
from lic_train.trainer.checkpoint import COMPRESSAI_KEYS  # noqa: E402
from lic_train.trainer.config import FitConfig  # noqa: E402
from lic_train.trainer.loop import build  # noqa: E402
from lic_train.trainer.state import COUNTERS, RULE_KEYS, random_states  # noqa: E402

CPU = torch.device("cpu")


def config(**rules) -> FitConfig:
    return FitConfig(N=8, M=12, patch_size=(64, 64), batch_size=2, device="cpu", **rules)


def test_a_checkpoint_has_compressai_keys_rule_keys_and_counters():
    state, _ = build(config(), CPU)
    saved = state.to_dict(config=config(), epoch=0, loss=1.0, world=1,
                          random_states=[random_states(CPU)])  # fmt: skip
    assert set(COMPRESSAI_KEYS) <= set(saved)
    assert all(saved[key] is None for key in RULE_KEYS)  # no SMA, no STDET
    assert set(COUNTERS) <= set(saved)


def test_load_restores_counters_rules_and_optimizers():
    rules = {"sma": SMAConfig(k=1), "stdet": STDETConfig(snapshot_every=1, snapshots=3, every=1)}
    state, _ = build(config(**rules), CPU)
    state.rules["sma"].step()  # one sample: the average exists
    state.step, state.wall_time, state.best_loss = 7, 3.5, 0.25
    state.final, state.best = {"raw": {"loss": 0.3}}, {"raw": 0.25}
    state.scheduler.step(1.0)
    saved = state.to_dict(config=config(**rules), epoch=3, loss=0.3, world=1,
                          random_states=[random_states(CPU)])  # fmt: skip
    assert saved["sma"]["samples"] == 1 and saved["stdet"]["steps"] == 0
    fresh, _ = build(config(**rules), CPU)
    fresh.load(saved)
    for name in COUNTERS:
        assert getattr(fresh, name) == getattr(state, name), name
    assert fresh.rules["sma"].samples == 1
    assert fresh.scheduler.state_dict() == state.scheduler.state_dict()
    assert (
        fresh.optimizer.state_dict()["param_groups"] == state.optimizer.state_dict()["param_groups"]
    )
