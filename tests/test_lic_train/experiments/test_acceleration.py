"""lic_train.experiments.acceleration: the quality of real bit streams, the acceleration factor read
off a quality-versus-budget curve, its bootstrap interval over seeds, and the claim's BD-rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("torch")

from lic_train.experiments.acceleration import (
    acceleration,
    bd_rates_of_claim,
    crossing,
    rd_loss,
    rises_with_rate,
    stability,
    summarise,
)

BUDGETS = [0.2, 0.4, 0.6, 0.8, 1.0]


def test_rd_loss_is_compressais_loss_on_real_rates():
    # PSNR 30 dB: MSE = 255^2 * 1e-3 in 8-bit units, i.e. 1e-3 on [0, 1].
    images = [{"bpp": 0.5, "psnr": 30.0}, {"bpp": 0.7, "psnr": 20.0}]
    expected = ((0.01 * 255**2 * 1e-3 + 0.5) + (0.01 * 255**2 * 1e-2 + 0.7)) / 2
    assert rd_loss(images, 0.01) == pytest.approx(expected)


@given(
    quality=st.lists(st.floats(0.1, 10.0), min_size=5, max_size=5),
    target=st.floats(0.1, 10.0),
)
def test_crossing_is_the_first_budget_that_reaches_the_target(quality, target):
    found = crossing(BUDGETS, quality, target)
    reached = [b for b, q in zip(BUDGETS, quality, strict=True) if q <= target]
    if not reached:
        assert found is None
        return
    budget, bound = found
    assert bound == (reached[0] == BUDGETS[0])
    index = BUDGETS.index(reached[0])
    # Between the budget before the first that reaches it and that budget, where the straight
    # line between their qualities meets the target.
    low = BUDGETS[max(index - 1, 0)]
    assert low - 1e-12 <= budget <= reached[0] + 1e-12
    if index:
        q0, q1 = quality[index - 1], quality[index]
        line = q0 + (q1 - q0) * (budget - low) / (reached[0] - low)
        assert line == pytest.approx(target, rel=1e-9, abs=1e-9)


def test_crossing_after_a_diverged_budget_and_against_a_diverged_baseline():
    inf = math.inf
    # Nothing to interpolate from after a diverged budget: the first budget that reaches it is a
    # bound, never NaN.
    assert crossing(BUDGETS, [inf, inf, 1.0, 0.9, 0.8], target=1.2) == (0.6, True)
    assert crossing(BUDGETS, [2.0, inf, 1.0, 0.9, 0.8], target=1.2) == (0.6, True)
    # A baseline that diverged defines no quality to reach.
    assert crossing(BUDGETS, [1.0, 0.9, 0.8, 0.7, 0.6], target=inf) is None


def runs_of(curves: dict[str, dict[int, list[float]]]) -> list[dict]:
    return [
        {"method": method, "seed": seed, "kind": "trunk" if b == 1.0 else "branch", "budget": b,
         "quality": q}
        for method, by_seed in curves.items()
        for seed, values in by_seed.items()
        for b, q in zip(BUDGETS, values, strict=True)
    ]  # fmt: skip


def test_acceleration_of_a_method_that_needs_half_the_budget():
    # The baseline ends at 1.0; the method reaches 1.0 at half the budget, on every seed.
    baseline = [3.0, 2.0, 1.5, 1.2, 1.0]
    method = [2.0, 1.2, 0.8, 0.7, 0.6]  # 1.0 between 0.4 (1.2) and 0.6 (0.8): at 0.5
    runs = runs_of({"adam": dict.fromkeys((0, 1, 2), baseline),
                    "sma": dict.fromkeys((0, 1, 2), method)})  # fmt: skip
    found = acceleration(runs, "sma", "adam", [0, 1, 2], BUDGETS, resamples=200)
    assert found["factor"] == pytest.approx(0.5)
    assert found["per_seed"] == pytest.approx([0.5] * 3)
    assert found["low"] == pytest.approx(0.5) and found["high"] == pytest.approx(0.5)
    assert found["never"] == 0.0 and not found["upper_bound"]
    # Against itself a method needs its whole budget.
    assert acceleration(runs, "adam", "adam", [0, 1, 2], BUDGETS)["factor"] == pytest.approx(1.0)


def test_a_method_that_never_reaches_is_reported_so_and_the_interval_counts_it():
    baseline = {0: [3.0, 2.0, 1.5, 1.2, 1.0], 1: [3.0, 2.0, 1.5, 1.2, 1.0]}
    method = {0: [2.0, 1.8, 1.6, 1.4, 1.3], 1: [1.0, 0.9, 0.8, 0.7, 0.6]}
    runs = runs_of({"adam": baseline, "stdet": method})
    found = acceleration(runs, "stdet", "adam", [0, 1], BUDGETS, resamples=2000)
    # Seed 0 never reaches 1.0; seed 1 reaches it at the smallest budget already.
    assert found["per_seed"] == [None, 0.2]
    assert found["never"] == pytest.approx(0.25, abs=0.05)  # the resamples (0, 0)
    assert found["high"] is None and found["low"] == pytest.approx(0.2)
    # The seeds' mean curve (1.5, 1.35, 1.2, 1.05, 0.95) reaches 1.0 halfway from 0.8 to 1.0.
    assert found["factor"] == pytest.approx(0.9)


def claim_runs(scale: float) -> list[dict]:
    """Two test images, four lambdas; the claimant needs ``scale`` times the baseline's bits."""
    runs = []
    for method, factor in (("adam", 1.0), ("sma", scale)):
        for seed in (0, 1):
            for lmbda, (bpp, psnr) in zip((0.0018, 0.0035, 0.0067, 0.013),
                                          [(0.1, 25), (0.2, 28), (0.4, 31), (0.8, 34)],
                                          strict=True):  # fmt: skip
                images = [{"name": "a", "bpp": factor * bpp, "psnr": psnr},
                          {"name": "b", "bpp": factor * bpp * 2, "psnr": psnr - 1}]  # fmt: skip
                kind = "trunk" if lmbda == 0.0018 else "finetune"
                budget = (1.0 if method == "adam" else 7 / 12) if kind == "trunk" else 1.0
                runs.append({"method": method, "seed": seed, "lambda": lmbda, "kind": kind,
                             "budget": budget, "images": images,
                             "bpp": sum(i["bpp"] for i in images) / 2,
                             "psnr": sum(i["psnr"] for i in images) / 2})  # fmt: skip
    return runs


def test_the_claims_bd_rate_is_per_image_then_averaged():
    found = bd_rates_of_claim(claim_runs(1.1), "sma", "adam", [0, 1], 7 / 12)
    assert found["mean"]["mean"] == pytest.approx(10.0, abs=1e-6)
    assert found["per_image"]["a"]["mean"] == pytest.approx(10.0, abs=1e-6)
    assert found["per_seed"] == pytest.approx([10.0, 10.0], abs=1e-6)
    # The curve of the image means (the seed's bpp and PSNR averaged over images) needs 10% more
    # bits too.
    assert found["of_mean_curve_per_seed"] == pytest.approx([10.0, 10.0], abs=1e-6)
    assert rises_with_rate(claim_runs(1.1), "sma", 0, 7 / 12)
    runs = claim_runs(1.1)
    for run in runs:  # an RD curve that falls: not computable, not a crash
        if run["method"] == "sma" and run["seed"] == 1 and run["lambda"] == 0.013:
            run["images"][0]["psnr"] = 20.0
    found = bd_rates_of_claim(runs, "sma", "adam", [0, 1], 7 / 12)
    assert found["per_seed"][1] is None and found["mean"]["n"] == 1
    assert not rises_with_rate(runs, "sma", 1, 7 / 12)


def test_summarise_holds_only_methods_with_every_budget():
    protocol = {"seeds": [0, 1], "budgets": BUDGETS, "methods": ["adam", "ema", "sma"],
                "lambda": 0.01, "baselines": ["adam", "ema"], "claimants": ["sma"],
                "finetune_lambdas": [0.02], "claim_scratch": 0.6}  # fmt: skip
    runs = []
    for method, scale in (("adam", 1.0), ("ema", 0.9), ("sma", 0.8)):
        for seed in (0, 1):
            for budget in BUDGETS if method != "sma" else BUDGETS[:3]:  # sma stopped half-way
                psnr = 20 + 10 * budget / scale
                runs.append({"method": method, "seed": seed, "budget": budget,
                             "kind": "trunk" if budget == 1.0 else "branch",
                             "images": [{"name": "a", "bpp": 0.5, "psnr": psnr}],
                             "wall_seconds_per_step": 0.1, "trainable": 1.0,
                             "peak_memory_bytes": 1e8})  # fmt: skip
    summary = summarise(protocol, runs)["summary"]
    assert set(summary["quality"]) == {"adam", "ema"}
    assert set(summary["acceleration"]["adam"]) == {"adam", "ema"}
    factor = summary["acceleration"]["adam"]["ema"]["factor"]
    assert 0.8 < factor < 1.0 and not math.isnan(factor)
    assert summary["claim"] == {}


def test_a_diverged_run_reaches_nothing_and_is_counted():
    protocol = {"seeds": [0, 1], "budgets": BUDGETS, "methods": ["adam", "ema", "stdet"],
                "lambda": 0.01, "baselines": ["adam", "ema"], "claimants": ["stdet"],
                "finetune_lambdas": [], "claim_scratch": 0.6}  # fmt: skip
    runs = []
    for method, scale in (("adam", 1.0), ("ema", 1.0), ("stdet", 0.5)):
        for seed in (0, 1):
            for budget in BUDGETS:
                run = {"method": method, "seed": seed, "budget": budget,
                       "kind": "trunk" if budget == 1.0 else "branch"}  # fmt: skip
                if method == "stdet" and seed == 1 and budget >= 0.6:
                    run["diverged"] = 500
                else:
                    run.update(
                        images=[{"name": "a", "bpp": 0.5, "psnr": 20 + 10 * budget / scale}],
                        wall_seconds_per_step=0.1,
                        trainable=1.0,
                        peak_memory_bytes=1e8,
                    )
                runs.append(run)
    results = summarise(protocol, runs)
    summary = results["summary"]
    assert [r["quality"] for r in results["runs"] if r.get("diverged")] == [None] * 3
    quality = summary["quality"]["stdet"]
    assert quality[-1]["diverged"] == 1 and quality[-1]["of"] == 2
    found = summary["acceleration"]["adam"]["stdet"]
    # Seed 0 alone reaches Adam's quality between 0.4 and 0.6 of the budget (its PSNR at 0.5 is
    # Adam's at 1.0); with seed 1 diverged from 0.6 T on, the seeds' mean curve never does, and
    # the resamples without seed 1 do.
    assert 0.4 < found["per_seed"][0] < 0.6 and found["per_seed"][1] is None
    assert found["factor"] is None and 0 < found["never"] < 1
    assert summary["at_t"]["stdet"]["wall_seconds_per_step"]["of"] == 1


def test_stability_counts_the_runs_that_spike_more_than_adams_largest_rise():
    """From STDET's first event on (step warmup + every = 30 here), each run's largest rise above
    its best validation so far; a run rising more than the largest of Adam's runs at its lambda,
    or diverged, counts as beyond; a short run with no validation from then on does not."""
    protocol = {"methods": ["adam", "stdet"],
                "stdet": {"snapshot_every": 2, "snapshots": 10, "every": 10}}  # fmt: skip

    def run(method, kind, lmbda, losses, **extra):
        curve = [(10 * (i + 1), v) for i, v in enumerate(losses)]
        return {"method": method, "kind": kind, "lambda": lmbda, "curve": curve, **extra}

    health = {"worst": {"leverage_max": 3.0, "extrapolation_max": 0.5}}
    runs = [
        run("adam", "trunk", 0.01, [4, 2, 1, 1.2, 0.9]),  # +20% at step 40
        run("adam", "trunk", 0.01, [4, 2, 1, 1.1, 0.9]),
        run("adam", "branch", 0.01, [4, 2, 5]),  # branches are not counted
        run("stdet", "trunk", 0.01, [4, 2, 1, 1.5, 0.9], stdet_health=health),  # +50%: beyond
        run("stdet", "trunk", 0.01, [4, 6, 1, 1.1, 0.9], stdet_health=health),  # rise before 30
        run("stdet", "trunk", 0.01, [4, 2]),  # ends before step 30: no rise, not beyond
        run("stdet", "finetune", 0.02, [1, 1, 1], diverged=25),
        run("adam", "finetune", 0.02, [1, 1, 1, 1]),
    ]
    found = stability(protocol, runs)
    assert found["after"] == 30
    at = found["lambdas"]["0.01"]
    assert at["adam_largest"] == pytest.approx(0.2)
    assert at["methods"]["stdet"] == {"largest": pytest.approx(0.5), "beyond_adam": 1, "of": 3}
    assert at["methods"]["adam"]["beyond_adam"] == 0
    assert found["lambdas"]["0.02"]["methods"]["stdet"]["beyond_adam"] == 1  # diverged
    assert found["health"] == {"stdet": {"leverage_max": 3.0, "extrapolation_max": 0.5}}
    assert stability({"methods": ["adam"]}, runs) == {}  # no STDET in the protocol
