"""``lic-train compare``: the same seeds for every method, ratios to Adam, BD-rate over 4 lambdas,
the report files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from lic_train.compare import (  # noqa: E402
    PRESETS,
    Preset,
    compare,
    method_config,
    parse_method,
    rewrite_report,
    run_name,
    smoothed,
    steps_to_reach,
)
from lic_train.stdet import STDETConfig  # noqa: E402
from lic_train.train import FitConfig, SMAConfig  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 1)):
        (root / split).mkdir()
        for i in range(count):
            smooth = rng.random((10, 12, 3)).repeat(8, 0).repeat(8, 1)  # blocks: codable content
            Image.fromarray((smooth * 255).astype(np.uint8)).save(root / split / f"{i}.png")
    return root


def small_preset(lambdas: tuple[float, ...]) -> Preset:
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


def test_steps_to_reach_reads_the_trailing_mean_of_the_validations():
    curve = [(10, 6.0), (20, 3.0), (30, 0.0), (40, 3.0), (50, 1.5)]
    assert smoothed(curve) == [(10, 6.0), (20, 4.5), (30, 3.0), (40, 2.0), (50, 1.5)]
    assert steps_to_reach(curve, 3.0) == 30  # not 20: one validation at 3.0 is not enough
    assert steps_to_reach(curve, 1.5) == 50
    assert steps_to_reach(curve, 1.4) is None
    assert smoothed(curve, window=1) == curve


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
    assert parse_method("stdet") == ("stdet", {})
    assert parse_method("stdet+sma:trajectory=raw,k=10,beta=0.5,feedback=TRUE") == (
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
        ("lookahead", "method must be one of adam, sma, stdet, stdet\\+sma, got 'lookahead'"),
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


def test_a_comparison_over_four_lambdas_writes_its_report(folder, tmp_path):
    lambdas = (0.002, 0.01, 0.05, 0.25)
    results = compare(
        small_preset(lambdas), tmp_path, methods=["adam", "sma"], data=str(folder), jobs=2
    )
    runs = results["runs"]
    assert len(runs) == 2 * 2 * len(lambdas)
    adam, sma = results["methods"]["adam"], results["methods"]["sma"]
    assert adam["final_loss_ratio"]["mean"] == 1.0 and adam["time_ratio"]["mean"] == 1.0
    for run in runs:  # the ratio of each SMA run is against Adam with its seed and lambda
        if run["method"] == "sma":
            twin = next(
                r for r in runs
                if r["method"] == "adam" and (r["seed"], r["lambda"]) == (run["seed"], run["lambda"])
            )  # fmt: skip
            assert run["final_loss"] / twin["final_loss"] > 0
    ratios = [
        r["final_loss"] / next(a["final_loss"] for a in runs if a["method"] == "adam"
                               and (a["seed"], a["lambda"]) == (r["seed"], r["lambda"]))
        for r in runs if r["method"] == "sma"
    ]  # fmt: skip
    assert sma["final_loss_ratio"]["mean"] == pytest.approx(np.mean(ratios))
    bd_rate = sma["bd_rate_percent"]
    assert bd_rate["of"] == 2 and (bd_rate["mean"] is None or np.isfinite(bd_rate["mean"]))
    assert all(r["bpp"] > 0 for r in runs)
    per_lambda = results["by_lambda"]["sma"]
    assert list(per_lambda) == ["0.002", "0.01", "0.05", "0.25"]
    assert per_lambda["0.01"]["final_loss_ratio"]["mean"] == pytest.approx(
        np.mean([r for r, run in zip(ratios, [r for r in runs if r["method"] == "sma"],
                                     strict=True) if run["lambda"] == 0.01])
    )  # fmt: skip
    assert all(v == 1.0 for r in runs for _, v in r["trainable_curve"])
    for run in runs:  # each run's result is on disk before the summary
        saved = json.loads((tmp_path / "runs" / run["name"] / "result.json").read_text())
        assert saved["bpp"] == run["bpp"] and saved["curve"] == [list(c) for c in run["curve"]]
    for run in runs:  # the final loss is the trailing mean of the last validations
        assert run["final_loss"] == pytest.approx(np.mean([v for _, v in run["curve"][-3:]]))
    for name in ("report.md", "results.json", "loss_vs_step.png", "trainable_vs_step.png",
                 "rd_curves.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text())["methods"].keys() == {"adam", "sma"}
    report = (tmp_path / "report.md").read_text()
    assert "| adam |" in report and "| sma |" in report
    (tmp_path / "report.md").unlink()
    assert rewrite_report(tmp_path)["methods"] == json.loads(json.dumps(results["methods"]))
    assert (tmp_path / "report.md").read_text() == report


def test_bd_rate_of_a_curve_that_needs_ten_percent_more_bits_is_ten_percent():
    from lic_train.compare import _bd_rates

    preset = small_preset((0.001, 0.01, 0.1, 1.0))
    runs = []
    for seed in preset.seeds:
        for lmbda, (bpp, psnr) in zip(preset.lambdas, [(0.1, 25), (0.2, 28), (0.4, 31), (0.8, 34)],
                                      strict=True):  # fmt: skip
            runs.append({"method": "adam", "seed": seed, "lambda": lmbda, "bpp": bpp, "psnr": psnr})
            runs.append(
                {"method": "sma", "seed": seed, "lambda": lmbda, "bpp": 1.1 * bpp, "psnr": psnr}
            )
    result = _bd_rates(runs, ["adam", "sma"], preset)["sma"]
    assert result["mean"] == pytest.approx(10.0, abs=1e-6)
    assert result["n"] == 2
    assert _bd_rates(runs, ["adam", "sma"], small_preset((0.01,))) == {"sma": None}
    for run in runs:  # PSNR falls with the rate: no BD-rate, not a crash
        if run["method"] == "sma" and run["seed"] == 0:
            run["psnr"] = 40 - run["psnr"]
    result = _bd_rates(runs, ["adam", "sma"], preset)["sma"]
    assert result["n"] == 1 and result["of"] == 2
    for run in runs:  # equal PSNR at two rates (an untrained model): no BD-rate, not a crash
        if run["method"] == "sma" and run["seed"] == 1:
            run["psnr"] = 30
    assert _bd_rates(runs, ["adam", "sma"], preset)["sma"]["n"] == 0


def test_jobs_must_be_positive(folder, tmp_path):
    with pytest.raises(ValueError, match="jobs must be an integer >= 1, got 0"):
        compare(small_preset((0.01,)), tmp_path, data=str(folder), jobs=0)


def test_the_baseline_is_required(folder, tmp_path):
    with pytest.raises(ValueError, match="must include adam"):
        compare(small_preset((0.01,)), tmp_path, methods=["sma"], data=str(folder))


def test_the_summary_counts_steps_against_adams_own_steps_and_reports_unreached_runs():
    from lic_train.compare import _summarise

    preset = replace(small_preset((0.01,)), seeds=(0, 1))

    def run(method, seed, losses):
        return {"method": method, "seed": seed, "lambda": 0.01, "readout": "raw",
                "curve": [(10 * (i + 1), v) for i, v in enumerate(losses)],
                "trainable": 1.0, "seconds_per_step": 1.0, "peak_memory_bytes": 100,
                "bpp": 0.5, "psnr": 30.0}  # fmt: skip

    runs = [
        # Adam's trailing means: 9, 6, 4, 3, 3 -> final 3, first reached at step 40
        run("adam", 0, [9, 3, 0, 6, 3]),
        run("adam", 1, [9, 3, 0, 6, 3]),
        run("sma", 0, [3, 3, 3, 3, 3]),  # reaches 3 at step 10: a quarter of Adam's steps
        run("sma", 1, [9, 9, 9, 9, 9]),  # never reaches it
    ]
    row = _summarise(runs, ["adam", "sma"], preset)["methods"]["sma"]
    assert row["steps_ratio"] == {"mean": pytest.approx(1 / 4), "std": 0.0, "n": 1, "of": 2}
    assert row["steps_to_adam_final"]["n"] == 1 and row["steps_to_adam_final"]["mean"] == 10
    assert row["final_loss_ratio"]["mean"] == pytest.approx((1 + 3) / 2)
