"""Writes the result of ``nqm verify``: ``report.md``, ``claims.json`` and two plots.

Every file is written to a temporary name in the target folder and renamed into place, so a crash
never leaves a half-written report behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from lic_dynamics.files import write_atomic
from nqm import closed_form, scaling
from nqm.verify import Claim, Curves, Settings

HEATMAP_KS = (1, 2, 5, 20)


def write(out: Path, claims: list[Claim], curves: Curves, settings: Settings) -> list[Path]:
    """Writes every file of the report into ``out`` (created if needed); returns their paths.

    Examples:
        >>> import tempfile
        >>> from nqm.verify import Claim, Settings, standard_curves
        >>> claims = [Claim("demo", "1 + 1 = 2", holds=True, evidence="by hand")]
        >>> curves = standard_curves(Settings(quick=True))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sorted(p.name for p in write(Path(folder), claims, curves, Settings(quick=True)))
        ['claims.json', 'loss_curves.png', 'ratio_heatmap.png', 'report.md']
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        write_atomic(out / "ratio_heatmap.png", lambda f: _heatmap().savefig(f, dpi=110)),
        write_atomic(out / "loss_curves.png", lambda f: _loss_figure(curves).savefig(f, dpi=110)),
    ]
    plt.close("all")
    payload = {
        "all_hold": all(c.holds for c in claims),
        "settings": {"seed": settings.seed, "quick": settings.quick},
        "claims": [c.__dict__ for c in claims],
    }
    paths.append(
        write_atomic(out / "claims.json", lambda f: f.write(json.dumps(payload, indent=2).encode()))
    )
    paths.append(
        write_atomic(out / "report.md", lambda f: f.write(markdown(claims, settings).encode()))
    )
    return paths


def table_rows(claims: list[Claim]) -> list[tuple[str, str, str]]:
    """``(statement, evidence, verdict)`` per claim.

    Examples:
        >>> table_rows([Claim("demo", "1 + 1 = 2", holds=False, evidence="3")])
        [('1 + 1 = 2', '3', 'FAILS')]
    """
    return [(c.statement, c.evidence, "holds" if c.holds else "FAILS") for c in claims]


def markdown(claims: list[Claim], settings: Settings) -> str:
    """``report.md`` of ``nqm verify``.

    Examples:
        >>> text = markdown([Claim("demo", "1 + 1 = 2", True, "by hand")], Settings(quick=True))
        >>> text.splitlines()[0], "| 1 + 1 = 2 | by hand | holds |" in text
        ('# nqm verify: the variance claims on the noisy quadratic model', True)
    """
    mode = "quick" if settings.quick else "default"
    lines = [
        "# nqm verify: the variance claims on the noisy quadratic model",
        "",
        f"Run: `nqm verify{' --quick' if settings.quick else ''} --seed {settings.seed}` "
        f"({mode} sizes). Verdict: "
        + ("**every claim holds**." if all(c.holds for c in claims) else "**a claim FAILS**."),
        "",
        "| claim | evidence | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {s} | {e} | {v} |" for s, e, v in table_rows(claims)]
    lines += [
        "",
        "R is the steady-state variance of the readout (the average for SMA, EMA and Lookahead) "
        "divided by SGD's at the same learning rate; rho = lr*h, u = (1-rho)^k.",
        "",
        "![R over (rho, beta)](ratio_heatmap.png)",
        "",
        "![loss versus step](loss_curves.png)",
        "",
        "Numbers behind each row: `claims.json`.",
        "",
    ]
    return "\n".join(lines)


def _heatmap() -> plt.Figure:
    """R over (rho, beta) for a few k. The beta < 0 strip is not an SMA any rule accepts; it is
    drawn so that the R = 1 contour is visible: it is exactly beta = 0 for every rho and k."""
    rho = np.linspace(0.002, 1.998, 400)
    beta = np.linspace(-0.5, 0.995, 400)
    rr, bb = np.meshgrid(rho, beta)
    fig, axes = plt.subplots(
        1, len(HEATMAP_KS), figsize=(4 * len(HEATMAP_KS), 3.8), sharey=True, constrained_layout=True
    )
    norm = LogNorm(vmin=1e-3, vmax=1e3)  # centred on R = 1 in log scale
    for ax, k in zip(axes, HEATMAP_KS, strict=True):
        ratio = closed_form.sma_ratio(bb, rr, k)
        image = ax.pcolormesh(rho, beta, ratio, norm=norm, cmap="RdBu_r", shading="auto")
        contours = ax.contour(
            rho, beta, ratio, levels=[0.01, 0.1, 0.5, 0.9], colors="0.2", linewidths=0.7
        )
        ax.clabel(contours, fmt="R=%g", fontsize=7)
        ax.contour(rho, beta, ratio, levels=[1.0], colors="black", linewidths=2.0)
        ax.axhspan(-0.5, 0.0, facecolor="none", hatch="//", edgecolor="0.5", linewidth=0)
        ax.text(1.0, -0.25, "beta < 0: no SMA (R > 1)", ha="center", va="center", fontsize=8)
        ax.set_title(f"SMA, k = {k}  (black: R = 1)")
        ax.set_xlabel("rho = lr * h")
    axes[0].set_ylabel("beta")
    fig.colorbar(image, ax=axes, label="R = Var_SMA / Var_SGD (steady state)")
    return fig


def _loss_figure(curves: Curves) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, exact, mc in zip(curves.labels, curves.exact, curves.sampled, strict=True):
        after_start = exact.steps >= 1  # the log axis has no step 0; all rules start equal there
        steps = exact.steps[after_start]
        (line,) = ax.plot(steps, exact.loss[after_start], label=label)
        color = line.get_color()
        band = 1.96 * mc.loss_se[after_start]
        center = mc.loss[after_start]
        ax.fill_between(steps, center - band, center + band, color=color, alpha=0.3, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("expected loss of the readout")
    chains = curves.sampled[0].chains
    ax.set_title(
        f"{curves.problem_label}, B = 1: exact (lines), "
        f"Monte Carlo 95% CI over {chains} chains (bands)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    return fig


# ---- nqm scaling ------------------------------------------------------------------------------------


def write_scaling(out: Path, study: scaling.Study) -> list[Path]:
    """Writes ``scaling.json`` (settings and records), ``report.md`` and the plots ``steps.png``
    and ``lr.png`` into ``out`` (created if needed); returns their paths.

    Examples:
        >>> import tempfile
        >>> result = scaling.study(["sgd"], batches=[4, 64], dim=100, target=0.1)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sorted(p.name for p in write_scaling(Path(folder), result))
        ['lr.png', 'report.md', 'scaling.json', 'steps.png']
    """
    out.mkdir(parents=True, exist_ok=True)
    bound = scaling.examples_needed(_instance(study), study.target)
    paths = [
        write_atomic(out / "steps.png", lambda f: _steps_figure(study, bound).savefig(f, dpi=110)),
        write_atomic(out / "lr.png", lambda f: _lr_figure(study).savefig(f, dpi=110)),
    ]
    plt.close("all")
    payload = {"settings": study.settings(), "examples_needed": bound, "records": study.records()}
    paths.append(
        write_atomic(
            out / "scaling.json", lambda f: f.write(json.dumps(payload, indent=2).encode())
        )
    )
    paths.append(
        write_atomic(out / "report.md", lambda f: f.write(scaling_markdown(study, bound).encode()))
    )
    return paths


def _instance(study: scaling.Study) -> scaling.Instance:
    return scaling.exact(study.dim) if study.bins is None else scaling.binned(study.dim, study.bins)


def _batch_label(batch: int | None) -> str:
    return "inf" if batch is None else str(batch)


def scaling_markdown(study: scaling.Study, bound: int) -> str:
    """The tables of ``nqm scaling``: steps and tuned hyperparameters per batch size, and each
    family's critical batch size.

    Examples:
        >>> result = scaling.study(["sgd"], batches=[4, 64], dim=100, target=0.1)
        >>> [line for line in scaling_markdown(result, 999).splitlines() if line.startswith("| 4 |")]
        ['| 4 | 442 |', '| 4 | 0.2143 |']
    """
    names = list(study.tuned)
    source = "every coordinate (exact)" if study.bins is None else f"{study.bins} bins"
    lines = [
        "# nqm scaling: steps to a target loss versus batch size",
        "",
        f"Standard NQM, d = {study.dim}, {source}; target E[L] <= {study.target:g}; learning rate "
        f"tuned per batch size; preconditioner P = h^-{study.precondition:g} for `precond-*`. "
        f"{study.evaluations} steps-to-target searches in {study.seconds:.1f} s on "
        f"{study.workers} worker(s). Any algorithm needs at least {bound} examples "
        "(the information bound), so at least that many divided by B steps.",
        "",
        "| B | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row, batch in enumerate([*study.batches, None]):
        cells = []
        for n in names:
            t = study.tuned[n][row]
            cells.append("unreachable" if t.steps is None else str(t.steps))
        lines.append(f"| {_batch_label(batch)} | " + " | ".join(cells) + " |")
    lines += ["", "Tuned hyperparameters (lr and the grid's choice):", "",
              "| B | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]  # fmt: skip
    for row, batch in enumerate([*study.batches, None]):
        cells = []
        for n in names:
            t = study.tuned[n][row]
            extra = ", ".join(f"{k}={v:g}" for k, v in t.point.items())
            cells.append("-" if t.lr is None else f"{t.lr:.4g}" + (f" ({extra})" if extra else ""))
        lines.append(f"| {_batch_label(batch)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| rule | noiseless minimum S_min | critical batch (S = 2 S_min) |",
        "|---|---|---|",
    ]
    for name, crit in study.critical().items():
        where = crit.short()
        if crit.batch is not None and crit.where != "inside":
            where += f" ({crit.where} the sweep)"
        lines.append(f"| {name} | {crit.min_steps} | {where} |")
    claims = scaling.findings(study.records(), examples=bound)
    if claims:
        lines += ["", "| finding | evidence | verdict |", "|---|---|---|"]
        lines += [f"| {s} | {e} | {v} |" for s, e, v in table_rows(claims)]
    lines += ["", "![steps versus batch size](steps.png)", "", "![tuned lr](lr.png)", ""]
    return "\n".join(lines)


def _steps_figure(study: scaling.Study, bound: int) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    batches = np.array(study.batches, dtype=float)
    for name, column in study.tuned.items():
        steps = np.array([np.nan if t.steps is None else t.steps for t in column[:-1]], dtype=float)
        (line,) = ax.plot(batches, steps, marker="o", markersize=3, label=name)
        crit = scaling.critical_batch(column)
        if crit.where == "inside":
            ax.plot([crit.batch], [2 * crit.min_steps], marker="*", markersize=11,
                    color=line.get_color(), linestyle="none")  # fmt: skip
    first = study.tuned[next(iter(study.tuned))][0]
    if first.steps is not None:
        ax.plot(batches, first.steps * batches[0] / batches, "k:", linewidth=1,
                label="perfect scaling (1/B)")  # fmt: skip
    ax.plot(batches, np.maximum(bound / batches, 1), "k-.", linewidth=1,
            label="information bound N*/B")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("batch size B")
    ax.set_ylabel(f"steps to E[L] <= {study.target:g} (lr tuned)")
    ax.set_title("stars: critical batch size (steps = 2x the noiseless minimum)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _lr_figure(study: scaling.Study) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    batches = np.array(study.batches, dtype=float)
    for name, column in study.tuned.items():
        lr = np.array([np.nan if t.lr is None else t.lr for t in column[:-1]], dtype=float)
        ax.plot(batches, lr, marker="o", markersize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("tuned learning rate")
    ax.legend(fontsize=8)
    return fig
