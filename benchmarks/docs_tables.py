"""The results tables of the documentation, rendered from the benchmarks' published
``results.json`` files, so that no number in a results table is copied by hand: each table belongs
to one page of ``docs/`` (``PAGES``), and ``tests/test_docs.py`` checks that every rendered line is
on its page.

Run:  python benchmarks/docs_tables.py        # every table, grouped by page; after
                                              # time_to_quality.py, stdet_stability.py,
                                              # ablations.py, trainer_throughput.py,
                                              # checkpoint_bitflips.py, nqm_scaling.py,
                                              # hostile_inputs.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import checkpoint_bitflips  # benchmarks/ is on sys.path when a script runs
import hostile_inputs
import nqm_scaling
import time_to_quality
import trainer_throughput

from lic_train.experiments import format_stat, report, ttq_report

# Earlier, shorter runs that the docs link to without their tables.
LINKED_ONLY = ("convergence", "convergence-raw")

# The page of docs/ that holds the tables of each folder of benchmarks/results/.
PAGES = {
    "ablation": "docs/results/earlier-runs.md",
    "checkpoint_bitflips": "docs/reliability.md",
    "hostile_inputs": "docs/reliability.md",
    "nqm_scaling": "docs/scaling.md",
    "stability": "docs/results/stdet-stability.md",
    "stability-2": "docs/results/stdet-stability.md",
    "time_to_quality": "docs/results/time-to-quality.md",
    "trainer_throughput": "docs/results/throughput.md",
}

RESULTS = Path(__file__).resolve().parent / "results"


def method_table(results: dict) -> list[str]:
    """One row per method: the claims' quantities as ratios to Adam, mean ± std over the runs
    (seeds x lambdas)."""
    lines = [
        "| method | steps to Adam's final loss / Adam's | final val loss / Adam's | trainable "
        "| BD-rate vs Adam (%) | time per step / Adam's | peak RSS / Adam's |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in results["methods"].items():
        lines.append(
            f"| {method} | {format_stat(row['steps_ratio'], 2)} "
            f"| {format_stat(row['final_loss_ratio'])} | {format_stat(row['trainable'], 2)} "
            f"| {format_stat(row.get('bd_rate_percent'), 1, missing='with usable curves')} "
            f"| {format_stat(row['time_ratio'], 2)} "
            f"| {format_stat(row['memory_ratio'], 2, missing='measurable')} |"
        )
    return lines


def rd_table(results: dict) -> list[str]:
    """Real bit streams per lambda: mean bpp and PSNR over the seeds, one column per method."""
    methods = list(results["methods"])
    lines = [
        "| lambda | " + " | ".join(f"{m}: bpp, PSNR (dB)" for m in methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for lmbda in results["preset"]["lambdas"]:
        cells = []
        for method in methods:
            runs = [r for r in results["runs"] if r["method"] == method and r["lambda"] == lmbda]
            bpp = statistics.fmean(r["bpp"] for r in runs)
            psnr = statistics.fmean(r["psnr"] for r in runs)
            cells.append(f"{bpp:.3f}, {psnr:.2f}")
        lines.append(f"| {lmbda:g} | " + " | ".join(cells) + " |")
    return lines


def throughput_tables(results: dict) -> list[str]:
    """The time and memory tables of ``benchmarks/trainer_throughput.py``, as its report has them."""
    settings = argparse.Namespace(**results["settings"])
    rendered = trainer_throughput.tables(results["time"], results["memory"], settings)
    return [
        line
        for head, rows in rendered
        for line in trainer_throughput.markdown(head, rows).splitlines()
    ]


def folder_tables(path: Path) -> dict[str, list[str]]:
    """``{name: table lines}`` of one published ``results.json`` (and its bit streams per lambda
    where it trained several lambdas)."""
    results = json.loads(path.read_text())
    name = path.parent.name
    if results.get("benchmark") == "trainer_throughput":
        return {name: throughput_tables(results)}
    if results.get("benchmark") == "checkpoint_bitflips":
        return {name: checkpoint_bitflips.table(results)}
    if results.get("benchmark") == "hostile_inputs":  # with the sweep of the version before
        before = path.parent / "before.json"
        earlier = json.loads(before.read_text()) if before.exists() else None
        return {name: hostile_inputs.table(results, earlier)}
    if results.get("benchmark") == "nqm_scaling":
        return nqm_scaling.tables(results)
    if "protocol" in results:  # time_to_quality.py
        out = {
            f"{name} quality": ttq_report.quality_table(results),
            f"{name} acceleration": ttq_report.acceleration_table(results),
        }
        if results["summary"]["claim"]:
            out[f"{name} claim"] = ttq_report.claim_table(results)
            out[f"{name} bit streams"] = ttq_report.rd_table(results)
        if (path.parent / "scales.json").exists():
            scales = json.loads((path.parent / "scales.json").read_text())
            out[f"{name} scales"] = time_to_quality.scale_table(scales)
        return out
    out = {name: method_table(results)}
    if report.stability_table(results):
        out[f"{name} stability"] = report.stability_table(results)
    if len(results["preset"]["lambdas"]) > 1:
        out[f"{name} bit streams"] = rd_table(results)
    return out


def pages() -> dict[str, dict[str, list[str]]]:
    """``{page: {name: table lines}}`` for every published benchmark but ``LINKED_ONLY``; a
    published folder without a page in ``PAGES`` is an error (its tables must live somewhere)."""
    out: dict[str, dict[str, list[str]]] = {}
    for path in sorted(RESULTS.glob("*/results.json")):
        folder = path.parent.name
        if folder in LINKED_ONLY:
            continue
        if folder not in PAGES:
            raise KeyError(f"benchmarks/results/{folder}/ has no page in docs_tables.PAGES")
        out.setdefault(PAGES[folder], {}).update(folder_tables(path))
    return out


def tables() -> dict[str, list[str]]:
    """``{name: table lines}`` of every page."""
    return {name: lines for page in pages().values() for name, lines in page.items()}


if __name__ == "__main__":
    for page, rendered in pages().items():
        print(f"# {page}\n")
        for name, lines in rendered.items():
            print(f"{name}:\n")
            print("\n".join(lines), end="\n\n")
