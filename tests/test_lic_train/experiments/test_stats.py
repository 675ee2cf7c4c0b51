"""The statistics of a comparison: trailing means, BD-rate, and steps counted against Adam's own
steps with unreached runs reported."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("torch")

from lic_train.experiments.stats import (
    bd_rates,
    largest_excursion,
    smoothed,
    steps_to_reach,
    summarise,
)


def test_steps_to_reach_reads_the_trailing_mean_of_the_validations():
    curve = [(10, 6.0), (20, 3.0), (30, 0.0), (40, 3.0), (50, 1.5)]
    assert smoothed(curve) == [(10, 6.0), (20, 4.5), (30, 3.0), (40, 2.0), (50, 1.5)]
    assert steps_to_reach(curve, 3.0) == 30  # not 20: one validation at 3.0 is not enough
    assert steps_to_reach(curve, 1.5) == 50
    assert steps_to_reach(curve, 1.4) is None
    assert smoothed(curve, window=1) == curve


def test_bd_rate_of_a_curve_that_needs_ten_percent_more_bits_is_ten_percent(small_preset):
    preset = small_preset((0.001, 0.01, 0.1, 1.0))
    runs = []
    for seed in preset.seeds:
        for lmbda, (bpp, psnr) in zip(preset.lambdas, [(0.1, 25), (0.2, 28), (0.4, 31), (0.8, 34)],
                                      strict=True):  # fmt: skip
            runs.append({"method": "adam", "seed": seed, "lambda": lmbda, "bpp": bpp, "psnr": psnr})
            runs.append(
                {"method": "sma", "seed": seed, "lambda": lmbda, "bpp": 1.1 * bpp, "psnr": psnr}
            )
    result = bd_rates(runs, ["adam", "sma"], preset)["sma"]
    assert result["mean"] == pytest.approx(10.0, abs=1e-6)
    assert result["n"] == 2
    assert bd_rates(runs, ["adam", "sma"], small_preset((0.01,))) == {"sma": None}
    for run in runs:  # PSNR falls with the rate: no BD-rate, not a crash
        if run["method"] == "sma" and run["seed"] == 0:
            run["psnr"] = 40 - run["psnr"]
    result = bd_rates(runs, ["adam", "sma"], preset)["sma"]
    assert result["n"] == 1 and result["of"] == 2
    for run in runs:  # equal PSNR at two rates (an untrained model): no BD-rate, not a crash
        if run["method"] == "sma" and run["seed"] == 1:
            run["psnr"] = 30
    assert bd_rates(runs, ["adam", "sma"], preset)["sma"]["n"] == 0


def test_the_summary_counts_steps_against_adams_own_steps_and_reports_unreached_runs(small_preset):
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
    row = summarise(runs, ["adam", "sma"], preset)["methods"]["sma"]
    assert row["steps_ratio"] == {"mean": pytest.approx(1 / 4), "std": 0.0, "n": 1, "of": 2}
    assert row["steps_to_adam_final"]["n"] == 1 and row["steps_to_adam_final"]["mean"] == 10
    assert row["final_loss_ratio"]["mean"] == pytest.approx((1 + 3) / 2)


def test_largest_excursion_is_the_largest_rise_above_the_best_before_it_after_a_step():
    curve = [(10, 4.0), (20, 2.0), (30, 3.0), (40, 1.0), (50, 1.5)]
    assert largest_excursion(curve, after=10) == pytest.approx(0.5)  # 3 over 2, 1.5 over 1
    assert largest_excursion(curve, after=40) == pytest.approx(0.5)  # 1.5 over 1
    assert largest_excursion(curve[:4], after=40) == 0.0  # only a fall from step 40 on
    assert largest_excursion(curve, after=60) is None  # nothing from it on
    # The validation at `after` counts (it follows the event), and the best before a validation
    # counts validations before `after` too.
    assert largest_excursion([(10, 1.0), (20, 5.0), (30, 2.0)], after=20) == pytest.approx(4.0)
    assert largest_excursion([(10, 1.0), (20, 5.0), (30, 2.0)], after=30) == pytest.approx(1.0)
