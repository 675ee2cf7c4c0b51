"""The time-to-quality benchmark: for the rate-distortion quality of a baseline's finished model, how
much training does each method need? (Results: docs/results/time-to-quality.md.)

The protocol (:class:`Protocol`), for every method and seed:

1. **Budget sweep with finished models.** One run of the full budget ``T`` steps with the field's
   schedule (Adam, x0.1 at 90% of the run: ``multistep``) at the scratch lambda is the *trunk*. Its
   rate is constant until its own decay, so the run of every smaller budget ``b T`` is the trunk up
   to that run's decay (at ``0.9 b T``) plus a decay of its own: the trunk keeps a checkpoint there
   and each budget *branches* off it (:func:`lic_train.trainer.loop.branch`; warmup-stable-decay,
   Hägele et al. 2024). Every budget's model is thus trained with its complete schedule, for about
   ``1.2 T`` steps in all instead of ``3 T``, and coded with real bit streams on the test images.
2. **The seed paper's own claim** (arXiv 2505.18107: its models train 70 epochs where the baseline
   trains 120 at lambda 0.0018, and the other lambdas are fine-tuned from that model for 50 epochs
   where the baseline uses 80): each ``claimant`` method's model at ``claim_scratch`` of ``T`` is
   fine-tuned to every other lambda for ``claim_finetune`` of ``T``; each ``baseline``'s model at
   ``T`` for ``baseline_finetune`` of ``T``; each with its own complete schedule (``--checkpoint``).

The statistics are in :mod:`lic_train.experiments.acceleration`, the files in
:mod:`lic_train.experiments.ttq_report`. The runs are trained ``jobs`` at once, each in a fresh
process (:mod:`lic_train.experiments.pool`), in three phases: the trunks, then the branches, then the
fine-tunes (each needs the model it starts from). A run whose folder holds a ``result.json`` is not
trained again, so a benchmark that was stopped continues where it stopped. A run whose loss stops
being finite is a result (``diverged``: the step), and so is every run that would start from it
after that step.

Examples:
    >>> protocol = PROTOCOLS["cpu"]
    >>> protocol.steps(7 / 12), protocol.branch_step(7 / 12)
    (700, 630)
    >>> [job.name for job in plan(protocol)[0][:2]]
    ['adam_lambda0.0018_seed0_budget1', 'ema_lambda0.0018_seed0_budget1']
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lic_dynamics import files, validation
from lic_dynamics.validation import InvalidValue
from lic_train.experiments.methods import METHODS, method_config, parse_method, run_name
from lic_train.experiments.pool import train_all
from lic_train.experiments.presets import CPU_BASE, Preset
from lic_train.rules import SMAConfig, STDETConfig
from lic_train.trainer.checkpoint import LATEST
from lic_train.trainer.config import FitConfig
from lic_train.trainer.data import load_eval_images
from lic_train.trainer.loop import check_out, resolve_device

# CompressAI's lambdas of qualities 1 to 4 (MSE); the seed paper trains 0.0018 from scratch.
PAPER_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013)


@dataclass(frozen=True)
class Protocol:
    """What the benchmark trains (see the module docstring). Budgets are fractions of
    ``base.steps`` (``T``); ``base`` must use the ``multistep`` schedule, whose first milestone is
    where every budget's decay begins."""

    base: FitConfig
    seeds: tuple[int, ...]
    sma: SMAConfig
    stdet: STDETConfig
    methods: tuple[str, ...] = METHODS
    budgets: tuple[float, ...] = (0.2, 0.4, 7 / 12, 0.8, 1.0)
    lmbda: float = PAPER_LAMBDAS[0]
    finetune_lambdas: tuple[float, ...] = PAPER_LAMBDAS[1:]
    baselines: tuple[str, ...] = ("adam", "ema")
    baseline_finetune: float = 80 / 120
    claimants: tuple[str, ...] = ("sma", "stdet+sma")
    claim_scratch: float = 70 / 120
    claim_finetune: float = 50 / 120
    jobs: int = 2  # trainings at once on the machine it is sized for
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.base.lr_schedule != "multistep" or not self.base.lr_milestones:
            raise InvalidValue("base", "must use the multistep schedule (the field's step decay)")
        budgets = [
            validation.real("budgets", b, "(0, 1]", low=0, high=1, high_open=False)
            for b in self.budgets
        ]
        if budgets != sorted(set(budgets)) or budgets[-1] != 1.0:
            raise InvalidValue("budgets", f"must increase to 1.0, got {self.budgets!r}")
        if self.claim_scratch not in budgets:
            raise InvalidValue("claim_scratch", f"must be one of the budgets {self.budgets!r}")
        for name in ("baseline_finetune", "claim_finetune"):
            validation.real(name, getattr(self, name), "(0, 1]", low=0, high=1, high_open=False)
        if not self.methods or self.methods[0] != "adam":
            raise InvalidValue("methods", f"must start with adam, got {self.methods!r}")
        for spec in self.methods:
            parse_method(spec)
        for name in ("baselines", "claimants"):
            outside = [m for m in getattr(self, name) if m not in self.methods]
            if outside:
                raise InvalidValue(name, f"{outside[0]!r} is not one of the methods")
        both = [m for m in self.claimants if m in self.baselines]
        if both:  # its claim curve would start from T for one and from claim_scratch for the other
            raise InvalidValue("claimants", f"{both[0]!r} is a baseline too")
        validation.integer("jobs", self.jobs, minimum=1)
        if any(self.steps(b) < 1 or self.branch_step(b) < 1 for b in budgets):
            raise InvalidValue("base", f"{self.base.steps} steps are too few for these budgets")

    @property
    def preset(self) -> Preset:
        """The preset whose method configurations the runs use (at the scratch lambda)."""
        return Preset(base=self.base, seeds=self.seeds, lambdas=(self.lmbda,), sma=self.sma,
                      stdet=self.stdet, methods=self.methods)  # fmt: skip

    def steps(self, fraction: float) -> int:
        """The optimizer steps of ``fraction`` of the full budget."""
        return round(fraction * self.base.steps)

    def branch_step(self, budget: float) -> int:
        """Where the run of ``budget`` leaves the trunk: its own decay's first step."""
        return round(self.base.lr_milestones[0] * self.steps(budget))


@dataclass(frozen=True)
class Job:
    """One training of the benchmark: ``kind`` is ``trunk`` (the full budget), ``branch`` (a
    smaller budget, from the trunk's checkpoint at ``start``) or ``finetune`` (another lambda,
    from a finished model)."""

    name: str
    kind: str
    method: str
    seed: int
    lmbda: float
    budget: float  # fraction of T: of the scratch training for trunks and branches
    config: FitConfig
    start: tuple[str, int] | None = None

    def record(self) -> dict:
        return {"name": self.name, "kind": self.kind, "method": self.method, "seed": self.seed,
                "lambda": self.lmbda, "budget": self.budget, "steps": self.config.steps}  # fmt: skip


def _slug(fraction: float) -> str:
    return f"{fraction:.3g}"


def plan(protocol: Protocol, runs: Path = Path("runs")) -> list[list[Job]]:
    """The jobs of the three phases (trunks, branches, fine-tunes), their run folders under
    ``runs``; within a phase the method order rotates from one seed to the next, so that a drift
    in machine speed touches every method alike."""
    preset, scratch = protocol.preset, protocol.lmbda
    smaller = [b for b in protocol.budgets if b < 1.0]
    kept = tuple(sorted({protocol.branch_step(b) for b in smaller}))
    trunks, branches, finetunes = [], [], []
    order = list(protocol.methods)

    def folder(method: str, seed: int, lmbda: float, suffix: str) -> str:
        return f"{run_name(method, seed, lmbda)}_{suffix}"

    for seed in protocol.seeds:
        for method in order:
            config = method_config(preset, method, seed, scratch)
            trunk = folder(method, seed, scratch, "budget1")
            trunks.append(Job(trunk, "trunk", method, seed, scratch, 1.0,
                              replace(config, keep_checkpoints=kept)))  # fmt: skip
            for budget in smaller:
                branches.append(Job(
                    folder(method, seed, scratch, f"budget{_slug(budget)}"), "branch", method,
                    seed, scratch, budget, replace(config, steps=protocol.steps(budget)),
                    start=(str(runs / trunk), protocol.branch_step(budget)),
                ))  # fmt: skip
        for lmbda in protocol.finetune_lambdas:
            for method in order:
                if method in protocol.baselines:
                    budget, length = 1.0, protocol.baseline_finetune
                elif method in protocol.claimants:
                    budget, length = protocol.claim_scratch, protocol.claim_finetune
                else:
                    continue
                source = runs / folder(method, seed, scratch, f"budget{_slug(budget)}") / LATEST
                config = replace(
                    method_config(preset, method, seed, lmbda),
                    steps=protocol.steps(length), checkpoint=str(source),
                )  # fmt: skip
                finetunes.append(Job(folder(method, seed, lmbda, "finetune"), "finetune", method,
                                     seed, lmbda, budget, config))  # fmt: skip
        order = order[1:] + order[:1]
    return [trunks, branches, finetunes]


def run(
    protocol: Protocol,
    out: str | Path,
    *,
    data: str | None = None,
    device: str | None = None,
    jobs: int | None = None,
    on_log: Callable[[dict], None] | None = None,
) -> dict:
    """Train every job of :func:`plan` (``jobs`` at once, default the protocol's), code each
    finished model, and write ``out/results.json`` (the protocol and every run's result, rewritten
    after each run, so that a stopped benchmark keeps what it measured) and the report
    (:func:`lic_train.experiments.ttq_report.write_report`). Returns the summary."""
    from lic_train.experiments.acceleration import summarise
    from lic_train.experiments.ttq_report import write_report

    out, on_log = Path(out), on_log or (lambda _: None)
    jobs = protocol.jobs if jobs is None else validation.integer("jobs", jobs, minimum=1)
    if device is not None:
        protocol = replace(protocol, base=replace(protocol.base, device=device))
    protocol = replace(protocol, base=replace(protocol.base, data=data))
    load_eval_images(data)  # bad --data fails here, before any training
    check_out(out)
    resolve_device(protocol.base.device)
    check_same_protocol(protocol, out)
    phases = plan(protocol, out / "runs")
    total = sum(len(phase) for phase in phases)
    results: list[dict] = []

    def save() -> None:
        files.write_json({"protocol": protocol_dict(protocol), "runs": results},
                         out / "results.json")  # fmt: skip

    for phase in phases:
        todo = []
        for job in phase:
            folder = out / "runs" / job.name
            done = folder / "result.json"
            inherited = _inherited_divergence(job, {r["name"]: r for r in results})
            if done.is_file():  # measured by an earlier, stopped invocation
                results.append({**job.record(), **json.loads(done.read_text())})
            elif inherited is not None:  # its starting point diverged: nothing to train
                results.append({**job.record(), **inherited})
            else:
                shutil.rmtree(folder, ignore_errors=True)  # a run stopped half-way starts anew
                todo.append(job)
        save()

        def finished(index: int, result: dict, todo: list[Job] = todo) -> None:
            results.append({**todo[index].record(), **result})
            save()
            on_log({"event": "done", "run": todo[index].name, "index": len(results), "of": total})

        if todo:
            train_all(
                [(job.config, out / "runs" / job.name) for job in todo], data=data, jobs=jobs,
                on_done=finished, branches=[job.start for job in todo],
                divergence_is_a_result=True,
            )  # fmt: skip
    summary = summarise(protocol_dict(protocol), results)
    write_report(summary, out)
    return summary


# What may differ from the protocol of an earlier invocation whose runs are reused: more methods
# or seeds, and where and how fast it runs.
EXTENSIBLE = ("methods", "seeds", "jobs", "note")


def check_same_protocol(protocol: Protocol, out: Path) -> None:
    """``InvalidValue`` about ``out`` when it holds the results of a protocol that differs from
    ``protocol`` in more than :data:`EXTENSIBLE` (its runs would be reused and mixed with other
    runs); the device, data and workers do not count."""
    saved = out / "results.json"
    if not saved.is_file():
        return
    theirs = json.loads(saved.read_text()).get("protocol", {})
    mine = protocol_dict(protocol)
    ignore = set(EXTENSIBLE)
    differ = sorted(k for k in mine.keys() | theirs.keys() if k not in ignore and k != "base"
                    and mine.get(k) != theirs.get(k))  # fmt: skip
    try:  # through FitConfig, so that JSON's lists compare equal to tuples
        their_base = FitConfig.from_dict(theirs["base"]).to_dict()
    except (KeyError, TypeError, ValueError):
        their_base = {}
    differ += [f"base.{k}" for k in protocol.base.differences(their_base) if k != "data"]
    if their_base.get("steps") != protocol.base.steps:  # T (resumable for one run, not here)
        differ.append("base.steps")
    if differ:
        raise InvalidValue(
            "out",
            f"{out} holds runs of another protocol ({', '.join(differ)} differ); choose another "
            "folder, or remove it to start afresh",
        )


def _inherited_divergence(job: Job, done: dict[str, dict]) -> dict | None:
    """``{"diverged": step, "inherited": run}`` when ``job`` starts from a run whose loss stopped
    being finite before ``job``'s starting point (a branch at or after the trunk's divergence, a
    fine-tune of a diverged model); else None. Divergence is a result of the method: the runs that
    would start from it are counted as diverged too, not dropped."""
    if job.start is not None:
        source, at = Path(job.start[0]).name, job.start[1]
    elif job.config.checkpoint is not None:
        source, at = Path(job.config.checkpoint).parent.name, None
    else:
        return None
    step = done.get(source, {}).get("diverged")
    if step is None or (at is not None and at < step):
        return None
    return {"diverged": step, "inherited": source}


def protocol_dict(protocol: Protocol) -> dict:
    """The protocol as ``results.json`` stores it."""
    return {
        "base": protocol.base.to_dict(), "seeds": list(protocol.seeds),
        "sma": protocol.sma.__dict__, "stdet": protocol.stdet.__dict__,
        "methods": list(protocol.methods), "budgets": list(protocol.budgets),
        "lambda": protocol.lmbda, "finetune_lambdas": list(protocol.finetune_lambdas),
        "baselines": list(protocol.baselines), "baseline_finetune": protocol.baseline_finetune,
        "claimants": list(protocol.claimants), "claim_scratch": protocol.claim_scratch,
        "claim_finetune": protocol.claim_finetune, "jobs": protocol.jobs, "note": protocol.note,
    }  # fmt: skip


_SMA = SMAConfig(k=5, beta=0.9)

PROTOCOLS = {
    # Sized by measurement for 2 CPU cores, two trainings at once (the scale table of
    # docs/results/time-to-quality.md): about an hour.
    "cpu": Protocol(
        base=CPU_BASE, seeds=(0, 1, 2, 3, 4), sma=_SMA, stdet=STDETConfig(),
        # EMA with a horizon of 50 steps (the SMA's), inside the last decay of T: is EMA 0.999
        # merely mistuned at this scale?
        methods=("adam", "ema", "ema:beta=0.98", "sma", "stdet", "stdet+sma"),
    ),
    # A mid-size model on 256x256 crops for one GPU, many trainings at once; not measured yet (no
    # GPU was lent to this project so far): benchmarks/time_to_quality.py --protocol gpu.
    "gpu": Protocol(
        base=replace(CPU_BASE, N=128, M=192, patch_size=(256, 256), batch_size=16,
                     learning_rate=1e-4, steps=2000, validate_every=100, device="cuda"),
        seeds=(0, 1, 2), sma=_SMA, stdet=STDETConfig(), jobs=12,
        note="sized by estimate, not measured: 12 trainings at once on one H200, about 75,000 "
             "steps in all at an assumed 5 ms per step of throughput",
    ),
}  # fmt: skip


def quick(protocol: Protocol) -> Protocol:
    """A smoke test of ``protocol``: 2 seeds, a tiny network, 30 steps, small crops."""
    return replace(
        protocol, seeds=(0, 1), methods=("adam", "ema", "sma"), claimants=("sma",),
        budgets=(0.4, 7 / 12, 1.0), jobs=2,
        base=replace(protocol.base, N=8, M=12, patch_size=(64, 64), batch_size=2, steps=30,
                     validate_every=10, log_every=5, device="cpu"),
        stdet=replace(protocol.stdet, snapshot_every=1, snapshots=3, every=2, samples=100),
    )  # fmt: skip
