"""``lic-train compare``: Adam (the baseline) against SMA, STDET and STDET + SMA, same data, seeds.

For every lambda and seed, each method (:mod:`lic_train.experiments.methods`; the presets in
:mod:`lic_train.experiments.presets`) is trained (:func:`lic_train.trainer.loop.fit`) in a rotating
order, so that a drift in machine speed touches all methods alike. Then the final evaluated weights
(the SMA average where SMA is on) of every run are coded into real bit streams on the test images
(:func:`lic_train.trainer.evaluate.evaluate`); each run in its own process
(:mod:`lic_train.experiments.pool`). The report (:mod:`lic_train.experiments.stats`,
:mod:`lic_train.experiments.report`) holds, per method, mean and spread over the runs (seeds x
lambdas; per lambda in a second table) of:

* the final validation RD loss (equal steps for all methods) and its ratio to Adam's;
* the steps needed to reach Adam's final validation loss (same seed and lambda), and their ratio
  to the steps Adam needs to reach it: the "training time" claim;
* the trainable fraction at the end, the time per training step and its ratio to Adam's, and the
  peak memory (RSS of the run on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU);
* real bpp and PSNR, and, with several lambdas, BD-rate against Adam (``bjontegaard``, Akima).

Validation losses are read through a trailing mean of ``SMOOTHING`` validations (the final loss
is the mean of the last ones; a method reaches a target at the first validation whose trailing
mean is at or below it): one validation of weights still moving fast is noisy, and a single lucky
or unlucky point would decide "steps to reach". The same rule applies to every method.

Files (each written atomically): ``report.md``, ``results.json``, ``loss_vs_step.png``,
``trainable_vs_step.png`` and, with several lambdas, ``rd_curves.png``; the runs themselves under
``runs/``. :func:`~lic_train.experiments.report.rewrite_report` rebuilds the files from
``results.json``. docs/trainer.md describes the command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from lic_dynamics import files
from lic_dynamics.validation import InvalidValue
from lic_train.experiments.methods import Method, method_config, parse_method, run_name
from lic_train.experiments.pool import train_all
from lic_train.experiments.presets import Preset, preset_dict
from lic_train.experiments.report import write_report
from lic_train.experiments.stats import summarise
from lic_train.trainer.data import load_eval_images
from lic_train.trainer.loop import check_out, resolve_device


def _planned(preset: Preset, methods: list[str]) -> list[tuple[str, str, int, float]]:
    """``(run name, method spec, seed, lambda)`` of every run, the method order rotating from one
    seed to the next so that no method always runs first."""
    planned: list[tuple[str, str, int, float]] = []
    order = list(methods)
    for lmbda in preset.lambdas:
        for seed in preset.seeds:
            planned += [(run_name(method, seed, lmbda), method, seed, lmbda) for method in order]
            order = order[1:] + order[:1]
    return planned


def compare(
    preset: Preset,
    out: str | Path,
    *,
    methods: Sequence[str] | None = None,
    data: str | None = None,
    device: str | None = None,
    jobs: int = 1,
    on_log: Callable[[dict], None] | None = None,
    progress: Callable[[str, int], Callable[[dict], None]] | None = None,
    show_warning: Callable[..., None] | None = None,
) -> dict:
    """Run the comparison and write its report to ``out``; returns ``results.json``'s content.

    ``methods`` (default: the preset's) are specs for
    :func:`~lic_train.experiments.methods.parse_method`; ``jobs`` runs that many trainings at once,
    each with its share of the CPU threads (faster on a many-core machine; the time ratios then
    include the contention, alike for every method thanks to the rotation). ``progress(run name,
    steps)``, a picklable factory, makes each run's ``on_log`` in the run's process, and
    ``show_warning`` (picklable) shows its warnings, as ``warnings.showwarning``.
    """
    out = Path(out)
    on_log = on_log or (lambda _: None)
    methods = list(preset.methods if methods is None else methods)
    if methods != list(preset.methods):
        preset = replace(preset, methods=tuple(methods))  # checks them as the preset's own
    if "adam" not in methods:
        raise InvalidValue("methods", "must include adam, the baseline every ratio refers to")
    if not isinstance(jobs, int) or jobs < 1:
        raise InvalidValue("jobs", f"must be an integer >= 1, got {jobs!r}")
    parsed: dict[str, Method] = {}
    for spec in methods:  # bad specs fail here, in order
        parsed[spec] = parse_method(spec)
        method_config(preset, parsed[spec], preset.seeds[0], preset.lambdas[0])
    base = replace(preset.base, data=data, **({"device": device} if device else {}))
    preset = replace(preset, base=base)
    load_eval_images(data)  # bad --data fails here, before any training
    check_out(out)
    resolve_device(preset.base.device)  # "cuda" without a GPU, here and not in every run

    with files.FolderLock(out, "out"):  # each run's folder is locked by its own fit
        return _compare(preset, out, methods, parsed, data, jobs, on_log, progress, show_warning)


def _compare(
    preset: Preset,
    out: Path,
    methods: list[str],
    parsed: dict[str, Method],
    data: str | None,
    jobs: int,
    on_log: Callable[[dict], None],
    progress: Callable[[str, int], Callable[[dict], None]] | None,
    show_warning: Callable[..., None] | None,
) -> dict:
    """:func:`compare`, its inputs checked and its folder locked."""
    planned = _planned(preset, methods)
    configs = [
        (method_config(preset, parsed[method], seed, lmbda), out / "runs" / name)
        for name, method, seed, lmbda in planned
    ]
    runs: list[dict] = []

    def done(index: int, run: dict) -> None:
        name, method, seed, lmbda = planned[index]
        run.update({"name": name, "method": method, "seed": seed, "lambda": lmbda})
        runs.append(run)
        on_log({"event": "done", "run": name, "index": index + 1, "of": len(planned),
                "last_loss": run["curve"][-1][1]})  # fmt: skip

    train_all(configs, data=data, jobs=jobs, on_done=done, progress=progress,
              show_warning=show_warning)  # fmt: skip
    # The runs first: should the summary fail, rewrite_report() can rebuild it from this file.
    files.write_json({"preset": preset_dict(preset, methods), "runs": runs}, out / "results.json")
    results = summarise(runs, methods, preset)
    write_report(results, out)
    return results
