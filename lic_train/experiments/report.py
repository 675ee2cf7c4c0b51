"""The files of a comparison, written from its summary (:func:`~lic_train.experiments.stats.
summarise`), each atomically: ``results.json``, ``report.md`` (:func:`markdown`), and the plots
``loss_vs_step.png``, ``trainable_vs_step.png`` and, with several lambdas, ``rd_curves.png``
(:func:`write_plots`). :func:`rewrite_report` rebuilds them all from ``results.json``.

Examples:
    >>> format_stat({"mean": 0.5, "std": 0.25, "n": 2, "of": 3})
    '0.500 ± 0.250 (2/3 reached)'
    >>> format_stat({"mean": None, "std": None, "n": 0, "of": 3})
    'none reached'
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING

from lic_dynamics import files
from lic_train.experiments.presets import preset_from_dict
from lic_train.experiments.stats import SMOOTHING, summarise

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.figure import Figure

_HEADER = [
    "| method | final val loss | ratio to Adam | steps to Adam's final loss | ratio | "
    "trainable | s/step | time ratio | peak memory (MB) | memory ratio | bpp | PSNR (dB) | "
    "BD-rate (%) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def format_stat(
    stat: dict | None, digits: int = 3, scale: float = 1.0, missing: str = "reached"
) -> str:
    """``mean ± std``; where some seeds have no value, how many do (``missing`` says why)."""
    if not stat or stat["mean"] is None:
        return f"none {missing}" if stat and stat["of"] else "-"
    text = f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"
    if stat["n"] < stat["of"]:
        text += f" ({stat['n']}/{stat['of']} {missing})"
    return text


def _method_row(method: str, row: dict) -> str:
    """One row of the main table."""
    return (
        f"| {method} | {format_stat(row['final_loss'], 4)} | "
        f"{format_stat(row['final_loss_ratio'])} | "
        f"{format_stat(row['steps_to_adam_final'], 0)} | {format_stat(row['steps_ratio'])} | "
        f"{format_stat(row['trainable'])} | {format_stat(row['seconds_per_step'], 4)} | "
        f"{format_stat(row['time_ratio'])} | {format_stat(row['peak_memory_bytes'], 0, 1e-6)} | "
        f"{format_stat(row['memory_ratio'], missing='measurable')} | {format_stat(row['bpp'])} | "
        f"{format_stat(row['psnr'], 2)} | "
        f"{format_stat(row.get('bd_rate_percent'), 2, missing='with usable curves')} |"
    )


def _per_lambda_table(results: dict) -> list[str]:
    """The two ratios of each method per lambda (with several lambdas; else no lines)."""
    if len(results["preset"]["lambdas"]) <= 1:
        return []
    lambdas = [f"{x:g}" for x in results["preset"]["lambdas"]]
    lines = [
        "Per lambda: final val loss ratio to Adam / steps to Adam's final loss ratio.",
        "",
        "| method | " + " | ".join(f"lambda {x}" for x in lambdas) + " |",
        "|---|" + "---|" * len(lambdas),
    ]
    for method, per in results["by_lambda"].items():
        cells = [
            f"{format_stat(per[x]['final_loss_ratio'])} / {format_stat(per[x]['steps_ratio'], 2)}"
            for x in lambdas
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def stability_table(results: dict) -> list[str]:
    """Spikes and STDET's health, one row per method (no lines when no method runs STDET)."""
    stability = results.get("stability")
    rows = stability["methods"] if stability else {}
    if not any(row["leverage_max"]["n"] for row in rows.values()):
        return []
    lines = [
        "| method | largest rise (%) | largest | runs beyond Adam's | leverage | members on one "
        "reference | extrapolation | drift | still references |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        worst = row["excursion_max"]
        beyond = "-" if row["beyond_adam"] is None else f"{row['beyond_adam']}/{row['runs']}"
        lines.append(
            f"| {method} | {format_stat(row['excursion'], 1, 100)} | "
            f"{'-' if worst is None else f'{100 * worst:.1f}'} | {beyond} | "
            f"{format_stat(row['leverage_max'], 1)} | {format_stat(row['members_max'], 3)} | "
            f"{format_stat(row['extrapolation_max'], 2)} | "
            f"{format_stat(row['embedded_drift'], 3)} | "
            f"{format_stat(row['still_references'], 1)} |"
        )
    return lines


def _stability_section(results: dict) -> list[str]:
    table = stability_table(results)
    if not table:
        return []
    return [
        f"Stability from STDET's first event on (step {min(results['stability']['after'].values())}; "
        "later for a method whose schedule starts later): the largest "
        "rise of a validation above the best before it (%), mean ± sd over the runs and the "
        "largest; runs whose rise exceeds the largest of Adam's; STDET's health: the worst "
        "leverage (||a||_2 behind one reference), share of the scalars on one reference and "
        "extrapolation (in widths of the fitted range) of each run, the embedded scalars' drift "
        "at the end and the still references.",
        "",
        *table,
        "",
    ]


def markdown(results: dict) -> str:
    """``report.md``: the main table (one row per method), how to read it, and the per-lambda
    table."""
    preset = results["preset"]
    lines = [
        "# lic-train compare",
        "",
        f"Seeds {preset['seeds']}, lambdas {preset['lambdas']}; "
        "mean ± standard deviation over the runs (seeds x lambdas). Ratios are to Adam with the "
        "same seed and lambda; a ratio of steps counts only the runs that reach Adam's final loss "
        "(how many do is given).",
        "",
        *_HEADER,
        *(_method_row(method, row) for method, row in results["methods"].items()),
        "",
        "Validation loss: estimated RD loss of the evaluated weights (the SMA average where SMA is "
        "on) on centre crops of the test images, read through a trailing mean of "
        f"{SMOOTHING} validations (validation every "
        f"{preset['base']['validate_every']} steps); the final loss is the last such "
        "mean. Steps to Adam's final loss: first validation whose trailing mean is at or below it. "
        "bpp and PSNR: real bit streams of the final weights on the whole test images. BD-rate "
        "needs at least 4 lambdas.",
        "",
        *_per_lambda_table(results),
        *_stability_section(results),
    ]
    return "\n".join(lines)


def _curves_figure(plt: ModuleType, results: dict, key: str, ylabel: str, log: bool) -> Figure:
    """One panel per lambda: each method's curve ``key`` (mean, min-max band over seeds)."""
    rows, lambdas = results["methods"], results["preset"]["lambdas"]
    many = len(rows) > 6  # an ablation: a wider figure, distinct colours, the legend outside
    figure, axes = plt.subplots(
        1, len(lambdas), figsize=(5 * len(lambdas) + 3 * many, 4), squeeze=False
    )
    for axis, lmbda in zip(axes[0], lambdas, strict=True):
        if many:
            axis.set_prop_cycle(color=plt.cm.tab20.colors)
        for method in rows:
            curves = [
                r[key] for r in results["runs"] if r["method"] == method and r["lambda"] == lmbda
            ]
            if not curves or not curves[0]:
                continue
            steps = [step for step, _ in curves[0]]
            values = list(zip(*[[v for _, v in c] for c in curves], strict=True))
            axis.plot(steps, [fmean(v) for v in values], label=method)
            axis.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.2)
        axis.set_xlabel("step")
        axis.set_ylabel(ylabel)
        if log:
            axis.set_yscale("log")
        axis.set_title(f"lambda = {lmbda:g} (mean, min-max over seeds)", fontsize=9)
        if many:
            axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
        else:
            axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _rd_figure(plt: ModuleType, results: dict) -> Figure:
    """Each method's rate-distortion curve: mean bpp and PSNR over the seeds, per lambda."""
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for method in results["methods"]:
        groups = (
            [r for r in results["runs"] if r["method"] == method and r["lambda"] == x]
            for x in results["preset"]["lambdas"]
        )
        points = sorted((fmean(r["bpp"] for r in g), fmean(r["psnr"] for r in g)) for g in groups)
        axis.plot([p[0] for p in points], [p[1] for p in points], "o-", label=method)
    axis.set_xlabel("bpp (real bit streams, mean over seeds)")
    axis.set_ylabel("PSNR (dB)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def write_plots(results: dict, out: Path) -> None:
    """``loss_vs_step.png``, ``trainable_vs_step.png`` and, with several lambdas,
    ``rd_curves.png`` in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {
        "loss_vs_step.png": ("curve", "validation RD loss", True),
        "trainable_vs_step.png": ("trainable_curve", "trainable share of the parameters", False),
    }
    for name, (key, ylabel, log) in figures.items():
        figure = _curves_figure(plt, results, key, ylabel, log)
        files.write_atomic(out / name, lambda f, fig=figure: fig.savefig(f, format="png", dpi=80))
        plt.close(figure)
    if len(results["preset"]["lambdas"]) > 1:
        figure = _rd_figure(plt, results)
        files.write_atomic(out / "rd_curves.png", lambda f: figure.savefig(f, format="png", dpi=80))
        plt.close(figure)


def write_report(results: dict, out: Path) -> None:
    """``results.json``, ``report.md`` and the plots of a summary, in ``out``."""
    files.write_json(results, out / "results.json")
    files.write_text(markdown(results), out / "report.md")
    write_plots(results, out)


def rewrite_report(out: str | Path) -> dict:
    """Rebuild a finished comparison's summary and files from its ``results.json`` (after a change
    of the summary's rules or plots; no training)."""
    out = Path(out)
    saved = json.loads((out / "results.json").read_text())
    preset = preset_from_dict(saved["preset"])
    results = summarise(saved["runs"], list(preset.methods), preset)
    write_report(results, out)
    return results
