"""The statistics of a comparison: smoothed validation curves, steps to reach a loss, ratios to
Adam, mean and spread over the runs, BD-rates, and :func:`summarise`, which turns the runs into the
summary that ``results.json`` and the report hold.

Validation losses are read through a trailing mean of :data:`SMOOTHING` validations (the final loss
is the mean of the last ones; a method reaches a target at the first validation whose trailing mean
is at or below it): one validation of weights still moving fast is noisy, and a single lucky or
unlucky point would decide "steps to reach". The same rule applies to every method.

Examples:
    >>> curve = [(10, 6.0), (20, 3.0), (30, 0.0)]
    >>> smoothed(curve)
    [(10, 6.0), (20, 4.5), (30, 3.0)]
    >>> steps_to_reach(curve, 3.0)
    30
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from statistics import fmean, stdev

from lic_train.experiments.methods import method_config
from lic_train.experiments.presets import Preset, preset_dict

SMOOTHING = 3  # validations in the trailing mean (see the module's docstring)


def smoothed(curve: Sequence[Sequence[float]], window: int = SMOOTHING) -> list[tuple[int, float]]:
    """``(step, mean of the last <= window losses up to that step)`` of a validation curve of
    ``(step, loss)`` pairs."""
    losses = [loss for _, loss in curve]
    return [
        (int(step), fmean(losses[max(0, i + 1 - window) : i + 1]))
        for i, (step, _) in enumerate(curve)
    ]


def steps_to_reach(curve: Sequence[Sequence[float]], target: float) -> int | None:
    """The first validation step whose trailing mean loss is at or below ``target``."""
    return next((step for step, loss in smoothed(curve) if loss <= target), None)


def largest_excursion(curve: Sequence[Sequence[float]], after: int) -> float | None:
    """The largest rise of a validation above the best one before it, relative to that best, over
    the validations from step ``after`` on (a validation at an event's step follows it):
    ``max_t (v_t - min_{s<t} v_s) / min_{s<t} v_s`` (raw validations, no trailing mean: a spike is
    what is measured); 0 when none rises, None when no validation is at or after ``after``
    (the "no spikes" goal of 0.2's STDET compares it with Adam's). RD losses are positive; a best
    of 0 or less has no relative rise and is skipped.

    Examples:
        >>> largest_excursion([(10, 4.0), (20, 2.0), (30, 3.0), (40, 1.0)], after=20)
        0.5
    """
    best, largest, seen = math.inf, None, False
    for step, loss in curve:
        if step >= after and 0 < best < math.inf:
            largest = max(largest or 0.0, (loss - best) / best)
            seen = True
        best = min(best, loss)
    return largest if seen else None


def stability(runs: list[dict], methods: list[str], after: dict[str, int]) -> dict[str, dict]:
    """Per method: :func:`mean_spread` of each run's :func:`largest_excursion` from step
    ``after[method]`` on (its first STDET event; for methods without STDET the preset's), its
    largest value, how many runs exceed the largest of Adam's runs, and the means of STDET's
    health over the runs (the worst value of each number in a run; the drift at its end)."""
    excursions = {
        m: [largest_excursion(r["curve"], after[m]) for r in runs if r["method"] == m]
        for m in methods
    }
    adam_worst = max((e for e in excursions.get("adam", []) if e is not None), default=None)
    rows = {}
    for method in methods:
        values = excursions[method]
        present = [e for e in values if e is not None]
        health = [r.get("stdet_health") or {} for r in runs if r["method"] == method]
        rows[method] = {
            "excursion": mean_spread(values),
            "excursion_max": max(present, default=None),
            "beyond_adam": None if adam_worst is None
            else sum(e > adam_worst for e in present),
            "runs": len(values),
            **{
                key: mean_spread([h[part].get(key) for h in health if h])
                for part, key in (("worst", "leverage_max"), ("worst", "members_max"),
                                  ("worst", "extrapolation_max"), ("last", "embedded_drift"),
                                  ("last", "still_references"))
            },
        }  # fmt: skip
    return {"after": after, "methods": rows}


def ratio(value: float, reference: float) -> float | None:
    """``value / reference``; None where the reference is not positive (a peak-memory increase
    too small to measure)."""
    return value / reference if reference > 0 else None


def mean_spread(values: Sequence[float | None]) -> dict:
    """Mean, standard deviation and count of the values present (``n``) out of all (``of``)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "n": 0, "of": len(values)}
    std = stdev(present) if len(present) > 1 else 0.0
    return {"mean": fmean(present), "std": std, "n": len(present), "of": len(values)}


def reach_ratio(run: dict, adam: dict) -> float | None:
    """Steps ``run`` needs to reach Adam's final validation loss over the steps Adam needs (its
    first validation at or below its own final value); None if ``run`` never reaches it."""
    adam_steps = steps_to_reach(adam["curve"], adam["final_loss"])
    steps = steps_to_reach(run["curve"], adam["final_loss"])
    return None if steps is None or not adam_steps else steps / adam_steps


def _rd_curve(runs: list[dict], method: str, seed: int) -> tuple[list[float], list[float]]:
    """The (bpp, PSNR) points of ``method``'s runs with ``seed``, by increasing rate."""
    points = sorted(
        (r["bpp"], r["psnr"]) for r in runs if r["method"] == method and r["seed"] == seed
    )
    return [p[0] for p in points], [p[1] for p in points]


def bd_rate(
    reference: tuple[list[float], list[float]], test: tuple[list[float], list[float]]
) -> float | None:
    """BD-rate (%) of the ``test`` curve against ``reference`` (Akima); None where the curves do
    not overlap, or PSNR does not rise with the rate."""
    import bjontegaard as bd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-overlapping curves: reported as None below
        try:
            value = float(
                bd.bd_rate(*reference, *test, method="akima", require_matching_points=False)
            )
        except (AssertionError, ValueError):
            # bjontegaard's checks: PSNR must rise strictly with the rate
            value = math.nan
    return value if math.isfinite(value) else None


def bd_rates(runs: list[dict], methods: list[str], preset: Preset) -> dict[str, dict | None]:
    """BD-rate (%) of each method against Adam per seed over the lambdas (needs at least 4 for
    Akima interpolation; None otherwise)."""
    if len(preset.lambdas) < 4:
        return {method: None for method in methods if method != "adam"}
    return {
        method: mean_spread(
            [
                bd_rate(_rd_curve(runs, "adam", seed), _rd_curve(runs, method, seed))
                for seed in preset.seeds
            ]
        )
        for method in methods
        if method != "adam"
    }


def _measured(run: dict, adam: dict) -> dict:
    """The run's numbers and its ratios to ``adam``, the Adam run with the same seed and lambda."""
    return {
        "final_loss": run["final_loss"],
        "final_loss_ratio": run["final_loss"] / adam["final_loss"],
        "steps_to_adam_final": steps_to_reach(run["curve"], adam["final_loss"]),
        "steps_ratio": reach_ratio(run, adam),
        "trainable": run["trainable"],
        "seconds_per_step": run["seconds_per_step"],
        "time_ratio": ratio(run["seconds_per_step"], adam["seconds_per_step"]),
        "peak_memory_bytes": run["peak_memory_bytes"],
        "memory_ratio": ratio(run["peak_memory_bytes"], adam["peak_memory_bytes"]),
        "bpp": run["bpp"],
        "psnr": run["psnr"],
    }


def summarise(runs: list[dict], methods: list[str], preset: Preset) -> dict:
    """The summary of a comparison's ``runs``: per method, :func:`mean_spread` over the runs (seeds
    x lambdas) of each measured quantity and the BD-rate (``methods``), and of the two ratios per
    lambda (``by_lambda``). Adds each run's smoothed ``final_loss`` to it."""
    for r in runs:
        r["final_loss"] = smoothed(r["curve"])[-1][1]
    baseline = {(r["seed"], r["lambda"]): r for r in runs if r["method"] == "adam"}
    table = [
        (r["method"], r["lambda"], _measured(r, baseline[(r["seed"], r["lambda"])])) for r in runs
    ]

    def spread(method: str, keys: Sequence[str], lmbda: float | None = None) -> dict:
        chosen = [m for meth, lam, m in table if meth == method and lmbda in (None, lam)]
        return {key: mean_spread([m[key] for m in chosen]) for key in keys}

    keys = list(table[0][2]) if table else []
    rows = {method: spread(method, keys) for method in methods}
    for method, value in bd_rates(runs, methods, preset).items():
        rows[method]["bd_rate_percent"] = value
    by_lambda = {
        method: {
            f"{lmbda:g}": spread(method, ("final_loss_ratio", "steps_ratio"), lmbda)
            for lmbda in preset.lambdas
        }
        for method in methods
    }
    first_event = {}
    for method in methods:
        stdet = method_config(preset, method, preset.seeds[0], preset.lambdas[0]).stdet
        stdet = stdet or preset.stdet
        first_event[method] = stdet.warmup + stdet.every
    return {
        "preset": preset_dict(preset, methods),
        "methods": rows,
        "by_lambda": by_lambda,
        "stability": stability(runs, methods, first_event),
        "runs": runs,
    }
