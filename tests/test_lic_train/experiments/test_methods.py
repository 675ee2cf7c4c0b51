"""Method specs: the configurations of the methods differ only in the method, overrides take the
types of their fields, bad specs are named, and the benchmark presets are valid."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("torch")

from lic_train.experiments import PRESETS, parse_method
from lic_train.experiments.methods import method_config, run_name
from lic_train.rules import SMAConfig


def test_method_configs_differ_only_in_the_method():
    preset = PRESETS["tiny"]
    configs = {m: method_config(preset, m, seed=1, lmbda=0.02) for m in ("adam", "stdet+sma")}
    assert configs["adam"].sma is None and configs["adam"].stdet is None
    assert configs["stdet+sma"].sma == preset.sma
    assert configs["stdet+sma"].stdet.seed == 1
    strip = {"sma": None, "stdet": None}
    assert replace(configs["adam"], **strip) == replace(configs["stdet+sma"], **strip)
    with pytest.raises(ValueError, match="method must be one of"):
        method_config(preset, "swa", seed=0, lmbda=0.01)


def test_a_method_spec_overrides_the_fields_it_names_with_their_types():
    method = parse_method("stdet")
    assert (method.name, method.overrides) == ("stdet", {})
    method = parse_method("stdet+sma:trajectory=raw,k=10,beta=0.5,feedback=TRUE")
    assert (method.name, method.overrides) == (
        "stdet+sma",
        {"trajectory": "raw", "k": 10, "beta": 0.5, "feedback": True},
    )
    preset = PRESETS["tiny"]
    config = method_config(preset, "stdet:modes=3,variant=dummy", seed=2, lmbda=0.01)
    assert config.sma is None
    assert config.stdet == replace(preset.stdet, modes=3, variant="dummy", seed=2)
    config = method_config(preset, "sma:k=1,beta=0.98", seed=0, lmbda=0.01)
    assert config.sma == SMAConfig(k=1, beta=0.98) and config.stdet is None
    assert run_name("stdet+sma:k=1,beta=0.98", 0, 0.01) == "stdet-sma_k1_beta0.98_lambda0.01_seed0"


def test_ema_is_torch_emas_per_step_average_whatever_the_presets_sma():
    preset = PRESETS["tiny"]
    assert preset.sma.k != 1
    config = method_config(preset, "ema", seed=1, lmbda=0.01)
    assert config.sma == SMAConfig(k=1, beta=0.999, warmup=True) and config.stdet is None
    config = method_config(preset, "ema:beta=0.99", seed=1, lmbda=0.01)
    assert config.sma == SMAConfig(k=1, beta=0.99, warmup=True)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("adam:k=5", r"'k=5' must be FIELD=VALUE with a field of adam \(none\)"),
        ("stdet:k=5", r"'k=5' must be FIELD=VALUE with a field of stdet \(snapshot_every, "),
        ("stdet:seed=3", "'seed=3' must be FIELD=VALUE"),
        ("stdet:modes", "'modes' must be FIELD=VALUE"),
        ("sma:feedback=yes", "feedback must be true or false, got 'yes'"),
        ("sma:k=two", "k must be int, got 'two'"),
        ("sma:k=0", r"method 'sma:k=0': k must be an integer in \[1"),
        ("stdet:variant=both", "method 'stdet:variant=both': variant must be one of"),
        ("lookahead", "method must be one of adam, ema, sma, stdet, stdet\\+sma, got 'lookahead'"),
    ],
)
def test_a_bad_method_spec_is_named(spec, match):
    with pytest.raises(ValueError, match=match):
        method_config(PRESETS["tiny"], spec, seed=0, lmbda=0.01)


def test_the_benchmark_presets_are_valid():
    for preset in PRESETS.values():
        assert preset.methods[0] == "adam"
        for spec in preset.methods:
            method_config(preset, spec, seed=0, lmbda=preset.lambdas[0])
    assert len(PRESETS["convergence"].lambdas) >= 4 and len(PRESETS["convergence"].seeds) >= 3
