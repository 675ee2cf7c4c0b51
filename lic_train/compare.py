"""``lic-train compare``: the baseline (Adam) against SMA, STDET and STDET + SMA, same data and seeds.

For every lambda and seed, each method is trained (:func:`lic_train.train.fit`) in a rotating order,
so that a drift in machine speed touches all methods alike. Then the final evaluated weights (the
SMA average where SMA is on) of every run are coded into real bit streams on the test images
(:func:`lic_train.evaluate.evaluate`). The report holds, per method, mean and spread over the runs
(seeds x lambdas; per lambda in a second table) of:

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
``runs/``. :func:`rewrite_report` rebuilds the files from ``results.json``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import statistics
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from lic_train import checkpoint
from lic_train.data import load_eval_images
from lic_train.evaluate import evaluate
from lic_train.stdet import STDETConfig
from lic_train.train import FitConfig, SMAConfig, fit, resolve_device

METHODS = ("adam", "sma", "stdet", "stdet+sma")


@dataclass(frozen=True)
class Preset:
    """A base configuration, the seeds, the lambdas and the methods of a comparison; ``sma`` and
    ``stdet`` are the configurations the methods start from (see :func:`parse_method`)."""

    base: FitConfig
    seeds: tuple[int, ...]
    lambdas: tuple[float, ...]
    sma: SMAConfig
    stdet: STDETConfig
    methods: tuple[str, ...] = METHODS


_TINY_BASE = FitConfig(
    model="bmshj2018-hyperprior",
    N=32,
    M=48,
    patch_size=(128, 128),
    batch_size=8,
    steps=200,
    validate_every=20,
    checkpoint_every=200,
    log_every=10,
    learning_rate=1e-3,
    device="auto",
)
_TINY_SMA = SMAConfig(k=5, beta=0.9)
_TINY_STDET = STDETConfig(
    snapshot_every=5,
    snapshots=10,
    every=20,
    samples=1000,
    modes=10,
    fraction=0.1,
    max_embedded=0.6,
)
# The benchmarks' STDET, every knob the published results depend on pinned, so that they stay
# reproducible whatever the defaults become.
_MEASURED_STDET = replace(
    _TINY_STDET, variant="sensitivity", granularity="scalar", trajectory="sma", min_r2=0.5,
    keep_sensitive=0.1, sensitivity_quantile=0.5,
)  # fmt: skip
_LONG = replace(_TINY_BASE, steps=1000, validate_every=50, checkpoint_every=1000, log_every=50)
# CompressAI's lambdas of qualities 2 to 5 (MSE).
LADDER = (0.0035, 0.0067, 0.013, 0.025)

PRESETS = {
    # A small hyperprior on the built-in photographs: under 5 minutes on 2 CPU cores.
    "tiny": Preset(base=_TINY_BASE, seeds=(0, 1, 2), lambdas=(0.01,), sma=_TINY_SMA,
                   stdet=_TINY_STDET),
    # benchmarks/convergence.py: the same model, 5x longer, over four lambdas (BD-rate).
    "convergence": Preset(base=_LONG, seeds=(0, 1, 2), lambdas=LADDER, sma=_TINY_SMA,
                          stdet=_MEASURED_STDET),
    # A mid-size model for a GPU (not measured yet: no GPU was lent to this project so far):
    # benchmarks/convergence.py --preset mid --device cuda.
    "mid": Preset(
        base=FitConfig(model="mbt2018-mean", quality=3, patch_size=(256, 256), batch_size=16,
                       steps=3000, validate_every=100, checkpoint_every=1000, log_every=50,
                       learning_rate=1e-4, device="auto"),
        seeds=(0, 1, 2), lambdas=LADDER, sma=_TINY_SMA, stdet=STDETConfig(),
    ),
    # benchmarks/ablations.py: one lambda, the variants that decide the defaults.
    "ablation": Preset(
        base=_LONG, seeds=(0, 1, 2), lambdas=(0.0067,), sma=_TINY_SMA, stdet=_MEASURED_STDET,
        methods=(
            "adam",
            "stdet", "stdet:variant=true", "stdet:variant=dummy", "stdet:granularity=tensor",
            "stdet:modes=3", "stdet:modes=30", "stdet:fraction=0.3",
            "sma", "sma:feedback=true", "sma:k=1,beta=0.98", "sma:k=20,beta=0.5",
            "stdet+sma", "stdet+sma:trajectory=raw",
        ),
    ),
}  # fmt: skip


def parse_method(spec: str) -> tuple[str, dict[str, object]]:
    """A method and its overrides: ``"stdet+sma:trajectory=raw,k=10"`` is STDET + SMA with
    ``STDETConfig.trajectory = "raw"`` and ``SMAConfig.k = 10`` (the field names of
    :class:`~lic_train.train.SMAConfig` and :class:`~lic_train.stdet.STDETConfig`, which do not
    overlap); values take the type of the field's default."""
    method, _, rest = spec.partition(":")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {spec!r}")
    fields = {}
    if "sma" in method:
        fields.update(SMAConfig.__dataclass_fields__)
    if "stdet" in method:
        fields.update(STDETConfig.__dataclass_fields__)
    overrides: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        name, equals, text = item.partition("=")
        if not equals or name not in fields or name == "seed":
            allowed = ", ".join(f for f in fields if f != "seed") or "none"
            raise ValueError(
                f"method {spec!r}: {item!r} must be FIELD=VALUE with a field of {method} "
                f"({allowed})"
            )
        kind = type(fields[name].default)
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"method {spec!r}: {name} must be true or false, got {text!r}")
            overrides[name] = text.lower() == "true"
        else:
            try:
                overrides[name] = kind(text)
            except ValueError:
                raise ValueError(
                    f"method {spec!r}: {name} must be {kind.__name__}, got {text!r}"
                ) from None
    return method, overrides


def method_config(preset: Preset, spec: str, seed: int, lmbda: float) -> FitConfig:
    """The configuration of method ``spec`` (see :func:`parse_method`) for one seed and lambda."""
    method, overrides = parse_method(spec)
    sma = {k: v for k, v in overrides.items() if k in SMAConfig.__dataclass_fields__}
    stdet = {k: v for k, v in overrides.items() if k in STDETConfig.__dataclass_fields__}
    try:
        return replace(
            preset.base,
            seed=seed,
            lmbda=lmbda,
            sma=replace(preset.sma, **sma) if "sma" in method else None,
            stdet=replace(preset.stdet, seed=seed, **stdet) if "stdet" in method else None,
        )
    except ValueError as err:
        raise ValueError(f"method {spec!r}: {err}") from None


def run_name(method: str, seed: int, lmbda: float) -> str:
    slug = method.replace("+", "-").replace(":", "_").replace("=", "").replace(",", "_")
    return f"{slug}_lambda{lmbda:g}_seed{seed}"


SMOOTHING = 3  # validations in the trailing mean (see the module's docstring)


def smoothed(curve: Sequence[Sequence[float]], window: int = SMOOTHING) -> list[tuple[int, float]]:
    """``(step, mean of the last <= window losses up to that step)`` of a validation curve of
    ``(step, loss)`` pairs."""
    losses = [loss for _, loss in curve]
    return [
        (int(step), statistics.fmean(losses[max(0, i + 1 - window) : i + 1]))
        for i, (step, _) in enumerate(curve)
    ]


def steps_to_reach(curve: Sequence[Sequence[float]], target: float) -> int | None:
    """The first validation step whose trailing mean loss is at or below ``target``."""
    return next((step for step, loss in smoothed(curve) if loss <= target), None)


def _ratio(value: float, reference: float) -> float | None:
    """``value / reference``; None where the reference is not positive (a peak-memory increase
    too small to measure)."""
    return value / reference if reference > 0 else None


def _mean_spread(values: Sequence[float | None]) -> dict:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "n": 0, "of": len(values)}
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return {"mean": statistics.fmean(present), "std": std, "n": len(present), "of": len(values)}


def compare(
    preset: Preset,
    out: str | Path,
    *,
    methods: Sequence[str] | None = None,
    data: str | None = None,
    device: str | None = None,
    jobs: int = 1,
    on_log: Callable[[dict], None] | None = None,
) -> dict:
    """Run the comparison and write its report to ``out``; returns ``results.json``'s content.

    ``methods`` (default: the preset's) are specs for :func:`parse_method`; ``jobs`` runs that many
    trainings at once, each with its share of the CPU threads (faster on a many-core machine; the
    time ratios then include the contention, alike for every method thanks to the rotation).
    """
    out = Path(out)
    on_log = on_log or (lambda _: None)
    methods = list(dict.fromkeys(preset.methods if methods is None else methods))
    if "adam" not in methods:
        raise ValueError("methods must include adam, the baseline every ratio refers to")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    for spec in methods:
        method_config(preset, spec, preset.seeds[0], preset.lambdas[0])  # bad specs fail here
    base = replace(preset.base, data=data, **({"device": device} if device else {}))
    preset = replace(preset, base=base)
    load_eval_images(data)  # bad --data fails here, before any training

    # A fresh process per run: its peak memory is its own (a shared process would reuse the memory
    # earlier runs freed) and no run inherits another's state. Forked from a server that has
    # imported torch and CompressAI once, so a run starts in a fraction of a second.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["lic_train.train", "lic_train.evaluate"])
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    pool = ProcessPoolExecutor(jobs, mp_context=context, max_tasks_per_child=1)
    planned: list[tuple[str, str, int, float]] = []  # (name, method, seed, lambda)
    order = list(methods)
    for lmbda in preset.lambdas:
        for seed in preset.seeds:
            planned += [(run_name(method, seed, lmbda), method, seed, lmbda) for method in order]
            order = order[1:] + order[:1]  # rotate: no method always runs first
    runs: list[dict] = []
    try:
        futures = []
        for name, method, seed, lmbda in planned:
            config = method_config(preset, method, seed, lmbda)
            futures.append(
                pool.submit(
                    _train_and_code, config.to_dict(), str(out / "runs" / name), data, threads
                )
            )
        for index, ((name, method, seed, lmbda), future) in enumerate(
            zip(planned, futures, strict=True)
        ):
            run = future.result()
            run.update({"name": name, "method": method, "seed": seed, "lambda": lmbda})
            runs.append(run)
            on_log({"event": "done", "run": name, "index": index + 1, "of": len(planned),
                    "last_loss": run["curve"][-1][1]})  # fmt: skip
    finally:
        pool.shutdown(cancel_futures=True)

    # The runs first: should the summary fail, rewrite_report() can rebuild it from this file.
    checkpoint.write_json({"preset": _preset_dict(preset, methods), "runs": runs},
                          out / "results.json")  # fmt: skip
    results = _summarise(runs, methods, preset)
    _write_report(results, out)
    return results


def _train_and_code(config: dict, out: str, data: str | None, threads: int | None) -> dict:
    """One run of the comparison, in its own process: train, then code the final evaluated
    weights (the SMA average where SMA is on) into real bit streams on the test images."""
    import warnings as _warnings

    import torch

    _warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    if threads is not None:
        torch.set_num_threads(threads)
    config = FitConfig.from_dict(config)
    trained = fit(config, out)
    summary = trained.summary
    readout = "sma" if config.sma else "raw"
    model = trained.model
    if trained.sma is not None and trained.sma.ready:
        model = trained.sma.averaged_copy(trained.model)
    coded = evaluate(model, load_eval_images(data), device=resolve_device(config.device)).mean()
    records = checkpoint.read_jsonl(Path(out) / "metrics.jsonl")
    result = {
        "readout": readout,
        "curve": [
            (x["step"], x["loss"])
            for x in records if x.get("split") == "val" and x["readout"] == readout
        ],
        "trainable_curve": [(x["step"], x["trainable"]) for x in records if "trainable" in x],
        "trainable": summary.trainable_fraction,
        "seconds_per_step": summary.train_seconds_per_step,
        "peak_memory_bytes": summary.peak_memory_bytes, "memory_kind": summary.memory_kind,
        "bpp": coded["bpp"], "psnr": coded["psnr"], "bpp_estimated": coded["bpp_estimated"],
    }  # fmt: skip
    checkpoint.write_json(result, Path(out) / "result.json")  # kept should the summary fail
    return result


def rewrite_report(out: str | Path) -> dict:
    """Rebuild a finished comparison's summary and files from its ``results.json`` (after a change
    of the summary's rules or plots; no training)."""
    out = Path(out)
    saved = json.loads((out / "results.json").read_text())
    p = saved["preset"]
    preset = Preset(
        base=FitConfig.from_dict(p["base"]),
        seeds=tuple(p["seeds"]),
        lambdas=tuple(p["lambdas"]),
        sma=SMAConfig(**p["sma"]),
        stdet=STDETConfig(**p["stdet"]),
        methods=tuple(p["methods"]),
    )
    results = _summarise(saved["runs"], list(preset.methods), preset)
    _write_report(results, out)
    return results


def _summarise(runs: list[dict], methods: list[str], preset: Preset) -> dict:
    for r in runs:
        r["final_loss"] = smoothed(r["curve"])[-1][1]
    baseline = {(r["seed"], r["lambda"]): r for r in runs if r["method"] == "adam"}

    def measured(r: dict) -> dict:
        """The run's numbers and its ratios to Adam with the same seed and lambda."""
        adam = baseline[(r["seed"], r["lambda"])]
        return {
            "final_loss": r["final_loss"],
            "final_loss_ratio": r["final_loss"] / adam["final_loss"],
            "steps_to_adam_final": steps_to_reach(r["curve"], adam["final_loss"]),
            "steps_ratio": _reach_ratio(r, adam),
            "trainable": r["trainable"],
            "seconds_per_step": r["seconds_per_step"],
            "time_ratio": _ratio(r["seconds_per_step"], adam["seconds_per_step"]),
            "peak_memory_bytes": r["peak_memory_bytes"],
            "memory_ratio": _ratio(r["peak_memory_bytes"], adam["peak_memory_bytes"]),
            "bpp": r["bpp"],
            "psnr": r["psnr"],
        }

    table = [(r["method"], r["lambda"], measured(r)) for r in runs]

    def spread(method: str, keys: Sequence[str], lmbda: float | None = None) -> dict:
        chosen = [m for meth, lam, m in table if meth == method and lmbda in (None, lam)]
        return {key: _mean_spread([m[key] for m in chosen]) for key in keys}

    keys = list(table[0][2]) if table else []
    rows = {method: spread(method, keys) for method in methods}
    for method, value in _bd_rates(runs, methods, preset).items():
        rows[method]["bd_rate_percent"] = value
    by_lambda = {
        method: {
            f"{lmbda:g}": spread(method, ("final_loss_ratio", "steps_ratio"), lmbda)
            for lmbda in preset.lambdas
        }
        for method in methods
    }
    return {
        "preset": _preset_dict(preset, methods),
        "methods": rows,
        "by_lambda": by_lambda,
        "runs": runs,
    }


def _preset_dict(preset: Preset, methods: list[str]) -> dict:
    return {
        "seeds": list(preset.seeds),
        "lambdas": list(preset.lambdas),
        "base": preset.base.to_dict(),
        "sma": preset.sma.__dict__,
        "stdet": preset.stdet.__dict__,
        "methods": list(methods),
    }


def _reach_ratio(run: dict, adam: dict) -> float | None:
    """Steps ``run`` needs to reach Adam's final validation loss over the steps Adam needs (its
    first validation at or below its own final value); None if ``run`` never reaches it."""
    adam_steps = steps_to_reach(adam["curve"], adam["final_loss"])
    steps = steps_to_reach(run["curve"], adam["final_loss"])
    return None if steps is None or not adam_steps else steps / adam_steps


def _bd_rates(runs: list[dict], methods: list[str], preset: Preset) -> dict[str, dict | None]:
    """BD-rate (%) of each method against Adam per seed over the lambdas (needs at least 4 for
    Akima interpolation; None otherwise)."""
    if len(preset.lambdas) < 4:
        return {method: None for method in methods if method != "adam"}
    import bjontegaard as bd

    out = {}
    for method in methods:
        if method == "adam":
            continue
        values = []
        for seed in preset.seeds:

            def curve(m: str, s: int = seed) -> tuple[list[float], list[float]]:
                points = sorted(
                    (r["bpp"], r["psnr"]) for r in runs if r["method"] == m and r["seed"] == s
                )
                return [p[0] for p in points], [p[1] for p in points]

            rate_a, psnr_a = curve("adam")
            rate_m, psnr_m = curve(method)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # non-overlapping curves: reported as None below
                try:
                    value = float(
                        bd.bd_rate(
                            rate_a, psnr_a, rate_m, psnr_m, method="akima",
                            require_matching_points=False,
                        )
                    )  # fmt: skip
                except (AssertionError, ValueError):
                    # bjontegaard's checks: PSNR must rise strictly with the rate
                    value = math.nan
            # None: the curves do not overlap, or PSNR does not rise with the rate
            values.append(value if math.isfinite(value) else None)
        out[method] = _mean_spread(values)
    return out


def format_stat(
    stat: dict | None, digits: int = 3, scale: float = 1.0, missing: str = "reached"
) -> str:
    """``mean ± std``; where some seeds have no value, how many do (``missing`` says why)."""
    if not stat or stat["mean"] is None:
        return f"none {missing}" if stat and stat["of"] else "-"
    text = f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"
    if stat["n"] < stat["of"]:
        text += f" ({stat['n']}/{stat['of']} {missing})"
    return text


def _write_report(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checkpoint.write_json(results, out / "results.json")
    rows = results["methods"]
    lines = [
        "# lic-train compare",
        "",
        f"Seeds {results['preset']['seeds']}, lambdas {results['preset']['lambdas']}; "
        "mean ± standard deviation over the runs (seeds x lambdas). Ratios are to Adam with the "
        "same seed and lambda; a ratio of steps counts only the runs that reach Adam's final loss "
        "(how many do is given).",
        "",
        "| method | final val loss | ratio to Adam | steps to Adam's final loss | ratio | "
        "trainable | s/step | time ratio | peak memory (MB) | memory ratio | bpp | PSNR (dB) | "
        "BD-rate (%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        lines.append(
            f"| {method} | {format_stat(row['final_loss'], 4)} | {format_stat(row['final_loss_ratio'])} | "
            f"{format_stat(row['steps_to_adam_final'], 0)} | {format_stat(row['steps_ratio'])} | "
            f"{format_stat(row['trainable'])} | {format_stat(row['seconds_per_step'], 4)} | "
            f"{format_stat(row['time_ratio'])} | {format_stat(row['peak_memory_bytes'], 0, 1e-6)} | "
            f"{format_stat(row['memory_ratio'], missing='measurable')} | {format_stat(row['bpp'])} | "
            f"{format_stat(row['psnr'], 2)} | "
            f"{format_stat(row.get('bd_rate_percent'), 2, missing='with usable curves')} |"
        )
    lines += [
        "",
        "Validation loss: estimated RD loss of the evaluated weights (the SMA average where SMA is "
        "on) on centre crops of the test images, read through a trailing mean of "
        f"{SMOOTHING} validations (validation every "
        f"{results['preset']['base']['validate_every']} steps); the final loss is the last such "
        "mean. Steps to Adam's final loss: first validation whose trailing mean is at or below it. "
        "bpp and PSNR: real bit streams of the final weights on the whole test images. BD-rate "
        "needs at least 4 lambdas.",
        "",
    ]
    if len(results["preset"]["lambdas"]) > 1:
        lambdas = [f"{x:g}" for x in results["preset"]["lambdas"]]
        lines += [
            "Per lambda: final val loss ratio to Adam / steps to Adam's final loss ratio.",
            "",
            "| method | " + " | ".join(f"lambda {x}" for x in lambdas) + " |",
            "|---|" + "---|" * len(lambdas),
        ]
        for method, per in results["by_lambda"].items():
            cells = [
                f"{format_stat(per[x]['final_loss_ratio'])} / {format_stat(per[x]['steps_ratio'], 2)}"
                for x in lambdas
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    checkpoint.write_atomic(out / "report.md", lambda f: f.write(text.encode()))

    lambdas = results["preset"]["lambdas"]
    for key, ylabel, name, log in (
        ("curve", "validation RD loss", "loss_vs_step.png", True),
        ("trainable_curve", "trainable share of the parameters", "trainable_vs_step.png", False),
    ):
        many = len(rows) > 6  # an ablation: a wider figure, distinct colours, the legend outside
        figure, axes = plt.subplots(
            1, len(lambdas), figsize=(5 * len(lambdas) + 3 * many, 4), squeeze=False
        )
        for axis, lmbda in zip(axes[0], lambdas, strict=True):
            if many:
                axis.set_prop_cycle(color=plt.cm.tab20.colors)
            for method in rows:
                curves = [
                    r[key]
                    for r in results["runs"]
                    if r["method"] == method and r["lambda"] == lmbda
                ]
                if not curves or not curves[0]:
                    continue
                steps = [step for step, _ in curves[0]]
                values = list(zip(*[[v for _, v in c] for c in curves], strict=True))
                axis.plot(steps, [statistics.fmean(v) for v in values], label=method)
                axis.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                                  alpha=0.2)  # fmt: skip
            axis.set_xlabel("step")
            axis.set_ylabel(ylabel)
            if log:
                axis.set_yscale("log")
            axis.set_title(f"lambda = {lmbda:g} (mean, min-max over seeds)", fontsize=9)
            if many:
                axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
            else:
                axis.legend(fontsize=7)
        figure.tight_layout()
        checkpoint.write_atomic(
            out / name, lambda f, fig=figure: fig.savefig(f, format="png", dpi=80)
        )
        plt.close(figure)
    if len(lambdas) > 1:
        figure, axis = plt.subplots(figsize=(5.5, 4))
        for method in rows:
            points = sorted(
                (
                    statistics.fmean(r["bpp"] for r in group),
                    statistics.fmean(r["psnr"] for r in group),
                )
                for group in (
                    [r for r in results["runs"] if r["method"] == method and r["lambda"] == x]
                    for x in lambdas
                )
            )
            axis.plot([p[0] for p in points], [p[1] for p in points], "o-", label=method)
        axis.set_xlabel("bpp (real bit streams, mean over seeds)")
        axis.set_ylabel("PSNR (dB)")
        axis.legend(fontsize=7)
        figure.tight_layout()
        checkpoint.write_atomic(
            out / "rd_curves.png", lambda f: figure.savefig(f, format="png", dpi=80)
        )
        plt.close(figure)
