"""Which averaging matters at which batch size: the default ``nqm scaling`` sweep, timed, with the
checks that make its numbers trustworthy.

1. The default sweep (all rules, B = 4 ... 2^21 and no noise, C = 0.01, p = 0.5, exact over all
   d = 10^4 coordinates) on ``--workers`` processes: wall time (goal: under 60 s on 2 cores) and the
   throughput of the steps-to-target search (searches per second and per core).
2. The same sweep with the notebook's 100 bins: how far the approximation is from the exact answer.
3. Every tuned result of at most ``--scan-limit`` steps checked against a step-by-step scan of the
   exact expected loss (:meth:`nqm.scaling.Ladder.losses`): is the reported step the first at which
   E[L] <= C? Where not, by how much it is late.
4. The tuner's shortcuts: SGD, EMA and SMA re-tuned with a 1000x tighter lr tolerance (1e-6), and
   with Brent's method run at every grid point instead of the best three on the coarse grid: the
   largest change in the tuned steps.
5. The hyperparameter grids: momentum and EMA re-tuned over the notebook's 20 values of mu and of the
   decay instead of the default ten: the largest saving the finer grid finds.

Writes ``results.json`` (settings, records, binned records, checks, findings) and, through
``nqm.report.write_scaling``, ``report.md``, ``scaling.json`` and the plots into
``benchmarks/results/nqm_scaling`` (or ``--out``); the tables of docs/scaling.md are rendered from
``results.json`` by ``benchmarks/docs_tables.py``.

    python benchmarks/nqm_scaling.py [--workers 2] [--scan-limit 20000] [--out DIR]

About 2 minutes on 2 cores. It always exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from lic_dynamics.files import write_atomic
from nqm import report, scaling
from nqm.verify import Claim

RESULTS = Path(__file__).resolve().parent / "results" / "nqm_scaling"


def scan_check(study: scaling.Study, limit: int) -> list[dict]:
    """Each tuned result with at most ``limit`` steps, against the first crossing of a scan."""
    instance = scaling.exact(study.dim)
    problem = instance.problem(1)
    rows = []
    for name, column in study.tuned.items():
        family = scaling.FAMILIES[name]
        for t in column:
            if t.steps is None or t.steps > limit:
                continue
            rule = family.rule(t.lr, study.precondition, t.point)
            sigma2 = instance.c / t.batch if t.batch else np.zeros_like(instance.h)
            loss = scaling.Ladder(rule, problem, instance.weight).losses(
                sigma2, t.steps // rule.period
            )
            first = int(np.argmax(loss <= study.target)) * rule.period
            rows.append({"rule": name, "batch": t.batch, "steps": t.steps, "first": first})
    return rows


def tolerance_check(study: scaling.Study, workers: int) -> dict:
    """SGD, EMA and SMA re-tuned at a relative lr tolerance of 1e-6 instead of the default, and
    with every grid point refined instead of the best ``scaling.REFINE``."""
    instance = scaling.exact(study.dim)
    batches = [*study.batches, None]
    out = {"tolerance": 1e-6, "default_tolerance": scaling.LR_TOLERANCE,
           "default_refine": scaling.REFINE}  # fmt: skip
    for key, options in (("tight", {"tolerance": 1e-6}), ("refine_all", {"refine": None})):
        start = time.perf_counter()
        changes = []
        for name in ("sgd", "ema", "sma"):
            again = scaling.tune(instance, scaling.FAMILIES[name], batches, study.target,
                                 study.precondition, **options)  # fmt: skip
            for old, new in zip(study.tuned[name], again, strict=True):
                changes.append({"rule": name, "batch": old.batch, "default": old.steps,
                                "again": new.steps})  # fmt: skip
        out[key] = {"changes": changes, "seconds": time.perf_counter() - start}
    return out


def grid_check(study: scaling.Study, workers: int) -> dict:
    """Momentum and EMA re-tuned over the notebook's 20-value grid, 1 - logspace(-5, 0, 20) (0, that
    is plain SGD, included), instead of the default ten values."""
    notebook = tuple(float(v) for v in 1 - np.logspace(-5, 0, 20))
    families = [
        dataclasses.replace(scaling.FAMILIES["momentum"], grid=tuple({"mu": m} for m in notebook)),
        dataclasses.replace(scaling.FAMILIES["ema"], grid=tuple({"beta": b} for b in notebook)),
    ]
    start = time.perf_counter()
    fine = scaling.sweep(scaling.exact(study.dim), families, [*study.batches, None], study.target,
                         study.precondition, workers)  # fmt: skip
    changes = [
        {"rule": name, "batch": old.batch, "default": old.steps, "notebook": new.steps,
         "point": new.point}
        for name, column in fine.items()
        for old, new in zip(study.tuned[name], column, strict=True)
    ]  # fmt: skip
    return {"grid": notebook, "default": list(scaling.DECAYS), "changes": changes,
            "seconds": time.perf_counter() - start}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    parser.add_argument("--scan-limit", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="no sweep: rebuild the findings of OUT/results.json and OUT/report.md from its "
        "stored records (after a change to the findings, not to the sweep)",
    )
    args = parser.parse_args()
    if args.report_only:
        return report_only(args.out)

    exact = scaling.study(workers=args.workers)
    searches = exact.evaluations
    print(f"exact sweep: {exact.seconds:.1f} s on {args.workers} workers, {searches} searches "
          f"({searches / exact.seconds:.0f}/s)", flush=True)  # fmt: skip
    binned = scaling.study(bins=100, workers=args.workers)
    print(f"binned sweep: {binned.seconds:.1f} s", flush=True)
    start = time.perf_counter()
    scans = scan_check(exact, args.scan_limit)
    scan_seconds = time.perf_counter() - start
    late = [r for r in scans if r["first"] != r["steps"]]
    print(f"scan check: {len(scans)} results, {len(late)} not the first crossing "
          f"({scan_seconds:.0f} s)", flush=True)  # fmt: skip
    tolerance = tolerance_check(exact, args.workers)
    print(f"tolerance and refinement checks: {tolerance['tight']['seconds']:.0f} s, "
          f"{tolerance['refine_all']['seconds']:.0f} s", flush=True)  # fmt: skip
    grid = grid_check(exact, args.workers)
    print(f"grid check: {grid['seconds']:.0f} s", flush=True)

    bound = scaling.examples_needed(scaling.exact(exact.dim), exact.target)
    claims = scaling.findings(exact.records(), binned.records(), examples=bound)
    report.write_scaling(args.out, exact)
    payload = {
        "benchmark": "nqm_scaling",
        "settings": exact.settings(),
        "cores": os.cpu_count(),
        "searches_per_second": searches / exact.seconds,
        "searches_per_second_per_worker": searches / exact.seconds / args.workers,
        "examples_needed": bound,
        "records": exact.records(),
        "binned": {"settings": binned.settings(), "records": binned.records()},
        "scan": {"limit": args.scan_limit, "seconds": scan_seconds, "rows": scans},
        "tolerance": tolerance,
        "grid": grid,
        "findings": [c.__dict__ for c in claims],
    }
    _write_results(args.out, payload)
    _print_findings(claims)
    return 0


def report_only(out: Path) -> int:
    """The findings of ``out/results.json`` and ``out/report.md`` rebuilt from the records stored in
    results.json, without a sweep. Every other field of results.json keeps its bytes; scaling.json
    and the plots, which hold no findings, are left as they are."""
    results = json.loads((out / "results.json").read_text())
    claims = scaling.findings(results["records"], results["binned"]["records"],
                              examples=results["examples_needed"])  # fmt: skip
    results["findings"] = [c.__dict__ for c in claims]
    study = stored_study(results["settings"], results["records"])
    markdown = report.scaling_markdown(study, results["examples_needed"])
    _write_results(out, results)
    write_atomic(out / "report.md", lambda f: f.write(markdown.encode()))
    _print_findings(claims)
    return 0


def stored_study(settings: dict, records: list[dict]) -> scaling.Study:
    """The :class:`nqm.scaling.Study` of results.json's ``settings`` and ``records``, as far as its
    report reads it. The records keep no count of searches per result: the first carries the total."""
    stored = {"rule", "batch", "steps", "lr", "label", "critical_batch", "critical_where",
              "min_steps"}  # fmt: skip
    tuned: dict[str, list[scaling.Tuned]] = {}
    for r in records:
        point = {key: value for key, value in r.items() if key not in stored}
        tuned.setdefault(r["rule"], []).append(
            scaling.Tuned(r["rule"], r["batch"], r["steps"], r["lr"], point, r["label"])
        )
    first = tuned[records[0]["rule"]]
    first[0] = dataclasses.replace(first[0], evaluations=settings["evaluations"])
    return scaling.Study(
        dim=settings["dim"], bins=settings["bins"], target=settings["target"],
        precondition=settings["precondition"], batches=tuple(settings["batches"]), tuned=tuned,
        seconds=settings["seconds"], workers=settings["workers"],
    )  # fmt: skip


def _write_results(out: Path, payload: dict) -> None:
    write_atomic(out / "results.json",
                 lambda f: f.write(json.dumps(payload, indent=2).encode()))  # fmt: skip


def _print_findings(claims: list[Claim]) -> None:
    for c in claims:
        print(f"[{'holds' if c.holds else 'does NOT hold'}] {c.statement}: {c.evidence}")


def finer_grid_verdicts(results: dict) -> tuple[int, list[str]]:
    """The findings' verdicts with momentum's and EMA's tuned steps from the notebook's grid: how
    many stay, and which change (the binned comparison is left out: its binned sweep used the
    default grid)."""
    finer = {(c["rule"], c["batch"]): c["notebook"] for c in results["grid"]["changes"]}
    records = [
        dict(r, steps=finer.get((r["rule"], r["batch"]), r["steps"])) for r in results["records"]
    ]
    for rule in {rule for rule, _ in finer}:
        column = [
            scaling.Tuned(rule, r["batch"], r["steps"], None) for r in records if r["rule"] == rule
        ]
        crit = scaling.critical_batch(column)
        for r in records:
            if r["rule"] == rule:
                r.update(
                    critical_batch=crit.batch, critical_where=crit.where, min_steps=crit.min_steps
                )
    before = {c["key"]: c["holds"] for c in results["findings"]}
    after = {c.key: c.holds for c in scaling.findings(records, examples=results["examples_needed"])}
    kept = [key for key in after if key in before and after[key] == before[key]]
    return len(kept), [key for key in after if key in before and after[key] != before[key]]


def tables(results: dict) -> dict[str, list[str]]:
    """The tables of docs/scaling.md, from a ``results.json``: the findings, the steps at a few
    batch sizes, the critical batch sizes and the checks."""
    records = results["records"]
    rules = list(dict.fromkeys(r["rule"] for r in records))
    steps = {(r["rule"], r["batch"]): r for r in records}
    shown = [4, 64, 1024, 16384, 2**21, None]
    findings = ["| finding | evidence | verdict |", "|---|---|---|"]
    findings += [f"| {c['statement']} | {c['evidence']} | {'holds' if c['holds'] else 'does not hold'} |"
                 for c in results["findings"]]  # fmt: skip
    table = ["| rule | " + " | ".join(f"B = {b or 'inf'}" for b in shown)
             + " | critical batch |", "|---|" + "---|" * (len(shown) + 1)]  # fmt: skip
    for rule in rules:
        cells = [str(steps[(rule, b)]["steps"]) if (rule, b) in steps else "-" for b in shown]
        critical = scaling.CriticalBatch.of(steps[(rule, None)]).short()
        table.append(f"| {rule} | " + " | ".join(cells) + f" | {critical} |")
    scan = results["scan"]["rows"]
    late = {}
    for row in scan:
        if row["first"] != row["steps"]:
            late.setdefault(row["rule"], []).append(row["steps"] / row["first"] - 1)

    def largest(check: dict) -> float:
        moved = [abs(c["again"] / c["default"] - 1) for c in check["changes"]
                 if c["default"] and c["again"]]  # fmt: skip
        return max(moved)

    fewer, more = {}, {}  # per rule: the largest saving and the largest loss of the finer grid
    for c in results["grid"]["changes"]:
        if c["default"] and c["notebook"]:
            change = c["notebook"] / c["default"] - 1
            fewer[c["rule"]] = max(fewer.get(c["rule"], 0.0), -change)
            more[c["rule"]] = max(more.get(c["rule"], 0.0), change)
    unchanged, flipped = finer_grid_verdicts(results)
    settings = results["settings"]
    checks = [
        "| check | result |",
        "|---|---|",
        f"| default sweep, {settings['workers']} workers ({results['cores']} cores) | "
        f"{settings['seconds']:.1f} s, {settings['evaluations']} steps-to-target searches, "
        f"{results['searches_per_second_per_worker']:.0f} per second per worker |",
        f"| reported step = first crossing of a step-by-step scan ({len(scan)} results of at most "
        f"{results['scan']['limit']} steps) | "
        + (", ".join(f"{rule}: {len(v)} later, by up to {max(v):.1%}" for rule, v in late.items())
           or "all first") + " |",
        f"| tuned steps at lr tolerance 1e-6 instead of {results['tolerance']['default_tolerance']:g} "
        f"(SGD, EMA, SMA) | largest change {largest(results['tolerance']['tight']):.3%} |",
        f"| tuned steps with every grid point refined instead of the best "
        f"{results['tolerance']['default_refine']} (SGD, EMA, SMA) | largest change "
        f"{largest(results['tolerance']['refine_all']):.3%} |",
        f"| momentum and EMA tuned over the notebook's 20 values of mu and the decay instead of "
        f"the default {len(results['grid']['default'])} | "
        + ", ".join(f"{rule}: from {fewer[rule]:.1%} fewer to {more[rule]:.1%} more steps"
                    for rule in fewer) + " |",
        "| the findings above recomputed with the finer grid's momentum and EMA | "
        + (f"{unchanged} verdicts unchanged" + (f", changed: {', '.join(flipped)}" if flipped else ""))
        + " |",
    ]  # fmt: skip
    return {"nqm scaling findings": findings, "nqm scaling steps": table,
            "nqm scaling checks": checks}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
