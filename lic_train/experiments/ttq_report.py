"""The files of the time-to-quality benchmark, written from its summary
(:func:`lic_train.experiments.acceleration.summarise`), each atomically: ``results.json``,
``report.md`` (:func:`markdown`) and the plots ``quality_vs_budget.png``, ``acceleration.png`` and
``rd_curves.png``. :func:`rewrite_report` rebuilds them from ``results.json``.

Examples:
    >>> format_factor({"factor": 0.2, "upper_bound": True, "low": 0.2, "high": 0.4, "never": 0.0})
    '<= 0.200 [0.200, 0.400]'
    >>> format_factor({"factor": 0.5, "upper_bound": False, "low": 0.4, "high": None, "never": 0.3})
    '0.500 [0.400, never]'
    >>> format_factor({"factor": None, "upper_bound": False, "low": None, "high": None, "never": 1.0})
    'never reaches (100% of resamples)'
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import fmean, median, stdev

from lic_dynamics import files
from lic_train.experiments.acceleration import BOOTSTRAP, CONFIDENCE, claim_budget, summarise

PLOTS = ("quality_vs_budget.png", "acceleration.png", "rd_curves.png")


def format_factor(found: dict, key: str = "factor") -> str:
    """An acceleration factor with its bootstrap interval (``key``: ``factor`` or
    ``wall_factor``, whose interval is the steps' one scaled alike)."""
    value = found[key]
    if found["factor"] is None:
        return f"never reaches ({found['never']:.0%} of resamples)"
    if value is None:  # no wall time to scale by: every run of the method at T diverged
        return "-"
    scale = value / found["factor"] if found["factor"] else 1.0
    low = "never" if found["low"] is None else f"{found['low'] * scale:.3f}"
    high = "never" if found["high"] is None else f"{found['high'] * scale:.3f}"
    return f"{'<= ' if found['upper_bound'] else ''}{value:.3f} [{low}, {high}]"


def markdown(results: dict) -> str:
    """The report: the protocol, the quality-versus-budget table, the acceleration factors against
    each baseline, the paper's claim, and the checks of the scale."""
    protocol = results["protocol"]
    base, seeds = protocol["base"], len(protocol["seeds"])
    lines = [
        "# Time to quality",
        "",
        f"{base['model']} N={base['N']} M={base['M']}, batch {base['batch_size']} of "
        f"{base['patch_size'][0]}x{base['patch_size'][1]} crops, Adam lr {base['learning_rate']:g} "
        f"x{base['lr_gamma']:g} at {base['lr_milestones'][0]:.0%} of each run (the field's step "
        f"decay), T = {base['steps']} steps; seeds {protocol['seeds']}; scratch lambda "
        f"{protocol['lambda']:g}. Every budget's model is finished with its own decay (branched "
        "off the full run before its decay) and coded with real bit streams on the test images. "
        "Quality: RD loss of the real bit streams at the scratch lambda (lower is better); mean ± "
        "standard deviation over seeds. Trainable share, wall time per step (validation and every "
        "overhead included, two trainings at once) and peak memory of the runs at T.",
        "",
        "## Quality versus budget",
        "",
        *quality_table(results),
        "",
        "## Acceleration factors",
        "",
        "The smallest budget (fraction of T) whose finished model is as good as the baseline's at "
        f"T, interpolated on the seed-averaged quality curve; [{CONFIDENCE:.0%} interval] from "
        f"{BOOTSTRAP} paired bootstrap resamples of the seeds (with {seeds} seeds only "
        f"{math.comb(2 * seeds - 1, seeds)} distinct resamples exist: read the interval as a "
        "range over seeds, not a precise confidence interval). Wall clock: the factor times the "
        "ratio of wall time per step. Per seed: the factor from each seed alone; never: that "
        "seed's finished models do not reach the baseline's at any budget up to T.",
        "",
        *acceleration_table(results),
        "",
        *_claim(results),
        *stability_table(results),
        *_checks(protocol, results["summary"]),
    ]
    return "\n".join(lines) + "\n"


def quality_table(results: dict) -> list[str]:
    """Quality (RD loss of real bit streams) per method and budget, with the trainable share, wall
    time per step and peak memory at T."""
    protocol, summary = results["protocol"], results["summary"]
    budgets = protocol["budgets"]
    steps = [round(b * protocol["base"]["steps"]) for b in budgets]
    lines = [
        "| method | " + " | ".join(f"{b:.3g} T ({s} steps)" for b, s in zip(budgets, steps,
                                                                          strict=True))
        + " | trainable | wall s/step | peak MB |",
        "|---|" + "---|" * (len(budgets) + 3),
    ]  # fmt: skip
    for method, row in summary["quality"].items():
        at_t = summary["at_t"][method]
        lines.append(
            f"| {method} | " + " | ".join(_quality(q) for q in row)
            + f" | {_number(at_t['trainable'], 2)} | {_number(at_t['wall_seconds_per_step'], 4)}"
            f" | {_number(at_t['peak_memory_bytes'], 0, 1e-6)} |"
        )  # fmt: skip
    return lines


def _quality(stat: dict) -> str:
    """Mean ± sd of the runs that finished, and how many diverged (their quality is infinite)."""
    if stat["mean"] is None:
        return "diverged"
    text = f"{stat['mean']:.4f} ± {stat['std']:.4f}"
    return text + (f" ({stat['diverged']}/{stat['of']} diverged)" if stat["diverged"] else "")


def _number(stat: dict, digits: int, scale: float = 1.0) -> str:
    return "-" if stat["mean"] is None else f"{stat['mean'] * scale:.{digits}f}"


def acceleration_table(results: dict) -> list[str]:
    """One row per method, and per baseline its factor in steps and in wall-clock time (with their
    intervals) and the per-seed factors."""
    summary = results["summary"]
    baselines = list(summary["acceleration"])
    lines = [
        "| method | " + " | ".join(
            f"vs {b}: steps | vs {b}: wall clock | vs {b}: per seed" for b in baselines
        ) + " |",
        "|---|" + "---|" * (3 * len(baselines)),
    ]  # fmt: skip
    for method in summary["quality"]:
        cells = []
        for baseline in baselines:
            if method == baseline:
                cells += ["(the baseline)", "", ""]
                continue
            found = summary["acceleration"][baseline][method]
            per_seed = ", ".join(
                "never" if f is None else f"{'<= ' if bound else ''}{f:.2f}"
                for f, bound in zip(found["per_seed"], found["per_seed_upper_bound"], strict=True)
            )
            cells += [format_factor(found), format_factor(found, "wall_factor"), per_seed]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _claim(results: dict) -> list[str]:
    protocol = results["protocol"]
    if not results["summary"]["claim"]:
        return ["## The paper's claim", "", "Not run (no fine-tunes in these results).", ""]
    return [
        "## The paper's claim at our scale",
        "",
        f"Lambda {protocol['lambda']:g} from scratch, then fine-tuned to "
        f"{', '.join(f'{x:g}' for x in protocol['finetune_lambdas'])}: the baselines with "
        f"120 and {round(protocol['baseline_finetune'] * 120)} units (T = 120 units), the "
        f"claimants with {round(protocol['claim_scratch'] * 120)} and "
        f"{round(protocol['claim_finetune'] * 120)}. BD-rate (%, Akima; negative: fewer bits for "
        "the same PSNR) of the claimant against the baseline, per test image and their mean per "
        "seed, and of the curves of the image means; mean ± standard deviation over seeds; '-' "
        "where a curve does not rise with rate (bjontegaard refuses it) or a model diverged.",
        "",
        *claim_table(results),
        "",
        "Real bit streams of the claim's models, mean over seeds and test images:",
        "",
        *rd_table(results),
        "",
    ]


def claim_table(results: dict) -> list[str]:
    """The claim's BD-rates: one row per (claimant, baseline), the mean over test images, per
    seed, and per image."""
    lines: list[str] = []
    for baseline, table in results["summary"]["claim"].items():
        for claimant, found in table.items():
            images = list(found["per_image"])
            if not lines:
                lines += ["| claimant vs baseline | mean over images | per seed | "
                          + " | ".join(images) + " | of the image-mean curve | per seed |",
                          "|---|---|---|" + "---|" * (len(images) + 2)]  # fmt: skip
            cells = [_stat(found["per_image"][name]) for name in images]
            lines.append(
                f"| {claimant} vs {baseline} | {_stat(found['mean'])} | "
                f"{_signed(found['per_seed'])} | " + " | ".join(cells)
                + f" | {_stat(found['of_mean_curve'])} | {_signed(found['of_mean_curve_per_seed'])} |"
            )  # fmt: skip
    return lines


def rd_table(results: dict) -> list[str]:
    """bpp and PSNR of the claim's models per lambda (mean over seeds and test images), one
    column per method: the baselines' full-budget models, the claimants' short ones."""
    protocol, points = results["protocol"], results["summary"]["rd_points"]
    lines = ["| lambda | " + " | ".join(f"{m}: bpp, PSNR (dB)" for m in points) + " |",
             "|---|" + "---|" * len(points)]  # fmt: skip
    for lmbda in sorted([protocol["lambda"], *protocol["finetune_lambdas"]]):
        cells = []
        for method_points in points.values():
            point = next((p for p in method_points if p["lambda"] == lmbda), None)
            cells.append(
                "diverged" if point is None else f"{point['bpp']:.3f}, {point['psnr']:.2f}"
            )
        lines.append(f"| {lmbda:g} | " + " | ".join(cells) + " |")
    return lines


def _signed(values: list[float | None]) -> str:
    return ", ".join("-" if v is None else f"{v:+.2f}" for v in values)


def _stat(stat: dict) -> str:
    if stat["mean"] is None:
        return "not computable"
    text = f"{stat['mean']:+.2f} ± {stat['std']:.2f}"
    return text if stat["n"] == stat["of"] else f"{text} ({stat['n']}/{stat['of']} seeds)"


def stability_table(results: dict) -> list[str]:
    """Spikes: per lambda, each method's largest rise of a validation above the best before it
    after STDET's first event, and how many of its runs rise more than Adam's largest; then the
    worst STDET health numbers of the full-length runs."""
    found = results["summary"].get("stability")
    if not found or not found["lambdas"]:
        return []
    lambdas = list(found["lambdas"])
    methods = list(dict.fromkeys(m for x in found["lambdas"].values() for m in x["methods"]))
    lines = [
        "## Spikes and STDET's health",
        "",
        f"From step {found['after']} of each run on (STDET's first event): the largest rise of a "
        "validation above the best validation before it (%), and in brackets the runs that rise "
        "more than the largest of Adam's runs at that lambda (a diverged run counts).",
        "",
        "| method | " + " | ".join(f"lambda {x}" for x in lambdas) + " |",
        "|---|" + "---|" * len(lambdas),
    ]
    for method in methods:
        cells = []
        for x in lambdas:
            row = found["lambdas"][x]["methods"].get(method)
            if row is None:
                cells.append("-")
                continue
            largest = "-" if row["largest"] is None else f"{100 * row['largest']:.3g}"
            beyond = "" if row["beyond_adam"] is None else f" ({row['beyond_adam']}/{row['of']})"
            cells.append(largest + beyond)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if found["health"]:
        lines += [
            "",
            "Worst over the full-length runs: leverage (||a||_2 behind one reference), share of "
            "the tracked scalars on one reference, extrapolation of a line (widths of its fitted "
            "range), drift of the embedded scalars since embedding (relative), still references.",
            "",
            "| method | leverage | members on one reference | extrapolation | drift | still |",
            "|---|---|---|---|---|---|",
        ]
        for method, h in found["health"].items():
            lines.append(
                f"| {method} | {h['leverage_max']:.1f} | {h['members_max']:.3f} | "
                f"{h['extrapolation_max']:.2f} | {h['embedded_drift']:.3f} | "
                f"{h['still_references']:.0f} |"
            )
    return [*lines, ""]


def _checks(protocol: dict, summary: dict) -> list[str]:
    """Whether the scale decides something: the baselines still improve between about 0.6 T and
    T (the mean gain over seeds above twice its standard error), and PSNR rises with rate on
    every RD curve of the claim."""
    lines = ["## Does this scale decide something?", ""]
    for baseline in protocol["baselines"]:
        gains = summary["late_gain"].get(baseline)
        if gains is None:
            continue
        # Paired over seeds: improving when the mean gain exceeds twice its standard error.
        mean, sd = fmean(gains), (stdev(gains) if len(gains) > 1 else 0.0)
        verdict = "improving" if mean > 2 * sd / len(gains) ** 0.5 else "NOT improving measurably"
        lines.append(
            f"- {baseline}: from {summary['late_budget']:.3g} T to T its finished model's RD loss falls by "
            f"{mean:.1%} ± {sd:.1%} (per seed: {', '.join(f'{g:.1%}' for g in gains)}): {verdict}."
        )
    for method, flags in summary.get("rises_with_rate", {}).items():
        lines.append(f"- {method}: PSNR rises with rate on every test image for "
                     f"{sum(flags)}/{len(flags)} seeds.")  # fmt: skip
    return [*lines, ""]


def write_plots(results: dict, out: Path) -> None:
    """``quality_vs_budget.png``, ``acceleration.png`` and ``rd_curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocol, summary = results["protocol"], results["summary"]
    budgets = protocol["budgets"]
    figure, axis = plt.subplots(figsize=(6, 4))
    for method in summary["quality"]:
        # Median and range over the seeds' finished models (diverged ones left out), on a log
        # scale: one seed's blow-up would flatten every other curve on a linear one.
        middle, low, high = [], [], []
        for budget in budgets:
            values = sorted(r["quality"] for r in results["runs"] if r["method"] == method
                            and r["budget"] == budget and r["kind"] != "finetune"
                            and r["quality"] is not None)  # fmt: skip
            middle.append(median(values) if values else float("nan"))
            low.append(middle[-1] - values[0] if values else 0.0)
            high.append(values[-1] - middle[-1] if values else 0.0)
        axis.errorbar(budgets, middle, yerr=[low, high], marker="o", capsize=3, label=method)
    for baseline in protocol["baselines"]:
        if baseline in summary["quality"]:
            axis.axhline(summary["quality"][baseline][-1]["mean"], ls=":", color="grey")
    axis.set(xlabel="budget (fraction of T)", ylabel=f"RD loss, real bits (lambda {protocol['lambda']:g})",
             yscale="log", title="Finished models: median and range over seeds")  # fmt: skip
    if axis.get_legend_handles_labels()[0]:  # none when nothing finished
        axis.legend()
    _save(figure, out / "quality_vs_budget.png")

    figure, axis = plt.subplots(figsize=(6, 4))
    methods = list(summary["quality"])  # one x position per method, whichever the baseline
    for offset, (baseline, table) in enumerate(summary["acceleration"].items()):
        labelled = False
        for index, method in enumerate(methods):
            found, x = table.get(method), index + 0.2 * (offset - 0.5)
            if method == baseline or found is None:
                continue
            label = None if labelled else f"against {baseline}"
            labelled = True
            if found["factor"] is None:
                axis.plot([x], [1.05], "x", color=f"C{offset}", label=label)
                continue
            low = found["low"] if found["low"] is not None else budgets[0]
            high = found["high"] if found["high"] is not None else 1.05
            axis.errorbar([x], [found["factor"]],
                          yerr=[[found["factor"] - low], [high - found["factor"]]],
                          fmt="o", color=f"C{offset}", capsize=3, label=label)  # fmt: skip
    axis.set_xticks(range(len(methods)), methods, rotation=15)
    axis.axhline(1.0, color="grey", lw=0.5)
    axis.axhline(0.6, color="grey", ls=":", lw=0.5, label="the paper's claim, 0.6")
    axis.set(ylabel="acceleration factor (budget fraction)", ylim=(0, 1.1),
             title="Budget needed for the baseline's quality at T (x: never)")  # fmt: skip
    if axis.get_legend_handles_labels()[0]:  # none when nothing finished
        axis.legend()
    _save(figure, out / "acceleration.png")

    figure, axis = plt.subplots(figsize=(6, 4))
    for index, (method, points) in enumerate(summary.get("rd_points", {}).items()):
        budget = claim_budget(protocol, method)
        axis.plot([p["bpp"] for p in points], [p["psnr"] for p in points], marker="o",
                  color=f"C{index}", label=f"{method} ({budget * 120:.0f} units + fine-tunes)")  # fmt: skip
    axis.set(xlabel="bpp (real bit streams)", ylabel="PSNR (dB)",
             title="The paper's claim: RD curves (mean over seeds and test images)")  # fmt: skip
    if axis.get_legend_handles_labels()[0]:  # none when nothing finished
        axis.legend()
    _save(figure, out / "rd_curves.png")


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    files.write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=110))
    plt.close(figure)


def write_report(results: dict, out: Path) -> None:
    """``results.json``, ``report.md`` and the plots, in ``out``."""
    out = Path(out)
    files.write_json(results, out / "results.json")
    files.write_text(markdown(results), out / "report.md")
    write_plots(results, out)


def rewrite_report(out: str | Path) -> dict:
    """Rebuild the summary and every file from ``out/results.json`` (its protocol and runs)."""
    saved = json.loads((Path(out) / "results.json").read_text())
    results = summarise(saved["protocol"], saved["runs"])
    write_report(results, Path(out))
    return results
