"""Shared driver of the training benchmarks (``convergence.py``, ``ablations.py``): run a preset
of ``lic_train.experiments``, then publish its small files (report, results, plots) for the docs.

The runs (checkpoints, TensorBoard logs) stay under ``--work`` (ignored by git); ``report.md``,
``results.json`` and the PNGs are copied to ``--results``. ``--quick`` is a smoke test: 2 seeds,
a few steps of a tiny network, small crops. ``--report-only`` rebuilds the report of the runs in
``--work`` without training.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("report.md", "results.json", "loss_vs_step.png", "trainable_vs_step.png",
             "rd_curves.png")  # fmt: skip


def main(preset_name: str, doc: str) -> int:
    from lic_train.experiments import PRESETS, rewrite_report
    from lic_train.experiments.compare import compare

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--preset", choices=tuple(PRESETS), default=preset_name)
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (default 2)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the preset's (0 1 2)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help="method specs, adam first (default: the preset's)")  # fmt: skip
    parser.add_argument("--steps", type=int, help="default: the preset's")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--work", type=Path, help="default: runs/benchmarks/PRESET")
    parser.add_argument("--results", type=Path, help="default: benchmarks/results/PRESET")
    parser.add_argument("--quick", action="store_true", help="smoke test: seconds, not minutes")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: rebuild the report from --work's results.json")  # fmt: skip
    args = parser.parse_args()
    # A smoke test (--quick) never touches the real runs or the published results.
    suffix = "-quick" if args.quick else ""
    args.work = args.work or ROOT / "runs" / "benchmarks" / f"{args.preset}{suffix}"
    args.results = args.results or (
        args.work / "published" if args.quick else ROOT / "benchmarks" / "results" / args.preset
    )

    if args.report_only:
        rewrite_report(args.work)
        publish(args.work, args.results)
        return 0

    preset = PRESETS[args.preset]
    if args.seeds:
        preset = replace(preset, seeds=tuple(args.seeds))
    if args.steps:
        preset = replace(preset, base=replace(preset.base, steps=args.steps))
    if args.methods:
        preset = replace(preset, methods=tuple(args.methods))
    if args.quick:
        preset = replace(
            preset,
            seeds=(0, 1),
            base=replace(preset.base, quality=None, N=8, M=12, patch_size=(64, 64), batch_size=2, steps=12,
                         validate_every=4, checkpoint_every=12, log_every=4),
            stdet=replace(preset.stdet, snapshot_every=1, snapshots=3, every=2, samples=100),
            methods=preset.methods[:3] if len(preset.methods) > 4 else preset.methods,
        )  # fmt: skip
        if len(preset.lambdas) > 1:
            preset = replace(preset, lambdas=preset.lambdas[:4])
    if args.work.exists() and any(args.work.iterdir()) and not (args.work / "runs").is_dir():
        parser.error(f"--work {args.work} holds files that are not a comparison; choose another")
    if args.work.exists():
        shutil.rmtree(args.work)  # a benchmark starts from scratch; its runs are not kept apart
    start = time.perf_counter()
    compare(
        preset,
        args.work,
        device=args.device,
        jobs=args.jobs,
        on_log=lambda r: print(f"[{r['index']}/{r['of']}] {r['run']}", file=sys.stderr, flush=True),
    )
    publish(args.work, args.results)
    print(f"{time.perf_counter() - start:.0f} s, {args.jobs} at once; files in {args.results}")
    return 0


def publish(work: Path, results: Path) -> None:
    """Copy the comparison's small files to ``results`` and print its report."""
    results.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED:
        if (work / name).exists():
            shutil.copyfile(work / name, results / name)
    print((work / "report.md").read_text())
