"""The README's results tables, rendered from the benchmarks' published ``results.json`` files, so
that no number in the README is copied by hand (``tests/test_readme.py`` checks they match).

Run:  python benchmarks/readme_tables.py      # after time_to_quality.py, ablations.py,
                                              # trainer_throughput.py, nqm_scaling.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import checkpoint_bitflips  # benchmarks/ is on sys.path when a script runs
import nqm_scaling
import time_to_quality
import trainer_throughput

from lic_train.experiments import format_stat, report, ttq_report

# Earlier, shorter runs that the README links to without their tables.
LINKED_ONLY = ("convergence", "convergence-raw")

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


def tables() -> dict[str, list[str]]:
    """``{name: table lines}`` for every published benchmark (and its bit streams per lambda
    where it trained several lambdas)."""
    out = {}
    for path in sorted(RESULTS.glob("*/results.json")):
        results = json.loads(path.read_text())
        if results.get("benchmark") == "trainer_throughput":
            out[path.parent.name] = throughput_tables(results)
            continue
        if results.get("benchmark") == "checkpoint_bitflips":
            out[path.parent.name] = checkpoint_bitflips.table(results)
            continue
        if results.get("benchmark") == "nqm_scaling":
            out.update(nqm_scaling.tables(results))
            continue
        if path.parent.name in LINKED_ONLY:
            continue
        if "protocol" in results:  # time_to_quality.py
            name = path.parent.name
            out[f"{name} quality"] = ttq_report.quality_table(results)
            out[f"{name} acceleration"] = ttq_report.acceleration_table(results)
            if results["summary"]["claim"]:
                out[f"{name} claim"] = ttq_report.claim_table(results)
                out[f"{name} bit streams"] = ttq_report.rd_table(results)
            if (path.parent / "scales.json").exists():
                scales = json.loads((path.parent / "scales.json").read_text())
                out[f"{name} scales"] = time_to_quality.scale_table(scales)
            continue
        out[path.parent.name] = method_table(results)
        if report.stability_table(results):
            out[f"{path.parent.name} stability"] = report.stability_table(results)
        if len(results["preset"]["lambdas"]) > 1:
            out[f"{path.parent.name} bit streams"] = rd_table(results)
    return out


if __name__ == "__main__":
    for name, lines in tables().items():
        print(f"{name}:\n")
        print("\n".join(lines), end="\n\n")
