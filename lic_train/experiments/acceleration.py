"""The statistics of the time-to-quality benchmark (:mod:`lic_train.experiments.time_to_quality`):
the quality of finished models, acceleration factors with bootstrap intervals, and the BD-rates of
the seed paper's claim.

* **Quality** of a finished model: its RD loss at the scratch lambda from real bit streams,
  ``lambda * 255^2 * MSE + bpp`` per test image (MSE of the 8-bit images over 255^2, from the PSNR;
  CompressAI's ``RateDistortionLoss`` on real rates), averaged over the test images. Lower is
  better.
* **Acceleration factor** of a method against a baseline: the smallest budget fraction at which
  the method's finished model is as good as the baseline's finished model at the full budget,
  read off the method's quality-versus-budget curve by linear interpolation between the first
  budget that reaches it and the one before. At the smallest budget already: that budget, marked
  as an upper bound. Never: None ("never reaches", a result). The point estimate uses the curves
  averaged over seeds; the interval resamples the seeds with replacement (paired: a resample
  takes the method's and the baseline's runs of the same seeds) and reports the 2.5 and 97.5
  percentiles of the factor, counting the resamples that never reach. In wall-clock time the
  factor is scaled by the ratio of the methods' wall time per step (validation and every overhead
  included) at the full budget.
* **The paper's claim**: BD-rate (``bjontegaard``, Akima) of a claimant's RD curve (its short
  scratch model and its short fine-tunes) against a baseline's (full budgets), per seed and test
  image, and the mean over images.

Examples:
    >>> crossing([0.2, 0.4, 1.0], [3.0, 2.0, 1.0], target=1.5)
    (0.7, False)
    >>> crossing([0.2, 0.4, 1.0], [3.0, 2.0, 1.0], target=3.5)
    (0.2, True)
    >>> crossing([0.2, 0.4, 1.0], [3.0, 2.0, 1.0], target=0.5) is None
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from statistics import fmean, stdev

import numpy as np

from lic_train.experiments.stats import bd_rate, largest_excursion, mean_spread

BOOTSTRAP = 10_000  # resamples of the seeds
CONFIDENCE = 0.95


def rd_loss(images: Sequence[dict], lmbda: float) -> float:
    """``mean over images of lambda * 255^2 * 10^(-PSNR/10) + bpp``: the RD loss of real bit
    streams (``images``: ``{"bpp", "psnr"}`` per test image; PSNR in dB of the 8-bit images)."""
    return fmean(lmbda * 255**2 * 10 ** (-image["psnr"] / 10) + image["bpp"] for image in images)


def crossing(
    budgets: Sequence[float], quality: Sequence[float], target: float
) -> tuple[float, bool] | None:
    """The smallest budget at which ``quality`` (lower is better, one value per budget, budgets
    increasing; infinite where a run diverged) reaches ``target``, linearly interpolated;
    ``(budget, is_upper_bound)``, the bound when the smallest budget reaches it already, or when
    the budget before it diverged (nothing to interpolate from); None when no budget does, and
    when ``target`` is not finite (a baseline that diverged defines no quality to reach)."""
    if not math.isfinite(target):
        return None
    for index, (budget, value) in enumerate(zip(budgets, quality, strict=True)):
        if value <= target:
            if index == 0 or not math.isfinite(quality[index - 1]):
                return budget, True
            before, previous = budgets[index - 1], quality[index - 1]
            return before + (budget - before) * (previous - target) / (previous - value), False
    return None


def _quality(run: dict) -> float:
    """A run's quality; a diverged run's is infinite (it reaches no target)."""
    return math.inf if run.get("diverged") is not None else run["quality"]


def _curves(runs: list[dict], method: str, seeds: Sequence[int], budgets: Sequence[float]):
    """``{seed: [quality at each budget]}`` of ``method``'s scratch models."""
    table = {(r["seed"], r["budget"]): _quality(r) for r in runs
             if r["method"] == method and r["kind"] != "finetune"}  # fmt: skip
    return {seed: [table[(seed, b)] for b in budgets] for seed in seeds}


def acceleration(
    runs: list[dict], method: str, baseline: str, seeds: Sequence[int], budgets: Sequence[float],
    *, resamples: int = BOOTSTRAP, seed: int = 0,
) -> dict:  # fmt: skip
    """The acceleration factor of ``method`` against ``baseline`` (module docstring): ``factor``
    (None: never reaches), ``upper_bound`` (reached at the smallest budget already),
    ``per_seed`` factors, the bootstrap interval ``low``/``high`` (None where more than the
    tail's share of resamples never reach) and ``never`` (the share of resamples that never
    reach)."""
    ours = _curves(runs, method, seeds, budgets)
    theirs = _curves(runs, baseline, seeds, budgets)

    def factor(chosen: Sequence[int]) -> tuple[float, bool] | None:
        curve = [fmean(ours[s][i] for s in chosen) for i in range(len(budgets))]
        return crossing(budgets, curve, fmean(theirs[s][-1] for s in chosen))

    point = factor(seeds)
    rng = np.random.default_rng(seed)
    draws = [factor([seeds[i] for i in rng.integers(len(seeds), size=len(seeds))])
             for _ in range(resamples)]  # fmt: skip
    # "Never" ranks above every budget: the percentiles of the factor with never = +inf.
    values = np.array([math.inf if d is None else d[0] for d in draws])
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")
    per_seed = [factor([s]) for s in seeds]
    return {
        "factor": None if point is None else point[0],
        "upper_bound": bool(point and point[1]),
        "per_seed": [None if f is None else f[0] for f in per_seed],
        "per_seed_upper_bound": [bool(f and f[1]) for f in per_seed],
        "low": float(low) if math.isfinite(low) else None,
        "high": float(high) if math.isfinite(high) else None,
        "never": float(np.mean(~np.isfinite(values))),
    }


def bd_rates_of_claim(runs: list[dict], claimant: str, baseline: str, seeds: Sequence[int],
                      scratch: float) -> dict:  # fmt: skip
    """BD-rate (%) of ``claimant``'s RD curve (its ``scratch``-fraction model at the scratch
    lambda and its fine-tunes) against ``baseline``'s (its full-budget model and fine-tunes):
    per seed the mean over test images of the per-image BD-rate (``mean``, ``per_seed``,
    ``per_image``), and the BD-rate of the curves of the image means (bpp and PSNR averaged over
    the test images: ``of_mean_curve``, ``of_mean_curve_per_seed``), a curve that rises with rate
    more often; mean ± standard deviation over seeds. None where a curve does not rise with rate
    or a model diverged."""
    per_seed, per_image, of_mean_curve = [], {}, []
    names = next(r["images"] for r in runs if r.get("images"))
    for seed in seeds:
        ours = claim_rows(runs, claimant, scratch, seed)
        theirs = claim_rows(runs, baseline, 1.0, seed)
        if any(r.get("diverged") is not None for r in ours + theirs):
            per_seed.append(None)
            of_mean_curve.append(None)
            for image in names:
                per_image.setdefault(image["name"], []).append(None)
            continue
        rates = []
        for index, name in enumerate(image["name"] for image in names):

            def points(rows: list[dict], index: int = index) -> tuple[list[float], list[float]]:
                return ([r["images"][index]["bpp"] for r in rows],
                        [r["images"][index]["psnr"] for r in rows])  # fmt: skip

            rate = bd_rate(points(theirs), points(ours))
            per_image.setdefault(name, []).append(rate)
            rates.append(rate)
        per_seed.append(None if None in rates else fmean(rates))
        of_mean_curve.append(bd_rate(*(([r["bpp"] for r in rows], [r["psnr"] for r in rows])
                                       for rows in (theirs, ours))))  # fmt: skip
    return {
        "mean": mean_spread(per_seed),
        "per_seed": per_seed,
        "of_mean_curve": mean_spread(of_mean_curve),
        "of_mean_curve_per_seed": of_mean_curve,
        "per_image": {name: mean_spread(values) for name, values in per_image.items()},
    }


def rises_with_rate(runs: list[dict], method: str, seed: int, budget: float) -> bool:
    """Whether PSNR rises strictly with bpp along ``method``'s RD curve (the claim's models) on
    every test image: without it no BD-rate is computable."""
    rows = claim_rows(runs, method, budget, seed)
    if any(r.get("diverged") is not None for r in rows):
        return False
    for index in range(len(rows[0]["images"])):
        points = sorted((r["images"][index]["bpp"], r["images"][index]["psnr"]) for r in rows)
        if any(b[1] <= a[1] or b[0] <= a[0] for a, b in itertools.pairwise(points)):
            return False
    return True


def claim_rows(runs: list[dict], method: str, budget: float, seed: int | None = None) -> list[dict]:
    """The runs of ``method``'s RD curve in the claim, by increasing lambda: its scratch model at
    ``budget`` and its fine-tunes (of ``seed``; of every seed when None)."""
    return sorted(
        (r for r in runs if r["method"] == method and seed in (None, r["seed"])
         and (r["kind"] == "finetune" or r["budget"] == budget)),
        key=lambda r: r["lambda"],
    )  # fmt: skip


def claim_budget(protocol: dict, method: str) -> float:
    """The scratch budget of ``method``'s model in the claim: T for a baseline, else shorter."""
    return 1.0 if method in protocol["baselines"] else protocol["claim_scratch"]


def _rd_points(runs: list[dict], method: str, budget: float) -> list[dict]:
    """``method``'s claim models per lambda (increasing): bpp and PSNR, mean over seeds and test
    images; diverged models left out (None where every seed diverged)."""
    rows = [r for r in claim_rows(runs, method, budget) if r.get("diverged") is None]
    return [
        {"lambda": x, "bpp": fmean(r["bpp"] for r in rows if r["lambda"] == x),
         "psnr": fmean(r["psnr"] for r in rows if r["lambda"] == x)}
        for x in sorted({r["lambda"] for r in runs if r["method"] == method})
        if any(r["lambda"] == x for r in rows)
    ]  # fmt: skip


def _mean_sd(values: Sequence[float]) -> dict:
    """Mean and standard deviation of the finite values, and how many were infinite (diverged
    runs) out of all; None mean where none is finite."""
    finite = [v for v in values if math.isfinite(v)]
    return {
        "mean": fmean(finite) if finite else None,
        "std": stdev(finite) if len(finite) > 1 else 0.0,
        "diverged": len(values) - len(finite),
        "of": len(values),
    }


def summarise(protocol: dict, runs: list[dict]) -> dict:
    """``results.json``'s content: the protocol, the runs (each with its ``quality``), and the
    summary: quality per method and budget (mean and sd over seeds), the acceleration factors
    against each baseline (in steps and in wall-clock time), the claim's BD-rates, and the checks
    of the scale (the baseline still improving late, PSNR rising with rate)."""
    seeds, budgets = protocol["seeds"], protocol["budgets"]
    for r in runs:  # JSON has no infinity: a diverged run's quality is null
        r["quality"] = (
            None if r.get("diverged") is not None else rd_loss(r["images"], protocol["lambda"])
        )
    complete = {m for m in protocol["methods"]
                if sum(r["method"] == m and r["kind"] != "finetune" for r in runs)
                == len(seeds) * len(budgets)}  # fmt: skip
    summary: dict = {"quality": {}, "at_t": {}, "acceleration": {}, "claim": {}}
    for method in protocol["methods"]:
        if method not in complete:
            continue
        curves = _curves(runs, method, seeds, budgets)
        summary["quality"][method] = [
            _mean_sd([curves[s][i] for s in seeds]) for i in range(len(budgets))
        ]
        full = [r for r in runs if r["method"] == method and r["kind"] == "trunk"
                and r.get("diverged") is None]  # fmt: skip
        summary["at_t"][method] = {
            key: _mean_sd([r[key] for r in full])
            for key in ("wall_seconds_per_step", "trainable", "peak_memory_bytes")
        }
    # Whether the baselines still improve late: the relative fall of each seed's RD loss from the
    # budget nearest 0.6 T to T (the question is empty if they do not).
    late = min(range(len(budgets)), key=lambda i: abs(budgets[i] - 0.6))
    summary["late_budget"], summary["late_gain"] = budgets[late], {}
    for baseline in protocol["baselines"]:
        if baseline not in complete:
            continue
        curves = _curves(runs, baseline, seeds, budgets)
        summary["late_gain"][baseline] = [
            1 - curves[s][-1] / curves[s][late] for s in seeds
            if math.isfinite(curves[s][-1] + curves[s][late])
        ]  # fmt: skip
        summary["acceleration"][baseline] = {}
        for method in (m for m in protocol["methods"] if m in complete):
            found = acceleration(runs, method, baseline, seeds, budgets)
            at_t = summary["at_t"]
            ours, theirs = (at_t[m]["wall_seconds_per_step"]["mean"] for m in (method, baseline))
            time_ratio = ours / theirs if ours is not None and theirs is not None else None
            found["wall_time_ratio"] = time_ratio
            found["wall_factor"] = (None if found["factor"] is None or time_ratio is None
                                    else found["factor"] * time_ratio)  # fmt: skip
            summary["acceleration"][baseline][method] = found
    finetunes = {(r["method"], r["seed"]) for r in runs if r["kind"] == "finetune"}
    # The claim's RD curves: a method's scratch model and every fine-tune, for every seed.
    claim_ready = [m for m in protocol["baselines"] + protocol["claimants"]
                   if protocol["finetune_lambdas"] and m in complete
                   and all(len([r for r in runs if r["kind"] == "finetune" and r["method"] == m
                                and r["seed"] == s]) == len(protocol["finetune_lambdas"])
                           for s in seeds)]  # fmt: skip
    for baseline in protocol["baselines"]:
        for claimant in protocol["claimants"]:
            if baseline in claim_ready and claimant in claim_ready:
                summary["claim"].setdefault(baseline, {})[claimant] = bd_rates_of_claim(
                    runs, claimant, baseline, seeds, protocol["claim_scratch"]
                )
    summary["rd_points"] = {m: _rd_points(runs, m, claim_budget(protocol, m)) for m in claim_ready}
    summary["rises_with_rate"] = {
        m: [rises_with_rate(runs, m, s, claim_budget(protocol, m)) for s in seeds]
        for m in claim_ready
    }  # fmt: skip
    summary["finetuned"] = sorted({m for m, _ in finetunes})
    summary["stability"] = stability(protocol, runs)
    return {"protocol": protocol, "runs": runs, "summary": summary}


def stability(protocol: dict, runs: list[dict]) -> dict:
    """The "no spikes" goal of 0.2's STDET, per lambda (the scratch runs at T, and the
    fine-tunes): each run's :func:`~lic_train.experiments.stats.largest_excursion` after STDET's
    first event (``warmup + every`` of the protocol's STDET, counted from each run's own start),
    the largest of Adam's runs at that lambda, and per method how many runs exceed it (diverged
    runs count as exceeding). Also, per method, the worst STDET health numbers of its full-length
    runs."""
    stdet = protocol.get("stdet")
    if stdet is None:
        return {}
    after = stdet["snapshot_every"] * stdet["snapshots"] + stdet["every"]
    chosen = [r for r in runs if r["kind"] in ("trunk", "finetune")]
    lambdas = sorted({r["lambda"] for r in chosen})
    out: dict = {"after": after, "lambdas": {}, "health": {}}
    for lmbda in lambdas:
        here = [r for r in chosen if r["lambda"] == lmbda]
        rises = [
            None if r.get("diverged") is not None else largest_excursion(r["curve"], after)
            for r in here
        ]
        adam = [x for x, r in zip(rises, here, strict=True) if r["method"] == "adam"]
        adam_worst = max((x for x in adam if x is not None), default=None)
        per_method = {}
        for method in dict.fromkeys(r["method"] for r in here):
            mine = [(x, r) for x, r in zip(rises, here, strict=True) if r["method"] == method]
            per_method[method] = {
                "largest": max((x for x, _ in mine if x is not None), default=None),
                "beyond_adam": None if adam_worst is None
                else sum(r.get("diverged") is not None or (x is not None and x > adam_worst)
                         for x, r in mine),
                "of": len(mine),
            }  # fmt: skip
        out["lambdas"][f"{lmbda:g}"] = {"adam_largest": adam_worst, "methods": per_method}
    for method in protocol["methods"]:
        health = [r["stdet_health"]["worst"] for r in runs if r["method"] == method
                  and r["kind"] == "trunk" and r.get("stdet_health")]  # fmt: skip
        if health:
            out["health"][method] = {key: max(h[key] for h in health) for key in health[0]}
    return out
