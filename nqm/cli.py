"""``nqm``: check the variance claims on the noisy quadratic model from the command line.

    nqm verify [--quick] [--out DIR] [--seed N]
    nqm steady --rule RULE --lr A --h H [--c C] [--batch B] [--k K] [--beta B] [--feedback]
               [--alpha A] [--mu MU] [--window N] [--json]
    nqm simulate --rule RULE --lr A [rule flags] [--dim D] [--steps T] [--chains M] [--seed S] [--json]
    nqm scaling [--rules R ...] [--target C] [--batch B ...] [--precondition P] [--dim D]
                [--bins N] [--workers N] [--out DIR] [--json]

Bad input prints one line on stderr naming the flag, the value and what is allowed, and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import stat
import sys
import tempfile
import textwrap
import time
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lic_dynamics import files, signals, validation
from lic_dynamics.cli import Parser, UsageError, error_line, one_line, reader_gone, subcommand
from nqm import closed_form, moments, montecarlo, resources, scaling, verify
from nqm.problem import Problem, standard
from nqm.rules import EMA, SGD, SMA, Lookahead, Momentum, Polyak, Rule

RULES = ("sgd", "momentum", "sma", "lookahead", "ema", "polyak")
# Library parameters that a flag of another name sets: Polyak's number of samples n is --window.
ALIASES = {"n": "window"}


def build_parser() -> argparse.ArgumentParser:
    """The ``nqm`` parser and its subcommands.

    Examples:
        >>> args = build_parser().parse_args(["steady", "--rule", "sma", "--lr", "0.5", "--h", "1"])
        >>> args.command, args.rule, args.lr, args.precondition
        ('steady', 'sma', 0.5, 0.0)
    """
    parser = Parser(
        prog="nqm",
        description="Variance of SGD, momentum and averaging (SMA, EMA, "
        "Lookahead, Polyak) on the noisy quadratic model.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_verify_flags(
        commands.add_parser("verify", help="check every claim; exit 0 only if all hold")
    )
    rule_flags = _rule_flags()
    _add_steady_flags(
        commands.add_parser(
            "steady",
            parents=[rule_flags],
            help="steady-state variance of one coordinate versus SGD",
        )
    )
    _add_simulate_flags(
        commands.add_parser(
            "simulate",
            parents=[rule_flags],
            help="exact versus Monte Carlo loss over time on the standard NQM",
        )
    )
    _add_scaling_flags(
        commands.add_parser(
            "scaling",
            help="steps to a target loss versus batch size, learning rate tuned per batch size",
        )
    )
    return parser


def _add_verify_flags(run: argparse.ArgumentParser) -> None:
    """``nqm verify``'s flags: the sample sizes, the report folder and the seed."""
    run.add_argument("--quick", action="store_true", help="smaller samples (seconds)")
    run.add_argument(
        "--out",
        default="nqm-report",
        help="folder for report.md, claims.json and plots (default: nqm-report)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")


def _rule_flags() -> Parser:
    """The flags that describe one rule, shared by ``steady`` and ``simulate`` (a parent parser):
    the rule, its learning rate, its hyperparameters (which of them apply: :data:`USES`), the
    base optimizer's momentum and preconditioner, the batch size and ``--json``."""
    rule_flags = Parser(add_help=False)
    rule_flags.add_argument("--rule", choices=RULES, required=True)
    rule_flags.add_argument("--lr", type=float, required=True, help="learning rate a > 0")
    rule_flags.add_argument("--k", type=int, help="sample every k steps (default 5)")
    rule_flags.add_argument(
        "--beta",
        type=float,
        help="SMA/EMA: avg <- beta*avg + (1-beta)*x, beta in [0, 1) (default 0.9)",
    )
    rule_flags.add_argument(
        "--feedback",
        action="store_true",
        default=None,
        help="SMA: reset the fast weights to the average after each sample",
    )
    rule_flags.add_argument(
        "--alpha", type=float, help="Lookahead step, alpha in (0, 1] (default 0.5)"
    )
    rule_flags.add_argument(
        "--mu",
        type=float,
        default=None,
        help="heavy-ball momentum in (-1, 1); with an averaging rule it "
        "becomes the base optimizer (required for --rule momentum)",
    )
    rule_flags.add_argument(
        "--precondition",
        type=float,
        default=0.0,
        help="the base optimizer's diagonal preconditioner P = h^-p, p in [0, 1] (default 0: none)",
    )
    rule_flags.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    rule_flags.add_argument("--json", action="store_true", help="print JSON")
    return rule_flags


def _add_steady_flags(steady: argparse.ArgumentParser) -> None:
    """``nqm steady``'s own flags: the coordinate (curvature and noise) and Polyak's window."""
    steady.add_argument("--h", type=float, required=True, help="curvature h > 0")
    steady.add_argument(
        "--c", type=float, default=1.0, help="gradient-noise variance of one example (default 1)"
    )
    steady.add_argument(
        "--window",
        type=int,
        help="Polyak: number of stationary samples averaged (default 100)",
    )


def _add_simulate_flags(sim: argparse.ArgumentParser) -> None:
    """``nqm simulate``'s own flags: the problem's size, the run's length, the chains and the
    steps reported."""
    sim.add_argument("--dim", type=int, default=1000, help="d of the standard NQM (default 1000)")
    sim.add_argument("--steps", type=int, default=1000, help="optimizer steps (default 1000)")
    sim.add_argument("--chains", type=int, default=100, help="Monte Carlo chains (default 100)")
    sim.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sim.add_argument(
        "--points", type=int, default=20, help="log-spaced steps reported (default 20)"
    )


def _add_scaling_flags(scale: argparse.ArgumentParser) -> None:
    """``nqm scaling``'s flags: the rule families and batch sizes swept, the target, the
    preconditioner, the problem (exact or binned), the workers and the outputs."""
    scale.add_argument(
        "--rules",
        nargs="+",
        default=list(scaling.FAMILIES),
        metavar="RULE",
        help=f"among {', '.join(scaling.FAMILIES)} (default: all)",
    )
    scale.add_argument(
        "--target", type=float, default=0.01, help="target expected loss C > 0 (default 0.01)"
    )
    scale.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=list(scaling.DEFAULT_BATCHES),
        metavar="B",
        help="batch sizes (default 4, 8, ..., 2^21)",
    )
    scale.add_argument(
        "--precondition",
        type=float,
        default=0.5,
        help="p of P = h^-p for the precond-* rules, in [0, 1] (default 0.5)",
    )
    scale.add_argument(
        "--dim", type=int, default=10_000, help="d of the standard NQM (default 10^4)"
    )
    scale.add_argument(
        "--bins",
        type=int,
        default=None,
        help="the notebook's approximation: N geometric bins of curvatures (default: exact, no bins)",
    )
    scale.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="processes (default: the CPU count, at most 8; results do not depend on it)",
    )
    scale.add_argument("--out", help="folder for scaling.json, report.md and plots")
    scale.add_argument("--json", action="store_true", help="print the records as JSON")


# The hyperparameter flags each rule reads, and their defaults when it reads them.
USES = {
    "sgd": set(),
    "momentum": {"mu"},
    "sma": {"k", "beta", "feedback", "mu"},
    "ema": {"beta", "mu"},
    "lookahead": {"k", "alpha", "mu"},
    "polyak": {"k", "mu", "window"},
}  # every rule also reads --precondition, its base optimizer's
DEFAULTS = {"k": 5, "beta": 0.9, "alpha": 0.5, "feedback": False, "window": 100}


def make_rule(args: argparse.Namespace) -> Rule:
    """The rule the flags describe; a flag the rule would ignore is an error, not a silent no-op.

    Examples:
        >>> parse = build_parser().parse_args
        >>> make_rule(parse(["steady", "--rule", "ema", "--lr", "0.5", "--h", "1", "--mu", "0.9"])).label()
        'EMA(beta=0.9) over Momentum(lr=0.5, mu=0.9)'
        >>> make_rule(parse(["steady", "--rule", "sgd", "--lr", "0.5", "--h", "1", "--k", "3"]))
        Traceback (most recent call last):
        ...
        lic_dynamics.cli.UsageError: nqm steady: error: --k does not apply to --rule sgd (it ...
    """
    used = USES[args.rule]
    for flag in ("k", "beta", "alpha", "feedback", "mu", "window"):
        given = getattr(args, flag, None)
        if given is not None and flag not in used:
            allowed = ", ".join(f"--{f}" for f in sorted(used)) or "no hyperparameter flags"
            raise UsageError(
                f"nqm {args.command}: error: --{flag} does not apply to --rule {args.rule} "
                f"(it takes {allowed})"
            )
        if given is None and flag in DEFAULTS:
            setattr(args, flag, DEFAULTS[flag])
    p = args.precondition
    if args.rule == "sgd":
        return SGD(args.lr, precondition=p)
    if args.rule == "momentum":
        if args.mu is None:
            raise validation.InvalidValue("mu", "must be given with --rule momentum, in (-1, 1)")
        return Momentum(args.lr, args.mu, precondition=p)
    base = (
        SGD(args.lr, precondition=p)
        if args.mu is None
        else Momentum(args.lr, args.mu, precondition=p)
    )
    if args.rule == "sma":
        return SMA(base, args.k, args.beta, feedback=args.feedback)
    if args.rule == "ema":
        return EMA(base, args.beta)
    if args.rule == "lookahead":
        return Lookahead(base, args.k, args.alpha)
    return Polyak(base, args.k)


def steady_result(args: argparse.Namespace) -> dict:
    """What ``nqm steady`` reports, as a dict.

    Examples:
        >>> args = build_parser().parse_args(["steady", "--rule", "sma", "--lr", "1", "--h", "1"])
        >>> result = steady_result(args)
        >>> result["label"], round(result["ratio"], 6), result["method"]
        ('SMA(k=5, beta=0.9) over SGD(lr=1)', 0.052632, 'closed form')
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow is checked below
        return _steady_result(args)


def _steady_result(args: argparse.Namespace) -> dict:
    rule = make_rule(args)
    problem = Problem(h=args.h, c=args.c, batch=args.batch)
    h = problem.h
    if isinstance(rule, Polyak):
        method = f"closed form, uniform average of {args.window} stationary samples"

        def engine(rule: Rule, h: np.ndarray, sigma2: np.ndarray) -> np.ndarray:
            return closed_form.polyak_variance(rule, h, sigma2, args.window)

    else:
        try:
            closed_form.steady_variance(rule, h, np.ones(1))
            method, engine = "closed form", closed_form.steady_variance
        except NotImplementedError:
            method, engine = "Lyapunov", moments.stationary_variance
        except ValueError:  # no steady state, or beyond float64: _held says which
            method, engine = "closed form", closed_form.steady_variance
    rho = float(np.atleast_1d(rule.base.rho(h))[0])
    unit = _at_unit_curvature(rule, rho)
    variance = _held(args, "variance", rho, engine, rule, unit, h, problem.sigma2)
    sgd = SGD(args.lr, precondition=args.precondition)  # the same step and preconditioner
    try:
        sgd_unit = None if unit is None else SGD(rho)
        sgd_variance = _held(args, "SGD's variance", rho, closed_form.steady_variance, sgd,
                             sgd_unit, h, problem.sigma2)  # fmt: skip
        ratio = _steady_ratio(rule, engine, h, rho)
    except ValueError:  # momentum and Lookahead can be stable where SGD at the same lr is not
        sgd_variance = ratio = None
    if ratio is not None and not math.isfinite(ratio):
        raise UsageError(f"nqm steady: error: {_steady_flags(args)}: the variance ratio is not "
                         f"finite in float64 (rho = {_rho_text(args, rho)})")  # fmt: skip
    return {
        "rule": args.rule,
        "label": rule.label(),
        "rho": rho,
        "precondition": args.precondition,
        "variance": variance,
        "sgd_variance": sgd_variance,
        "ratio": ratio,
        "method": method,
    }


def _at_unit_curvature(rule: Rule, rho: float) -> Rule | None:
    """The same rule on a coordinate of curvature 1: step ``rho``, no preconditioner (None where
    rho is no positive float). Every rule here is linear, and ``x = (lr P / rho) w`` maps that
    coordinate onto this one, so its variance is ``sigma2 / h^2`` times this rule's at ``h = 1``,
    ``sigma2 = 1``: the ratio to SGD is this rule's, and a variance float64 cannot hold has
    ``log10 V = log10 sigma2 - 2 log10 h + log10 V_1`` (``docs/theory.md``)."""
    if not (0 < rho < math.inf):
        return None
    base = dataclasses.replace(rule.base, lr=rho, precondition=0.0)
    return base if rule is rule.base else dataclasses.replace(rule, base=base)


def _held(args, name: str, rho: float, engine, rule: Rule, unit, h, sigma2) -> float:
    """``engine``'s variance of ``rule`` where float64 holds it; else the line that says how big it
    is (an engine that fails, at a curvature where the rule at curvature 1 does not, has met
    float64's range, not a missing steady state)."""
    try:
        with np.errstate(all="ignore"):  # checked below
            value = float(engine(rule, h, sigma2)[0])
    except ValueError:
        if unit is None or not _unit_variance(engine, unit) < math.inf:
            raise
        value = math.inf
    if float(sigma2[0]) == 0:  # no noise: 0 wherever a steady state exists (inf * 0 is nan)
        return 0.0
    if not math.isfinite(value) or (value == 0 and float(sigma2[0]) > 0):
        raise UsageError(_unrepresentable(args, name, rho, engine, unit))
    return value


def _unit_variance(engine, unit: Rule) -> float:
    """The variance of ``unit`` at curvature 1 and noise 1; nan where it has none."""
    try:
        with np.errstate(all="ignore"):
            return float(engine(unit, np.ones(1), np.ones(1))[0])
    except ValueError:
        return math.nan


def _steady_ratio(rule: Rule, engine, h: np.ndarray, rho: float) -> float:
    """The rule's steady variance over SGD's at the same step, formed at curvature 1 where rho is a
    positive float (neither variance can then over- or underflow), else at ``sigma2 = 1``."""
    unit = _at_unit_curvature(rule, rho)
    one = np.ones(1)
    if unit is None:
        sgd = SGD(rule.base.lr, precondition=rule.base.precondition)
        return float(engine(rule, h, one)[0] / closed_form.base_variance(sgd, h, one)[0])
    return float(engine(unit, one, one)[0] / closed_form.base_variance(SGD(rho), one, one)[0])


def _unrepresentable(args: argparse.Namespace, name: str, rho: float, engine, unit) -> str:
    """The line for a variance float64 cannot hold: its size from the unit-curvature rule
    (:func:`_at_unit_curvature`), in logarithms, so that working it out cannot overflow too."""
    v1 = math.nan if unit is None else _unit_variance(engine, unit)
    if 0 < v1 < math.inf:
        log10 = math.log10(args.c) - math.log10(args.batch) - 2 * math.log10(args.h)
        log10 += math.log10(v1)
        how = "overflows" if log10 > 0 else "underflows"
        size = f"the {name} is about {closed_form.power_of_ten(log10)}, which {how} float64"
    elif v1 == 0:  # at curvature 1 already below the smallest float64 (alpha = 5e-324)
        size = f"the {name} underflows float64, below 5e-324"
    else:
        size = f"the {name} is beyond float64"
    rule_rho = f"rho = {'lr*P*h' if args.precondition else 'lr*h'} = {_rho_text(args, rho)}"
    return f"nqm steady: error: {_steady_flags(args)}: {size} ({rule_rho})"


def _steady_flags(args: argparse.Namespace) -> str:
    """The flags that set a coordinate's variance, curvature first: ``--h 1e+300 with --lr 0.5``,
    and ``--c``, ``--batch`` and ``--precondition`` where they are not their defaults."""
    named = [f"--lr {args.lr!r}"]
    for flag, default in (("c", 1.0), ("batch", 1), ("precondition", 0.0),
                          *((f, DEFAULTS.get(f)) for f in sorted(USES[args.rule]))):  # fmt: skip
        value = getattr(args, flag, None)
        if value is True:
            named.append(f"--{flag}")
        elif value is not None and value is not False and value != default:
            named.append(f"--{flag} {value!r}")
    return f"--h {args.h!r} with {resources.and_list(named)}"


def _rho_text(args: argparse.Namespace, rho: float) -> str:
    """rho as a float, or its size where float64 cannot hold it (``lr = h = 1e-300``: 1e-600)."""
    if 0 < rho < math.inf:
        return f"{rho:.6g}"
    sgd = SGD(args.lr, precondition=args.precondition)
    return f"about {closed_form.power_of_ten(closed_form.log10_rho(sgd, args.h))} (beyond float64)"


def _check_finite(values: np.ndarray, record: np.ndarray, args, rule: Rule, problem) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        first = int(record[np.flatnonzero(~finite)[0]])
        raise validation.InvalidValue(
            "steps",
            f"{args.steps}: the moments overflow float64 by step {first}: rho = "
            f"{'lr*P*h' if args.precondition else 'lr*h'} reaches "
            f"{float(np.max(rule.base.rho(problem.h))):g}, where {rule.label()} "
            "has no steady state and its "
            "variance grows geometrically; ask for fewer steps",
        )


def _check_divergence(record: np.ndarray | None, args, rule: Rule) -> None:
    """Refuse, before the run and its progress lines, a run whose exact moments overflow. The
    moments are taken on up to ``SAMPLED`` log-spaced coordinates of the standard NQM (every one
    where d is smaller; the first and the last, where rho and the noise are largest, always), at
    the last reported step by repeated squaring (:func:`nqm.moments.moments_at`, O(log t)), and
    where they overflow, at the first reported step that does, by bisection (a divergent rule's
    loss grows). Polyak's moments need every step: its run is checked as it goes, as is a
    coordinate the sample misses (:func:`_check_finite`)."""
    if record is None or isinstance(rule, Polyak):
        return
    i = np.unique(np.round(np.geomspace(1, args.dim, min(args.dim, SAMPLED))))
    problem = Problem(h=1.0 / i, c=1.0 / i, batch=args.batch)  # those coordinates of standard()

    def loss_at(step: int) -> float:
        with np.errstate(all="ignore"):  # an overflow is what is looked for
            mean, var = moments.moments_at(problem, rule, int(step)).readout(rule)
            bias, variance = problem.expected_loss(mean, var)
            return float(bias + variance)

    if math.isfinite(loss_at(record[-1])):
        return
    low, high = 0, record.size - 1  # the loss overflows at record[high]
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if math.isfinite(loss_at(record[mid])) else (low, mid)
    values = np.where(np.arange(record.size) < high, 0.0, np.inf)
    _check_finite(values, record, args, rule, problem)


SAMPLED = 4096  # coordinates of the divergence check: milliseconds, whatever --dim


def simulate_result(args: argparse.Namespace) -> dict:
    """What ``nqm simulate`` reports, as a dict: exact and Monte Carlo loss at log-spaced steps.

    Its memory and time are estimated from the flags first (:func:`nqm.resources.simulate_cost`): more
    memory than this machine has available, or more than a year of work, is refused before anything
    is allocated; a run estimated over 10 s says how long it will take, then once a minute.

    Examples:
        >>> argv = ["simulate", "--rule", "sgd", "--lr", "0.5", "--dim", "10", "--steps", "50",
        ...         "--chains", "400", "--points", "3"]
        >>> result = simulate_result(build_parser().parse_args(argv))
        >>> [row["step"] for row in result["steps"]], all(abs(r["z_loss"]) < 4 for r in result["steps"])
        ([0, 1, 7, 50], True)
    """
    rule = make_rule(args)
    progress = _simulate_progress(args)  # every flag checked, the cost refused or accepted
    steps = args.steps
    record = verify.log_steps(max(steps, 1), args.points) if steps > 0 else None
    _check_divergence(record, args, rule)  # before the progress line: one line, status 2
    progress.begin()  # the estimate's line, before anything of the size of --dim is allocated
    start = time.perf_counter()
    problem = standard(args.dim, batch=args.batch)
    exact_step = resources.EXACT_STEP_S + resources.EXACT_COORD_S * args.dim
    chain_step = resources.CHAIN_COORD_S * args.dim
    with np.errstate(over="ignore", invalid="ignore"):  # a divergent run is reported below
        exact = moments.loss_curve(
            problem, rule, steps, record, on_step=lambda: progress.advance(exact_step)
        )
        record = exact.steps
        _check_finite(exact.loss, record, args, rule, problem)  # before the chains run
        mc = montecarlo.simulate(
            problem, rule, steps, args.chains, seed=args.seed, record=record,
            on_step=lambda size: progress.advance(resources.CHUNK_STEP_S + chain_step * size),
        )  # fmt: skip
        mc_variance = 0.5 * mc.var @ problem.h
        mc_variance_se = np.sqrt((0.25 * mc.var_se**2) @ problem.h**2)
    _check_finite(mc.loss + mc_variance, record, args, rule, problem)
    columns = {
        "step": record,
        "exact_loss": exact.loss,
        "exact_bias": exact.bias,
        "exact_variance": exact.variance,
        "mc_loss": mc.loss,
        "mc_loss_se": mc.loss_se,
        "mc_variance": mc_variance,
        "mc_variance_se": mc_variance_se,
        "z_loss": (mc.loss - exact.loss) / mc.loss_se,
    }
    rows = [{key: col[i].item() for key, col in columns.items()} for i in range(record.size)]
    return {
        "rule": args.rule,
        "label": rule.label(),
        "dim": args.dim,
        "batch": args.batch,
        "chains": args.chains,
        "seed": args.seed,
        "seconds": time.perf_counter() - start,
        "steps": rows,
    }


def _simulate_progress(args: argparse.Namespace) -> resources.Progress:
    """``nqm simulate``'s flags checked, its cost estimated from them alone and refused where it
    cannot be done (one line, status 2); the :class:`~nqm.resources.Progress` that will report it."""
    validation.integer("dim", args.dim, minimum=1)
    validation.integer("steps", args.steps, minimum=0)
    if args.points < 2:
        raise validation.InvalidValue("points", f"must be an integer >= 2, got {args.points}")
    validation.integer("points", args.points, minimum=2)
    validation.integer("chains", args.chains, minimum=2)
    validation.integer("seed", args.seed, minimum=0)
    cost = resources.simulate_cost(args.dim, args.steps, args.chains, args.points)
    flags = [("--dim", args.dim, 1000), ("--chains", args.chains, 100),
             ("--steps", args.steps, 1000), ("--points", args.points, 20)]  # fmt: skip
    named = resources.name_flags(flags)
    resources.refuse("nqm simulate", cost, named, "--dim, --chains, --steps or --points")
    return resources.Progress(
        "nqm simulate", cost.seconds, "fewer --chains, --steps or --dim is faster"
    )


def run_verify(args: argparse.Namespace) -> int:
    """``nqm verify``: every claim, the table on stdout, the report in ``--out``; 0 if all hold.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     run_verify(build_parser().parse_args(["verify", "--quick", "--out", folder]))
        claim ...
        0
    """
    files.check_folder(args.out, "out")  # before minutes of work
    settings = verify.Settings(seed=args.seed, quick=args.quick)
    report = _report_module()  # after the flags' checks: bad input never waits for matplotlib
    out = Path(args.out)
    start = time.perf_counter()
    claims, curves = verify.run(settings)
    paths = report.write(out, claims, curves, settings)  # a full disk: main's one line
    print(_table(report.table_rows(claims)))
    ok = all(c.holds for c in claims)
    print(
        f"\n{sum(c.holds for c in claims)}/{len(claims)} claims hold "
        f"({time.perf_counter() - start:.1f} s); wrote {', '.join(str(p) for p in paths)}"
    )
    return 0 if ok else 1


def _report_module() -> types.ModuleType:
    """:mod:`nqm.report`, imported only where a command writes plots (matplotlib takes a while),
    with a matplotlib folder it can write (:func:`_writable_matplotlib_folder`)."""
    _writable_matplotlib_folder()
    from nqm import report

    return report


def _writable_matplotlib_folder() -> None:
    """Point ``MPLCONFIGDIR`` at ``nqm-matplotlib-UID`` in the temporary folder when matplotlib's
    own folders (``MPLCONFIGDIR``, else ``$XDG_CONFIG_HOME/matplotlib`` and
    ``$XDG_CACHE_HOME/matplotlib``, under ``~/.config`` and ``~/.cache`` by default) cannot be
    written, as with ``HOME=/nonexistent``: matplotlib would print two warnings before any line of
    ours and make a new temporary folder each run. The one folder is shared by this user's runs
    (its font cache is built once), private (0700), and not used if another user owns it."""
    if "matplotlib" in sys.modules:
        return
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no password entry
        home = None
    if os.environ.get("MPLCONFIGDIR"):
        wanted: list[Path | None] = [Path(os.environ["MPLCONFIGDIR"])]
    else:
        wanted = [
            Path(os.environ[var]) / "matplotlib" if os.environ.get(var) else
            (None if home is None else home / default / "matplotlib")
            for var, default in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"))
        ]  # fmt: skip
    if all(folder is not None and _writable(folder) for folder in wanted):
        return
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"nqm-matplotlib-{uid}"
    if _writable(folder, private=True):
        os.environ["MPLCONFIGDIR"] = str(folder)


def _writable(folder: Path, *, private: bool = False) -> bool:
    """Whether ``folder`` is (or could be made) a folder this process can write; with
    ``private``, made mode 0700 and owned by this user, not a link."""
    try:
        folder.mkdir(mode=0o700 if private else 0o777, parents=not private, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or not os.access(folder, os.W_OK | os.X_OK):
        return False
    mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return not private or (mine and not info.st_mode & 0o077)


def run_scaling(args: argparse.Namespace) -> int:
    """``nqm scaling``: the tuned steps per rule and batch size, as tables or ``--json`` records.

    Examples:
        >>> argv = ["scaling", "--rules", "sgd", "--batch", "4", "--dim", "100", "--target", "0.1",
        ...         "--workers", "1", "--json"]
        >>> run_scaling(build_parser().parse_args(argv))
        [{"rule": "sgd", "batch": 4, "steps": 442, ...}, {"rule": "sgd", "batch": null, "steps": 28, ...}]
        0
    """
    checked = scaling.check_study(args.rules, args.batch, args.target, args.precondition,
                                  args.dim, args.bins, args.workers)  # fmt: skip
    if args.out is not None:
        files.check_folder(args.out, "out")  # before a minute of work
    rules, batches, target, precondition, dim, bins, workers = checked
    cost = scaling.cost(rules, len(batches), dim, bins, workers)
    named = (
        f"--dim {dim}{'' if bins is None else f' --bins {bins}'} with --workers {workers} "
        f"({len(rules)} rules x {len(batches) + 1} batch sizes)"
    )
    resources.refuse(
        "nqm scaling", cost, named, "--dim, --workers, --rules or --batch, or use --bins"
    )
    took = f", about {resources.duration(cost.seconds)}" if cost.seconds > resources.QUIET else ""
    print(
        f"nqm scaling: {len(rules)} rule{'s' if len(rules) > 1 else ''} x {len(batches) + 1} "
        f"batch sizes on {workers} worker{'s' if workers > 1 else ''}{took}...",
        file=sys.stderr,
        flush=True,
    )
    result = scaling.study(rules, batches, target, precondition, dim, bins, workers)
    if args.out is not None:
        paths = _report_module().write_scaling(Path(args.out), result)
    if args.json:
        print(json.dumps(result.records(), allow_nan=False))
    else:
        _print_scaling(result)
        if args.out is not None:
            print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def _print_scaling(result: scaling.Study) -> None:
    source = "exact" if result.bins is None else f"{result.bins} bins"
    print(
        f"steps to E[L] <= {result.target:g} on the standard NQM (d = {result.dim}, {source}), "
        f"learning rate tuned per batch size; p = {result.precondition:g} for precond-*; "
        f"{result.seconds:.1f} s, {result.evaluations} searches"
    )
    names = list(result.tuned)
    width = max(12, *(len(n) + 2 for n in names))
    labels = [str(b) for b in result.batches] + ["inf"]
    for title, cell in (
        ("steps", lambda t: "unreachable" if t.steps is None else str(t.steps)),
        ("tuned lr", lambda t: "-" if t.lr is None else f"{t.lr:.4g}"),
    ):
        print(f"\n{title:>9}" + "".join(f"{n:>{width}}" for n in names))
        for row, label in enumerate(labels):
            cells = "".join(f"{cell(result.tuned[n][row]):>{width}}" for n in names)
            print(f"{'B = ' + label:>9}{cells}")
    print("\ncritical batch size (where the tuned steps reach 2x the noiseless minimum):")
    for name, crit in result.critical().items():
        print(f"  {name:<13} {report_critical(crit)}")
    claims = scaling.findings(result.records())
    if claims:
        print("\nfindings:")
        for claim in claims:
            verdict = "holds" if claim.holds else "does NOT hold"
            print(f"  [{verdict}] {claim.statement}\n      {claim.evidence}")


def report_critical(crit: scaling.CriticalBatch) -> str:
    """One family's critical batch size in words.

    Examples:
        >>> report_critical(scaling.CriticalBatch(1234.5, 190, "inside"))
        '1.23e+03 (S_min = 190)'
        >>> report_critical(scaling.CriticalBatch(4, 28, "above"))
        '> 4, above the sweep (S_min = 28)'
    """
    if crit.batch is None:
        return crit.where
    where = "" if crit.where == "inside" else f", {crit.where} the sweep"
    return f"{crit.short()}{where} (S_min = {crit.min_steps})"


def _table(rows: list[tuple[str, str, str]], width: int = 118) -> str:
    widths = (34, width - 34 - 8 - 6, 8)
    header = ("claim", "evidence", "verdict")
    rule = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), rule]
    for row in rows:
        cells = [textwrap.wrap(text, w) or [""] for text, w in zip(row, widths, strict=True)]
        for i in range(max(len(c) for c in cells)):
            out.append(
                "  ".join(
                    (c[i] if i < len(c) else "").ljust(w)
                    for c, w in zip(cells, widths, strict=True)
                ).rstrip()
            )
        out.append("")
    return "\n".join(out).rstrip()


def _print_steady(result: dict, args: argparse.Namespace) -> None:
    sgd = result["sgd_variance"]
    print(f"rule          {result['label']}")
    name = "rho = lr*P*h" if result["precondition"] else "rho = lr*h  "
    print(f"{name}  {_rho_text(args, result['rho'])}")
    print(f"variance      {result['variance']:.10g}  ({result['method']})")
    print(f"SGD variance  {'no steady state at this lr' if sgd is None else f'{sgd:.10g}'}")
    if result["ratio"] is not None:
        print(
            f"ratio         {result['ratio']:.10g}  (reduction 1 - ratio = "
            f"{1 - result['ratio']:.4g})"
        )


def _print_simulate(result: dict) -> None:
    print(
        f"{result['label']} on the standard NQM, d = {result['dim']}, B = {result['batch']}, "
        f"{result['chains']} chains, seed {result['seed']} ({result['seconds']:.1f} s)"
    )
    print(
        f"{'step':>7} {'exact loss':>12} {'bias':>12} {'variance':>12} "
        f"{'MC loss':>12} {'+/- SE':>9} {'MC variance':>12} {'+/- SE':>9} {'z':>6}"
    )
    for r in result["steps"]:
        print(
            f"{r['step']:>7} {r['exact_loss']:>12.6g} {r['exact_bias']:>12.6g} "
            f"{r['exact_variance']:>12.6g} {r['mc_loss']:>12.6g} {r['mc_loss_se']:>9.2g} "
            f"{r['mc_variance']:>12.6g} {r['mc_variance_se']:>9.2g} {r['z_loss']:>+6.2f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``nqm`` command line; returns the exit status (2 for bad input, one line on stderr).

    Examples:
        >>> main(["steady", "--rule", "sgd", "--lr", "0.5", "--h", "4", "--precondition", "0.5"])
        rule          SGD(lr=0.5, P=h^-0.5)
        rho = lr*P*h  1
        variance      0.0625  (closed form)
        SGD variance  0.0625
        ratio         1  (reduction 1 - ratio = 0)
        0
        >>> main(["steady", "--rule", "sgd", "--lr", "-1", "--h", "1"])  # the line goes to stderr
        2
    """
    parser = build_parser()
    command, name = "nqm", None
    try:
        with signals.sigterm_raises():
            args = parser.parse_args(argv)  # -0 is 0 already (real_number)
            command, name = f"nqm {args.command}", args.command
            if args.command == "verify":
                return run_verify(args)
            if args.command == "scaling":
                return run_scaling(args)
            if args.command == "steady":
                result = steady_result(args)
                if args.json:
                    print(json.dumps(result, allow_nan=False))
                else:
                    _print_steady(result, args)
            else:
                result = simulate_result(args)
                print(json.dumps(result, allow_nan=False)) if args.json else _print_simulate(result)
            return 0
    except UsageError as err:
        print(err, file=sys.stderr)
    except ValueError as err:
        print(error_line(command, err, subcommand(parser, name), ALIASES), file=sys.stderr)
    except BrokenPipeError:  # nqm scaling | head
        return reader_gone()
    except OSError as err:  # a full disk, a file gone: not the input's fault, status 1
        where = f"{err.filename}: " if err.filename else ""
        print(one_line(f"{command}: error: {where}{err.strerror or err}"), file=sys.stderr)
        return 1
    except MemoryError:  # not the input's fault: status 1
        print(
            f"{command}: error: out of memory; ask for a smaller --dim, --points, --chains or "
            "--workers",
            file=sys.stderr,
        )
        return 1
    except (KeyboardInterrupt, signals.Terminated) as err:
        how = "interrupted" if isinstance(err, KeyboardInterrupt) else "terminated (SIGTERM)"
        print(f"{command}: {how}", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else signals.EXIT_STATUS
    return 2


if __name__ == "__main__":
    sys.exit(main())
