"""Time to quality (issue 14): how much training does each method need for the rate-distortion
quality of the baselines' finished models?

What: ``lic_train.experiments.time_to_quality`` with its ``cpu`` protocol: a hyperprior (N=32,
M=48), batch 8 of 128x128 crops of the built-in photographs, Adam lr 1e-3 with x0.1 at 90% of each
run (the field's step decay), T = 1200 steps, 3 seeds. Methods: Adam, Adam + EMA 0.999 (torch_ema's,
with its decay warm-up), Adam + SMA (k=5, beta=0.9), Adam + STDET and Adam + STDET + SMA (today's
defaults). Every method is trained at budgets 0.2, 0.4, 7/12, 0.8 and 1.0 of T at lambda 0.0018,
each budget's model finished with its own decay (branched off the full run before its decay), and
coded with real bit streams on the test photographs; then the paper's claim: the baselines' models
at T fine-tuned to lambdas 0.0035, 0.0067 and 0.013 for 80/120 of T, SMA's and STDET + SMA's models
at 70/120 of T fine-tuned for 50/120. Reported: quality versus budget, acceleration factors against
Adam and Adam + EMA with bootstrap intervals (steps and wall clock), the claim's BD-rates per test
image, and the checks that the scale decides something.

Run:  python benchmarks/time_to_quality.py                 # about an hour on 2 CPU cores
      python benchmarks/time_to_quality.py --quick         # smoke test, about a minute
      python benchmarks/time_to_quality.py --protocol gpu  # one GPU, 12 trainings at once
      python benchmarks/time_to_quality.py --report-only   # rebuild the report from --work
A stopped benchmark continues where it stopped when run again with the same --work (runs that
finished are not trained again). Files: benchmarks/results/time_to_quality[-gpu]/ (report.md,
results.json, three PNGs); the runs stay under --work (runs/benchmarks/..., ignored by git).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from lic_train.experiments.time_to_quality import PROTOCOLS, quick, run
    from lic_train.experiments.ttq_report import PLOTS, rewrite_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="cpu")
    parser.add_argument("--jobs", type=int, help="trainings at once (default: the protocol's)")
    parser.add_argument(
        "--work", type=Path, help="default: runs/benchmarks/time_to_quality-PROTOCOL"
    )
    parser.add_argument(
        "--results", type=Path, help="default: benchmarks/results/time_to_quality[-gpu]"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: a minute, not an hour")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: rebuild the report from --work's results.json")  # fmt: skip
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
    start = time.perf_counter()
    if not args.report_only:
        protocol = PROTOCOLS[args.protocol]
        if args.quick:
            protocol = quick(protocol)
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


if __name__ == "__main__":
    sys.exit(main())
