"""The runs of a comparison, each in a fresh process: :func:`train_all` runs
:func:`train_and_code` for every run, ``jobs`` at once.

A fresh process per run: its peak memory is its own (a shared process would reuse the memory
earlier runs freed) and no run inherits another's state. The processes are forked from a server
that has imported torch and CompressAI once (:mod:`lic_train.trainer.loop` and
:mod:`lic_train.trainer.evaluate`), so a run starts in a fraction of a second. With ``jobs > 1``
each run gets its share of the CPU threads.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lic_dynamics import files, signals
from lic_train.trainer.config import FitConfig
from lic_train.trainer.data import load_eval_images
from lic_train.trainer.evaluate import evaluate
from lic_train.trainer.loop import NonFiniteLoss, branch, fit, resolve_device

PRELOAD = ["lic_train.trainer.loop", "lic_train.trainer.evaluate"]


def threads_per_job(jobs: int) -> int | None:
    """The CPU threads of each of ``jobs`` runs at once (None: torch's default, for one job)."""
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


def train_all(
    runs: Sequence[tuple[FitConfig, Path]],
    *,
    data: str | None,
    jobs: int,
    on_done: Callable[[int, dict], None],
    progress: Callable[[str, int], Callable[[dict], None]] | None = None,
    show_warning: Callable[..., None] | None = None,
    branches: Sequence[tuple[Path, int] | None] | None = None,
    divergence_is_a_result: bool = False,
) -> None:
    """Train and code every ``(configuration, run folder)`` of ``runs`` (:func:`train_and_code`),
    ``jobs`` at once, each in a fresh process; ``on_done(index, result)`` is called for each in
    the order of ``runs``. ``branches[i]``, a ``(run folder, step)``, starts run ``i`` from the
    checkpoint that run kept at that step (:func:`~lic_train.trainer.loop.branch`). With
    ``divergence_is_a_result`` a run whose loss stops being finite returns
    ``{"diverged": step, "message": ...}`` instead of failing the whole. On an error
    (of a run or of ``on_done``) the runs not started are cancelled; on an interrupt or SIGTERM
    the running ones are stopped too (SIGTERM, which they turn into an exception, so that they
    clean up). ``progress(run name, steps)``, a picklable factory, makes each run's ``on_log`` in
    its own process; ``show_warning``, picklable, shows its warnings (as
    ``warnings.showwarning``)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    threads = threads_per_job(jobs)
    pool = ProcessPoolExecutor(
        jobs, mp_context=context, max_tasks_per_child=1, initializer=_start_worker,
        initargs=(show_warning,),
    )  # fmt: skip
    try:
        starts = list(branches) if branches is not None else [None] * len(runs)
        futures = [
            pool.submit(
                train_and_code,
                config.to_dict(),
                str(out),
                data,
                threads,
                progress,
                None if start is None else (str(start[0]), start[1]),
                divergence_is_a_result,
            )
            for (config, out), start in zip(runs, starts, strict=True)
        ]
        for index, future in enumerate(futures):
            on_done(index, future.result())
    except BaseException as error:
        if not isinstance(error, Exception):  # Ctrl-C or SIGTERM: stop the running runs too
            # The executor has no public way to stop its workers (Python < 3.14).
            for process in list((pool._processes or {}).values()):
                process.terminate()
        raise
    finally:
        pool.shutdown(cancel_futures=True)


def _start_worker(show_warning: Callable[..., None] | None) -> None:
    """A run's process: SIGTERM raises (so that a file being written is cleaned up) and warnings
    are shown by ``show_warning``."""
    signals.install()
    if show_warning is not None:
        warnings.showwarning = show_warning


def train_and_code(
    config: dict,
    out: str,
    data: str | None,
    threads: int | None,
    progress: Callable[[str, int], Callable[[dict], None]] | None = None,
    start: tuple[str, int] | None = None,
    divergence_is_a_result: bool = False,
) -> dict:
    """One run of the comparison, in its own process: train (from the checkpoint that the run
    ``start[0]`` kept at step ``start[1]``, if given), then code the final evaluated weights (the
    SMA average where SMA is on) into real bit streams on the test images.

    Returns the run's validation curve of the evaluated readout, its trainable share over time,
    its final trainable fraction, time per step (training alone, and wall time with validations,
    from the run's start, the trunk's share included for a branch), peak memory, and real bpp and
    PSNR (mean, and per test image); also written to ``out/result.json``, should the summary
    fail."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    config = FitConfig.from_dict(config)
    if start is not None:
        branch(start[0], start[1], out)
    try:
        trained = fit(
            config, out, resume=start is not None,
            on_log=progress(Path(out).name, config.steps) if progress else None,
        )  # fmt: skip
    except NonFiniteLoss as error:
        if not divergence_is_a_result:
            raise
        result = {"diverged": error.step, "message": str(error)}
        files.write_json(result, Path(out) / "result.json")
        return result
    summary = trained.summary
    readout = summary.evaluated_readout
    model = trained.model
    if trained.sma is not None and trained.sma.ready:
        model = trained.sma.averaged_copy(trained.model)
    coded_images = evaluate(model, load_eval_images(data), device=resolve_device(config.device))
    coded = coded_images.mean()
    records = files.read_jsonl(Path(out) / "metrics.jsonl")
    result = {
        "readout": readout,
        "curve": [
            (x["step"], x["loss"])
            for x in records if x.get("split") == "val" and x["readout"] == readout
        ],
        "trainable_curve": [(x["step"], x["trainable"]) for x in records if "trainable" in x],
        "trainable": summary.trainable_fraction,
        "stdet_health": summary.stdet_health,
        "health_curve": [
            {k: v for k, v in x.items() if k != "split"}
            for x in records if x.get("split") == "stdet"
        ],
        "seconds_per_step": summary.train_seconds_per_step,
        "wall_seconds_per_step": summary.seconds_per_step,
        "peak_memory_bytes": summary.peak_memory_bytes, "memory_kind": summary.memory_kind,
        "bpp": coded["bpp"], "psnr": coded["psnr"], "bpp_estimated": coded["bpp_estimated"],
        "images": [
            {"name": image.name, "bpp": image.bpp, "psnr": image.psnr}
            for image in coded_images.images
        ],
    }  # fmt: skip
    files.write_json(result, Path(out) / "result.json")
    return result
