"""Time to quality: how much training does each method need for the rate-distortion
quality of the baselines' finished models?

What: ``lic_train.experiments.time_to_quality`` with its ``cpu`` protocol: a hyperprior (N=32,
M=48), batch 8 of 128x128 crops of the built-in photographs, Adam lr 1e-3 with x0.1 at 90% of each
run (the field's step decay), T = 1200 steps, 5 seeds. Methods: Adam, Adam + EMA 0.999 (torch_ema's,
with its decay warm-up), Adam + EMA 0.98 (a 50-step horizon), Adam + SMA (k=5, beta=0.9), Adam +
STDET and Adam + STDET + SMA (today's defaults). Every method is trained at budgets 0.2, 0.4, 7/12,
0.8 and 1.0 of T at lambda 0.0018, each budget's model finished with its own decay (branched off
the full run before its decay), and coded with real bit streams on the test photographs; then the
paper's claim: the baselines' models at T fine-tuned to lambdas 0.0035, 0.0067 and 0.013 for 80/120
of T, SMA's and STDET + SMA's models at 70/120 of T fine-tuned for 50/120. Reported: quality versus
budget, acceleration factors against Adam and Adam + EMA with bootstrap intervals (steps and wall
clock), the claim's BD-rates per test image, and the checks that the scale decides something.

Run:  python benchmarks/time_to_quality.py                 # about an hour on 2 CPU cores
      python benchmarks/time_to_quality.py --quick         # smoke test, about a minute
      python benchmarks/time_to_quality.py --protocol gpu  # one GPU, 12 trainings at once
      python benchmarks/time_to_quality.py --report-only   # rebuild the report from --work
      python benchmarks/time_to_quality.py --scales        # the scale table: time per step of
                                                           # candidate sizes, one thread each
A stopped benchmark continues where it stopped when run again with the same --work (runs that
finished are not trained again). Files: benchmarks/results/time_to_quality[-gpu]/ (report.md,
results.json, three PNGs); the runs stay under --work (runs/benchmarks/..., ignored by git).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from lic_dynamics import files

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from lic_train.experiments.time_to_quality import PROTOCOLS, quick, run
    from lic_train.experiments.ttq_report import PLOTS, rewrite_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="cpu")
    parser.add_argument("--jobs", type=int, help="trainings at once (default: the protocol's)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help="method specs, adam first (default: the protocol's); runs already "
                             "in --work are not trained again")  # fmt: skip
    parser.add_argument(
        "--work", type=Path, help="default: runs/benchmarks/time_to_quality-PROTOCOL"
    )
    parser.add_argument(
        "--results", type=Path, help="default: benchmarks/results/time_to_quality[-gpu]"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: a minute, not an hour")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: rebuild the report from --work's results.json")  # fmt: skip
    parser.add_argument("--scales", action="store_true",
                        help="time the candidate sizes (the scale table), then exit")  # fmt: skip
    args = parser.parse_args()
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    suffix = "-quick" if args.quick else ""
    args.work = (
        args.work or ROOT / "runs" / "benchmarks" / f"time_to_quality-{args.protocol}{suffix}"
    )
    published = "time_to_quality" + ("" if args.protocol == "cpu" else f"-{args.protocol}")
    args.results = args.results or (
        args.work / "published" if args.quick else ROOT / "benchmarks" / "results" / published
    )
    if args.scales:
        table = scales(PROTOCOLS[args.protocol], quick=args.quick)
        results = args.results if not args.quick else args.work
        results.mkdir(parents=True, exist_ok=True)
        files.write_json(table, results / "scales.json")
        print("\n".join(scale_table(table)))
        return 0
    start = time.perf_counter()
    if not args.report_only:
        protocol = PROTOCOLS[args.protocol]
        if args.quick:
            protocol = quick(protocol)
        if args.methods:
            try:
                protocol = replace(protocol, methods=tuple(args.methods))
            except ValueError as error:
                parser.error(f"--methods: {error}")
        run(protocol, args.work, jobs=args.jobs,
            on_log=lambda r: print(f"[{r['index']}/{r['of']}] {r['run']}", file=sys.stderr,
                                   flush=True))  # fmt: skip
    else:
        rewrite_report(args.work)
    args.results.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "results.json", *PLOTS):
        shutil.copyfile(args.work / name, args.results / name)
    print((args.work / "report.md").read_text())
    print(f"{time.perf_counter() - start:.0f} s; files in {args.results}")
    return 0


# The candidate sizes of the scale table: (N, M, patch side, batch).
CANDIDATES = ((32, 48, 128, 8), (32, 48, 128, 16), (32, 48, 256, 8), (64, 96, 128, 8),
              (128, 192, 128, 8))  # fmt: skip
LENGTHS = (600, 1200, 2400)  # T


def scales(protocol, quick: bool = False) -> dict:
    """Seconds per training step of each candidate size (``CANDIDATES``) on one thread, as each of
    two trainings at once gets on 2 cores: 40 steps of Adam (the first 10 not counted), and the
    minutes the whole protocol would take at each T of ``LENGTHS`` with ``protocol.jobs`` at once,
    counting training steps only."""
    import tempfile

    import torch

    from lic_train.experiments.time_to_quality import plan
    from lic_train.trainer.loop import fit

    torch.set_num_threads(1)
    rows = []
    for n, m, side, batch in CANDIDATES[:1] if quick else CANDIDATES:
        config = replace(protocol.base, N=n, M=m, patch_size=(side, side), batch_size=batch,
                         validate_every=10_000, log_every=2 if quick else 10,
                         device="cpu")  # fmt: skip
        seconds = []
        with tempfile.TemporaryDirectory() as folder:
            fit(replace(config, steps=4 if quick else 40), Path(folder) / "run",
                on_log=lambda r, s=seconds: s.append((r["step"], r["wall_time"]))
                if "split" not in r else None)  # fmt: skip
        (first, t0), (last, t1) = seconds[0], seconds[-1]
        per_step = (t1 - t0) / (last - first)
        minutes = []
        for steps in LENGTHS:
            sized = replace(protocol, base=replace(protocol.base, steps=steps))
            total = sum(j.config.steps - (j.start[1] if j.start else 0)
                        for phase in plan(sized) for j in phase)  # fmt: skip
            minutes.append(total * per_step / protocol.jobs / 60)
        rows.append({"N": n, "M": m, "patch": side, "batch": batch, "seconds_per_step": per_step,
                     "minutes": minutes})  # fmt: skip
    return {"jobs": protocol.jobs, "lengths": list(LENGTHS), "rows": rows}


def scale_table(table: dict) -> list[str]:
    """The scale table as markdown."""
    lines = ["| N, M | patch | batch | s/step (1 thread) | "
             + " | ".join(f"minutes at T = {t}" for t in table["lengths"]) + " |",
             "|---|---|---|---|" + "---|" * len(table["lengths"])]  # fmt: skip
    for row in table["rows"]:
        minutes = " | ".join(f"{value:.0f}" for value in row["minutes"])
        lines.append(f"| {row['N']}, {row['M']} | {row['patch']} | {row['batch']} | "
                     f"{row['seconds_per_step']:.3f} | {minutes} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    sys.exit(main())
