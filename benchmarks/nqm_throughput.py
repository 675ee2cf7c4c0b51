"""Monte Carlo throughput of ``nqm.montecarlo.simulate`` against the cost of its random numbers.

What: coordinate-steps per second (chains * d * steps / seconds) of ``simulate`` for SGD(lr=0.5)
and SMA(SGD(0.5), k=5, beta=0.9) on ``nqm.standard(dim=d)``, with ``per_coordinate=False`` and only
the last step recorded, and its ratio to a floor: merely drawing the same standard normals
(``Generator.standard_normal`` into a preallocated buffer of the chunk shape ``simulate`` uses,
``max(1, min(chains, max_elements // d))`` rows of d, one initial draw plus one per step and chunk).
The project's goal is a ratio >= 0.5.

How: for each d, ``--repeats`` rounds alternating normals / SGD / SMA in one process; each row gives
the median throughput, its min-max spread, and the ratio of medians. At defaults one measurement
takes about 1-3 s (2e8 coordinate-steps); the run takes about a minute.

Run:  python benchmarks/nqm_throughput.py            # defaults: d = 1e4 and 1e6
      python benchmarks/nqm_throughput.py --quick    # under 10 s
      python benchmarks/nqm_throughput.py --json     # a JSON list instead of the table
It always exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
from _table import render  # benchmarks/ is on sys.path when a script runs

import nqm
from nqm.montecarlo import simulate

GOAL = 0.5
MAX_ELEMENTS = 1 << 20  # simulate's default
COORDS_PER_STEP = 2_000_000  # default chains * d


def chunk_sizes(chains: int, d: int) -> list[int]:
    """Chain counts per chunk, exactly as ``simulate`` splits them."""
    chunk = max(1, min(chains, MAX_ELEMENTS // d))
    return [chunk] * (chains // chunk) + ([chains % chunk] if chains % chunk else [])


def draw_normals(d: int, chains: int, steps: int) -> None:
    """The floor: the normals ``simulate`` draws (initial state + one per step), nothing else."""
    rng = np.random.default_rng(0)
    for size in chunk_sizes(chains, d):
        buf = np.empty((size, d))
        for _ in range(steps + 1):
            rng.standard_normal(out=buf)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(d: int, chains: int, steps: int, repeats: int) -> list[dict[str, object]]:
    problem = nqm.standard(dim=d)
    record = np.array([steps])
    rules: dict[str, nqm.Rule] = {
        "SGD": nqm.SGD(lr=0.5),
        "SMA": nqm.SMA(nqm.SGD(0.5), k=5, beta=0.9),
    }
    jobs: dict[str, Callable[[], object]] = {"normals": lambda: draw_normals(d, chains, steps)}
    for name, rule in rules.items():
        jobs[name] = lambda rule=rule: simulate(
            problem, rule, steps, chains, record=record, per_coordinate=False
        )
    work = chains * d * steps
    rates: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit all alike
        for name, fn in jobs.items():
            rates[name].append(work / timed(fn))
    floor = statistics.median(rates["normals"])
    rows = []
    for name, r in rates.items():
        ratio = statistics.median(r) / floor
        rows.append(
            {
                "rule": name,
                "d": d,
                "chains": chains,
                "steps": steps,
                "repeats": repeats,
                "mcoord_steps_per_s": statistics.median(r) / 1e6,
                "min": min(r) / 1e6,
                "max": max(r) / 1e6,
                "ratio_to_normals": ratio,
                "meets_goal": None if name == "normals" else ratio >= GOAL,
            }
        )
    return rows


def table(rows: list[dict[str, object]]) -> str:
    head = ("rule", "d", "chains", "steps", "Mcoord-steps/s", "(min-max)", "ratio", f">={GOAL}")
    lines = []
    for r in rows:
        goal = "" if r["meets_goal"] is None else ("yes" if r["meets_goal"] else "NO")
        lines.append(
            (
                str(r["rule"]),
                f"{r['d']:.0e}".replace("e+0", "e"),
                str(r["chains"]),
                str(r["steps"]),
                f"{r['mcoord_steps_per_s']:.1f}",
                f"({r['min']:.1f}-{r['max']:.1f})",
                f"{r['ratio_to_normals']:.3f}",
                goal,
            )
        )
    return render(head, lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, help="optimizer steps (default 100)")
    p.add_argument("--chains", type=int, help=f"default {COORDS_PER_STEP:.0e} // d, at least 2")
    p.add_argument("--dims", type=int, nargs="+", default=[10**4, 10**6], help="default 1e4 1e6")
    p.add_argument("--quick", action="store_true", help="default to 3 repeats of 10 steps (<10 s)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    args = p.parse_args()
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    steps = args.steps if args.steps is not None else (10 if args.quick else 100)
    if min(repeats, steps, *args.dims) < 1 or (args.chains is not None and args.chains < 2):
        p.error("--repeats, --steps and --dims must be >= 1, --chains >= 2")
    rows = []
    for d in args.dims:
        chains = args.chains if args.chains is not None else max(2, COORDS_PER_STEP // d)
        rows += bench(d, chains, steps, repeats)
    print(json.dumps(rows, indent=1) if args.json else table(rows))


if __name__ == "__main__":
    main()
