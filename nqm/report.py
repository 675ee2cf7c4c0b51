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
from nqm import closed_form
from nqm.verify import Claim, Curves, Settings

HEATMAP_KS = (1, 2, 5, 20)


def write(out: Path, claims: list[Claim], curves: Curves, settings: Settings) -> list[Path]:
    """Writes every file of the report into ``out`` (created if needed); returns their paths."""
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
    return [(c.statement, c.evidence, "holds" if c.holds else "FAILS") for c in claims]


def markdown(claims: list[Claim], settings: Settings) -> str:
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
