"""``lic-train``: fit and evaluate CompressAI models with or without STDET/SMA.

Flags follow CompressAI's ``examples/train.py`` where it has them. Bad input prints one line on
stderr naming the flag, the value and what is allowed, and exits with status 2; a run stopped by a
non-finite loss exits with status 1 and keeps its last good checkpoint. Every flag that needs no
model is checked before torch is imported.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

from lic_dynamics import files, signals, validation
from lic_dynamics.cli import (
    USAGE_STATUS,
    Parser,
    UsageError,
    error_line,
    flags,
    one_line,
    reader_gone,
    subcommand,
)
from lic_dynamics.validation import InvalidValue
from lic_train.experiments.methods import parse_method
from lic_train.rules import SMAConfig, STDETConfig
from lic_train.rules.stdet import GRANULARITIES, TRAJECTORIES, VARIANTS
from lic_train.trainer.config import (
    EMA_DECAY,
    FLOAT32_MAX,
    LR_SCHEDULES,
    FitConfig,
    default_workers,
)

# Everything above imports no torch: a bad flag is refused before torch and CompressAI load
# (seconds), and the modules that need them are imported by the command that runs.

# May differ on --resume: where and how long it runs.
RESUME_FLAGS = {"command", "out", "resume", "steps", "epochs", "device", "num_workers"}
# Library parameters that a flag of another name sets: the model's name is --model, a method spec
# comes from --methods.
ALIASES = {"name": "model", "method": "methods"}
PROGRESS_SECONDS = 30.0  # between progress lines in a log


@contextmanager
def flags_of(prefix: str, *, own: tuple[str, ...] = ()):
    """Errors about a field of a nested configuration name the flag that sets it: ``prefix`` +
    the field (``k`` of SMAConfig is ``--sma-k``), except the fields in ``own`` that a top-level
    flag sets (STDET's ``seed`` is ``--seed``)."""
    try:
        yield
    except InvalidValue as error:
        name = error.parameter
        raise error.renamed(name if name in own else prefix + name) from None


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """The model: a zoo or registry name and quality, or the architecture by its widths."""
    model = p.add_argument_group("model")
    model.add_argument("-m", "--model", default="bmshj2018-hyperprior", help="zoo or registry name")
    model.add_argument("-q", "--quality", type=int, help="zoo quality (default 3 without --N/--M)")
    model.add_argument("--N", type=int, help="channels N (with --M: the architecture, any size)")
    model.add_argument("--M", type=int, help="latent channels M")


def _add_loss_flags(p: argparse.ArgumentParser) -> None:
    """The rate-distortion loss, the two optimizers and the schedule (CompressAI's defaults)."""
    loss = p.add_argument_group("loss and optimizers (CompressAI's defaults)")
    loss.add_argument("--lambda", dest="lmbda", type=float, default=1e-2, help="RD trade-off")
    loss.add_argument("--metric", choices=("mse", "ms-ssim"), default="mse")
    loss.add_argument("-lr", "--learning-rate", type=float, default=1e-4)
    loss.add_argument("--aux-learning-rate", type=float, default=1e-3)
    loss.add_argument("--clip_max_norm", type=float, default=1.0, help="0: no clipping")
    loss.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="plateau",
                      help="plateau (CompressAI's), multistep (x gamma at --lr-milestones) or "
                      "none")  # fmt: skip
    loss.add_argument("--lr-milestones", type=float, nargs="+", default=FitConfig.lr_milestones,
                      metavar="FRACTION", help="multistep: fractions of the steps (default 0.9)")  # fmt: skip
    loss.add_argument("--lr-gamma", type=float, default=FitConfig.lr_gamma,
                      help="multistep: the factor at each milestone (default 0.1)")  # fmt: skip
    loss.add_argument("--warmup-steps", type=int, default=0,
                      help="linear warm-up (multistep and none)")  # fmt: skip
    loss.add_argument("--checkpoint", metavar="PATH",
                      help="start from the weights of this CompressAI checkpoint (ours, train.py's "
                      "or a state dict); the optimizers start afresh")  # fmt: skip


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    """The training and test images, the patches and batches, the loader."""
    data = p.add_argument_group("data")
    data.add_argument("-d", "--data", help="image folder (train/ and test/, or one folder); "
                      "default: the built-in photographs")  # fmt: skip
    data.add_argument("--test-data", metavar="DIR",
                      help="the test images (e.g. Kodak); --data then holds the training "
                      "images only")  # fmt: skip
    data.add_argument("--patch-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    data.add_argument("--batch-size", type=int, default=16)
    data.add_argument("--test-batch-size", type=int, default=FitConfig.test_batch_size)
    data.add_argument("-n", "--num-workers", type=int,
                      help=f"DataLoader workers (default: {default_workers()} here; 0 for "
                      "the built-in photographs, which are in memory)")  # fmt: skip


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """The run: its length, validation, checkpoints, seed, device and folder."""
    run = p.add_argument_group("run")
    length = run.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps (default 1000)")
    length.add_argument("-e", "--epochs", type=int, help="passes over the training images")
    run.add_argument("--validate-every", type=int, default=100, help="steps")
    run.add_argument("--checkpoint-every", type=int, help="steps (default: every validation)")
    run.add_argument("--log-every", type=int, default=10, help="steps")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", choices=("auto", "cpu", "cuda"),
                     help="default auto (on --resume: the run's own)")  # fmt: skip
    run.add_argument("--out", default="runs/run", help="run folder (default runs/run)")
    run.add_argument("--resume", nargs="?", const="", metavar="RUN",
                     help="continue the run in RUN (or in --out)")  # fmt: skip


def _add_sma_flags(p: argparse.ArgumentParser) -> None:
    """The averages of the weights: SMA, and the per-step EMA as torch_ema keeps it."""
    sma = p.add_argument_group("SMA")
    sma.add_argument("--sma", action="store_true", help="sample-then-moving-average")
    sma.add_argument("--sma-k", type=int, default=SMAConfig.k)
    sma.add_argument("--sma-beta", type=float, default=SMAConfig.beta)
    sma.add_argument("--sma-feedback", action="store_true")
    sma.add_argument("--ema", action="store_true",
                     help="per-step EMA of the weights as torch_ema keeps it (SMA with k = 1 "
                          "and torch_ema's decay warm-up)")  # fmt: skip
    sma.add_argument("--ema-decay", type=float, default=EMA_DECAY,
                     help=f"default {EMA_DECAY}")  # fmt: skip


def _add_stdet_flags(p: argparse.ArgumentParser) -> None:
    """STDET: the switch and one flag per field of STDETConfig, with its default."""
    stdet = p.add_argument_group("STDET")
    d = STDETConfig()
    stdet.add_argument("--stdet", action="store_true", help="embed parameters (STDET)")
    for flag, kind in (
        ("snapshot-every", int), ("snapshots", int), ("every", int), ("modes", int),
        ("samples", int), ("fraction", float), ("max-embedded", float), ("min-r2", float),
        ("keep-sensitive", float), ("sensitivity-quantile", float),
        ("max-amplification", float), ("release-beyond", float),
    ):  # fmt: skip
        default = getattr(d, flag.replace("-", "_"))
        stdet.add_argument(f"--stdet-{flag}", type=kind, default=default, help=f"default {default}")
    stdet.add_argument("--stdet-variant", choices=VARIANTS, default=d.variant)
    stdet.add_argument("--stdet-granularity", choices=GRANULARITIES, default=d.granularity)
    stdet.add_argument("--stdet-trajectory", choices=TRAJECTORIES, default=d.trajectory,
                       help="with --sma: observe the average (sma) or the raw weights")  # fmt: skip
    for flag, what in (
        ("live-references", "cluster only the scalars that moved"),
        ("route-gradients", "give each reference its mode's gradient"),
    ):
        default = getattr(d, flag.replace("-", "_"))
        stdet.add_argument(f"--stdet-{flag}", action=argparse.BooleanOptionalAction,
                           default=default, help=f"{what} (default {default})")  # fmt: skip


def _add_fit_flags(p: argparse.ArgumentParser) -> None:
    for add in (
        _add_model_flags, _add_loss_flags, _add_data_flags, _add_run_flags, _add_sma_flags,
        _add_stdet_flags,
    ):  # fmt: skip
        add(p)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lic-train", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    fit = commands.add_parser("fit", help="train a model")
    _add_fit_flags(fit)
    evaluate = commands.add_parser("eval", help="real bit streams of a run or checkpoint")
    evaluate.add_argument("target", help="a run folder or a checkpoint file (any CompressAI one)")
    evaluate.add_argument("-m", "--model",
                          help="the architecture of a checkpoint not written by lic-train fit")  # fmt: skip
    evaluate.add_argument("-d", "--data", help="image folder (default: built-in test photographs)")
    evaluate.add_argument("--weights", choices=("sma", "raw"), default=None,
                          help="default: sma when the run has an average, else raw")  # fmt: skip
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    evaluate.add_argument("--json", action="store_true", help="print the eval_model JSON")
    export = commands.add_parser("export", help="a run's weights as a CompressAI checkpoint")
    export.add_argument("target", help="a run folder or a lic-train checkpoint file")
    export.add_argument("out", help="the file to write (e.g. model.pth.tar)")
    export.add_argument("--weights", choices=("sma", "raw"), default=None,
                        help="default: sma when the run has an average, else raw")  # fmt: skip
    comp = commands.add_parser("compare", help="Adam vs SMA, STDET, STDET + SMA; a report")
    # Checked by run_compare: the presets hold models, whose checks import CompressAI.
    comp.add_argument(
        "--preset", default="tiny", help="a preset of lic_train.experiments.presets (default tiny)"
    )
    comp.add_argument("--out", default="runs/compare", help="report folder")
    comp.add_argument("-d", "--data", help="image folder (default: the built-in photographs)")
    comp.add_argument("--seeds", type=int, nargs="+", help="default: the preset's (0 1 2)")
    comp.add_argument("--lambdas", type=float, nargs="+", help="default: the preset's (0.01)")
    comp.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="adam, ema, sma, stdet, stdet+sma, each with optional overrides, e.g. "
        "stdet:variant=true or sma:k=10,beta=0.8 (default: the preset's)",
    )
    comp.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1)")
    comp.add_argument("--steps", type=int, help="default: the preset's")
    comp.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    return parser


def fit_config(args: argparse.Namespace) -> FitConfig:
    """The configuration the flags describe (its length: :func:`with_length`)."""
    # Every sub-flag is checked, given its switch or not: --sma-k 0 is wrong either way.
    fields = [name for name in STDETConfig.__dataclass_fields__ if name != "seed"]
    with flags_of("stdet_", own=("seed",)):
        stdet = STDETConfig(
            **{name: getattr(args, f"stdet_{name}") for name in fields}, seed=args.seed
        )
    with flags_of("sma_"):
        sma = SMAConfig(k=args.sma_k, beta=args.sma_beta, feedback=args.sma_feedback)
    try:
        ema = SMAConfig(k=1, beta=args.ema_decay, warmup=True)
    except InvalidValue as error:
        raise error.renamed("ema_decay") from None
    if args.sma and args.ema:
        raise UsageError("lic-train fit: error: --sma and --ema: give one (EMA is SMA with k = 1)")
    check_sub_flags(args)
    stdet = stdet if args.stdet else None
    sma = sma if args.sma else ema if args.ema else None
    return FitConfig(
        model=args.model,
        quality=args.quality,
        N=args.N,
        M=args.M,
        lmbda=args.lmbda,
        metric=args.metric,
        learning_rate=args.learning_rate,
        aux_learning_rate=args.aux_learning_rate,
        clip_max_norm=args.clip_max_norm,
        lr_schedule=args.lr_schedule,
        lr_milestones=tuple(args.lr_milestones),
        lr_gamma=args.lr_gamma,
        warmup_steps=args.warmup_steps,
        checkpoint=_absolute(args.checkpoint),
        data=_absolute(args.data),
        test_data=_absolute(args.test_data),
        patch_size=tuple(args.patch_size),
        batch_size=args.batch_size,
        test_batch_size=args.test_batch_size,
        num_workers=args.num_workers,
        validate_every=args.validate_every,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        seed=args.seed,
        device=args.device or "auto",
        sma=sma,
        stdet=stdet,
    )


def sub_flags() -> dict[str, tuple[str, ...]]:
    """Each switch of ``fit`` (a flag, or ``--lr-schedule multistep``) -> the flags that configure
    it, as destinations."""
    stdet = tuple(f"stdet_{name}" for name in STDETConfig.__dataclass_fields__ if name != "seed")
    return {
        "sma": ("sma_k", "sma_beta", "sma_feedback"),
        "ema": ("ema_decay",),
        "stdet": stdet,
        "multistep": ("lr_milestones", "lr_gamma"),
    }


def check_sub_flags(args: argparse.Namespace) -> None:
    """A ``UsageError`` for a sub-flag given (other than its default) without its switch:
    ``--sma-k 10`` without ``--sma`` would be ignored, so it is surely a mistake."""
    fit = subcommand(build_parser(), "fit")
    names = flags(fit)
    for switch, dests in sub_flags().items():
        on = args.lr_schedule == "multistep" if switch == "multistep" else getattr(args, switch)
        for dest in () if on else dests:
            value = getattr(args, dest)
            if _normal(value) != _normal(fit.get_default(dest)):
                needs = "--lr-schedule multistep" if switch == "multistep" else f"--{switch}"
                raise UsageError(
                    f"lic-train fit: error: {names[dest]} {_shown(value)}: given without {needs}, "
                    "which it configures (it would be ignored)"
                )


def _normal(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def _absolute(path: str | None) -> str | None:
    """A path flag as an absolute path (a run may be resumed from elsewhere); '' stays '' so that
    the data layer can refuse it rather than read the current folder."""
    return path if not path else str(Path(path).resolve())


def with_length(config: FitConfig, args: argparse.Namespace) -> FitConfig:
    """``config`` trained for ``--epochs`` (passes of the sampler, in steps) or ``--steps``."""
    if args.epochs is not None:
        from lic_train.trainer.loop import steps_for_epochs

        return replace(config, steps=steps_for_epochs(config, args.epochs))
    if args.steps is not None:
        return replace(config, steps=args.steps)
    return config


def run_fit(args: argparse.Namespace) -> int:
    if args.epochs is not None:  # its bound in steps needs the data: with_length
        validation.integer("epochs", args.epochs, minimum=1)
    config = fit_config(args)  # the flags themselves, before torch is imported (the model's
    # name, quality and widths last: their check imports CompressAI)
    from lic_train.trainer.loop import LATEST, NonFiniteLoss, check_out, fit, resume_point

    resume: bool | dict = args.resume is not None
    default_out = subcommand(build_parser(), "fit").get_default("out")
    if (
        args.resume
        and args.out != default_out
        and Path(args.out).resolve() != Path(args.resume).resolve()
    ):
        raise UsageError(
            f"lic-train fit: error: --out {args.out} and --resume {args.resume}: the run continues "
            "in its own folder; give one (--resume alone continues the run in --out)"
        )
    # The raw value: Path("") would be the current folder.
    check_out(args.resume or args.out, "resume" if args.resume else "out")
    out = Path(args.resume or args.out)
    if resume:
        _, resume = resume_point(out)  # read once: fit continues from it
        config = with_length(resumed_config(args, resume["config"], out), args)
    else:
        if (out / LATEST).exists():
            raise UsageError(
                f"lic-train fit: error: --out {out} already holds a run; pass --resume to continue "
                "it or choose another --out"
            )
        config = with_length(config, args)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    progress = Progress("fit", config.steps) if main_rank else (lambda record: None)
    try:
        summary = fit(config, out, resume=resume, on_log=progress).summary
    except NonFiniteLoss as error:
        raise RunStopped(str(error)) from None
    finally:
        if main_rank:
            progress.close()
    best = summary.best[summary.evaluated_readout]
    if not main_rank:
        return 0
    print(
        f"{summary.steps} steps in {summary.wall_time:.1f} s; best validation loss "
        f"({summary.evaluated_readout} weights) {best:.4f}; "
        f"trainable {100 * summary.trainable_fraction:.1f}%; run in {out}"
    )
    return 0


def resumed_config(args: argparse.Namespace, saved: dict, out: Path) -> FitConfig:
    """The saved configuration of the run in ``out``, where it runs (device, workers) taken from
    the flags when given. Any other flag given must agree with the run (so that the run's own
    command line may be given again with ``--resume``); a ``UsageError`` lists those that do not."""
    fit_config(args)  # the flags themselves are valid, whatever the run
    defaults = build_parser().parse_args(["fit"])
    given = [
        d for d, v in vars(args).items() if d not in RESUME_FLAGS and v != getattr(defaults, d)
    ]
    names = flags(subcommand(build_parser(), "fit"))
    differ = [
        f"{names[dest]} {_shown(getattr(args, dest))} (the run's: {_shown(theirs)})"
        for dest in given
        if (theirs := run_value(dest, saved)) is not UNUSED and theirs != given_value(dest, args)
    ]
    if differ:
        raise UsageError(
            f"lic-train fit: error: --resume continues the run in {out} as it was configured; "
            f"only --steps, --epochs, --device and --num-workers may change, and these flags "
            f"differ from it: {', '.join(differ)}"
        )
    where = {"device": args.device, "num_workers": args.num_workers}
    try:
        return FitConfig.from_dict({**saved, **{k: v for k, v in where.items() if v is not None}})
    except (TypeError, ValueError) as error:
        raise ValueError(f"--resume {out}: its configuration does not load ({error})") from None


UNUSED = object()  # a sub-flag whose switch the run did not give: any value leaves it the same


def run_value(dest: str, saved: dict) -> object:
    """The value of the flag ``dest`` that the saved configuration ``saved`` was made with, or
    :data:`UNUSED` for a sub-flag of SMA, EMA or STDET when the run has no such rule (a run's
    own command line may carry those)."""
    sma, stdet = saved.get("sma") or {}, saved.get("stdet") or {}
    is_ema = sma.get("k") == 1
    if dest in ("sma", "stdet"):
        return bool(saved.get(dest))
    if dest == "ema":
        return is_ema
    if dest == "ema_decay":
        return sma["beta"] if is_ema else UNUSED
    if dest.startswith("sma_"):
        return sma.get(dest.removeprefix("sma_")) if sma else UNUSED
    if dest.startswith("stdet_"):
        return stdet.get(dest.removeprefix("stdet_")) if stdet else UNUSED
    value = saved.get(dest)
    return tuple(value) if isinstance(value, list | tuple) else value


def given_value(dest: str, args: argparse.Namespace) -> object:
    """The flag ``dest`` as the configuration stores it (paths absolute, lists as tuples)."""
    value = getattr(args, dest)
    if dest in ("data", "test_data", "checkpoint"):
        return _absolute(value)
    return tuple(value) if isinstance(value, list | tuple) else value


def _shown(value: object) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return "(none)" if value is None else str(value)


class Progress:
    """A run's progress on stderr: a tqdm bar on a terminal; otherwise (a log file, CI) one line
    every ``every`` seconds and at the last step: step, loss, bpp, PSNR, ETA. Each validation
    gets a line too, unless ``validations`` is False. Picklable, so that ``compare`` hands one to
    each run's process."""

    def __init__(
        self, label: str, total: int, *, every: float = PROGRESS_SECONDS, validations: bool = True
    ) -> None:
        self.total, self.label, self.every = total, label, every
        self.validations = validations
        self.bar = None
        self.first = True
        # Not 0: time.monotonic() counts from boot, and a machine up for less than ``every``
        # seconds would skip the first line.
        self.printed = -math.inf

    def __getstate__(self) -> dict:
        return {**self.__dict__, "bar": None}

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def __call__(self, record: dict) -> None:
        if record.get("split") == "stdet":
            if self.validations:
                self._write(
                    f"{self.label} step {record['step']}: STDET embedded "
                    f"{100 * record['embedded']:.0f}%, leverage {record['leverage_max']:.3g}, "
                    f"extrapolation {record['extrapolation_max']:.3g}, "
                    f"drift {record['embedded_drift']:.3g}"
                )
            return
        if record.get("split") == "val":
            if not self.validations:
                return
            self._write(
                f"{self.label} step {record['step']}: val {record['readout']} loss "
                f"{record['loss']:.4f} bpp {record['bpp']:.4f} PSNR {record['psnr']:.2f} dB"
            )
            return
        step, now = record["step"], time.monotonic()
        if self.first and sys.stderr.isatty() and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.label, dynamic_ncols=True)
        self.first = False
        psnr = f"{record['psnr']:.2f}" if "psnr" in record else "-"
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(
                loss=f"{record['loss']:.4f}", bpp=f"{record['bpp']:.3f}", psnr=psnr,
                trainable=f"{100 * record['trainable']:.0f}%",
            )  # fmt: skip
            self.bar.refresh()
            return
        if now - self.printed < self.every and step < self.total:
            return
        self.printed = now
        # The run's own clock (resumed runs included): seconds per step so far.
        eta = _duration(record["wall_time"] / step * (self.total - step))
        self._write(
            f"{self.label} step {step}/{self.total}: loss {record['loss']:.4f} bpp "
            f"{record['bpp']:.4f} PSNR {psnr} dB, ETA {eta}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def run_export(args: argparse.Namespace) -> int:
    from lic_train.trainer.checkpoint import BEST, LATEST, export

    folder = Path(args.out).parent
    # Into a run's folder only while no process writes there.
    holds_run = (folder / LATEST).exists() or (folder / BEST).exists()
    with files.FolderLock(folder, "out") if holds_run else nullcontext():
        weights, exported = export(args.target, args.out, weights=args.weights)
    print(
        f"wrote {args.out}: the {weights} weights (validation loss {exported['loss']:.4f}), "
        "as CompressAI's train.py writes a checkpoint"
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from lic_train.trainer.checkpoint import load_trained
    from lic_train.trainer.data import load_eval_images
    from lic_train.trainer.evaluate import eval_model_json, evaluate
    from lic_train.trainer.loop import resolve_device

    device = resolve_device(args.device)
    images = load_eval_images(args.data)  # a bad --data fails before the model is built
    name, model = load_trained(args.target, weights=args.weights, model=args.model)
    result = evaluate(model, images, device=device)
    if args.json:
        print(json.dumps(eval_model_json(name, result), indent=2, allow_nan=False))
        return 0
    for image in result.images:
        ms = "-" if image.ms_ssim is None else f"{image.ms_ssim:.4f}"
        print(
            f"{image.name}: {image.bpp:.4f} bpp (estimated {image.bpp_estimated:.4f}), "
            f"PSNR {image.psnr:.2f} dB, MS-SSIM {ms}"
        )
    mean = result.mean()
    ms = "-" if mean.get("ms_ssim") is None else f"{mean['ms_ssim']:.4f}"
    print(
        f"mean over {len(result.images)} images: {mean['bpp']:.4f} bpp (estimated "
        f"{mean['bpp_estimated']:.4f}), PSNR {mean['psnr']:.2f} dB, MS-SSIM {ms}"
    )
    return 0


def run_compare(args: argparse.Namespace) -> int:
    validation.integer("jobs", args.jobs, minimum=1)  # the numbers before the import
    if args.steps is not None:
        validation.integer("steps", args.steps, minimum=1)
    for seed in args.seeds or ():  # each again, and once, with the preset
        validation.integer("seeds", seed, minimum=0)
    for lmbda in args.lambdas or ():
        validation.real("lambdas", lmbda, "(0, 3.4e38)", low=0, high=FLOAT32_MAX)
    for spec in args.methods or ():
        try:
            parse_method(spec)
        except ValueError as err:
            raise UsageError(f"lic-train compare: error: --methods: {err}") from None
    from lic_train.experiments import PRESETS
    from lic_train.experiments.compare import compare

    if args.preset not in PRESETS:
        choices = ", ".join(repr(name) for name in PRESETS)
        raise UsageError(
            f"lic-train compare: error: --preset must be one of {choices}, got {args.preset!r}"
        )
    preset = PRESETS[args.preset]
    if args.seeds is not None:
        preset = replace(preset, seeds=tuple(args.seeds))
    if args.lambdas is not None:
        preset = replace(preset, lambdas=tuple(args.lambdas))
    if args.steps is not None:
        preset = replace(preset, base=replace(preset.base, steps=args.steps))
    files.check_folder(args.out, "out")  # the raw value: Path("") would be the current folder
    out = Path(args.out)
    if (out / "runs").exists():
        raise UsageError(
            f"lic-train compare: error: --out {out} already holds a comparison; choose another --out"
        )

    def on_log(record: dict) -> None:
        if record["event"] == "done":
            print(f"[{record['index']}/{record['of']}] {record['run']} trained and coded",
                  file=sys.stderr, flush=True)  # fmt: skip

    data = None if args.data is None else str(Path(args.data).resolve())
    # Each run reports its own progress, from its process (validations only in its metrics).
    progress = functools.partial(Progress, validations=False)
    compare(preset, out, methods=args.methods, data=data, device=args.device, jobs=args.jobs,
            on_log=on_log, progress=progress, show_warning=one_line_warning)  # fmt: skip
    print((out / "report.md").read_text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    command, name = "lic-train", None
    try:
        with signals.sigterm_raises(), warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            args = build_parser().parse_args(argv)
            command, name = f"lic-train {args.command}", args.command
            return COMMANDS[args.command](args)
    except (UsageError, ValueError) as err:
        parser = subcommand(build_parser(), name)
        print(error_line(command, err, parser, ALIASES), file=sys.stderr)
        return USAGE_STATUS
    except RunStopped as err:
        print(one_line(f"{command}: {err}"), file=sys.stderr)
    except BrokenPipeError:  # lic-train eval | head
        return reader_gone()
    except OSError as err:  # the disk filled up, a file vanished: not the input's fault
        where = f"{err.filename}: " if err.filename else ""
        print(one_line(f"{command}: error: {where}{err.strerror or err}"), file=sys.stderr)
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise  # a bug: its traceback is what a report needs
        print(f"{command}: error: {out_of_memory(err)}", file=sys.stderr)
    except (KeyboardInterrupt, signals.Terminated) as err:
        how = "interrupted" if isinstance(err, KeyboardInterrupt) else "terminated (SIGTERM)"
        hint = "; resume with --resume" if name == "fit" and can_resume(args) else ""
        print(f"{command}: {how}{hint}", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else signals.EXIT_STATUS
    return 1


def can_resume(args: argparse.Namespace) -> bool:
    """Whether the run ``fit`` was given now has a checkpoint to resume from (never when the
    trainer was not imported yet: stopped while torch loads, the run has not started)."""
    loop = sys.modules.get("lic_train.trainer.loop")
    return loop is not None and loop.resumable(Path(args.resume or args.out))


COMMANDS = {"fit": run_fit, "compare": run_compare, "export": run_export, "eval": run_eval}


class RunStopped(Exception):
    """A run that stopped on its own (a non-finite loss): one line, status 1."""


def _is_cuda_out_of_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")  # not imported: the error cannot be torch's
    return torch is not None and isinstance(error, torch.OutOfMemoryError)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says memory ran out: Python's ``MemoryError``, CUDA's
    ``torch.OutOfMemoryError``, or the CPU allocator's ``RuntimeError``."""
    return (
        isinstance(error, MemoryError)
        or _is_cuda_out_of_memory(error)
        or "can't allocate memory" in str(error)
    )


def out_of_memory(error: BaseException) -> str:
    """One line for a batch that does not fit, naming the flags that size it."""
    where = "GPU memory" if _is_cuda_out_of_memory(error) else "memory"
    asked = re.search(r"allocate (\d+) bytes|allocate ([\d.]+ \w+)", str(error))
    size = ""
    if asked:
        size = (
            f" allocating {int(asked[1]) / 2**30:.1f} GiB"
            if asked[1]
            else f" allocating {asked[2]}"
        )
    return (
        f"out of {where}{size}; lower --batch-size or --patch-size, or the model's size "
        "(--quality, --N, --M; and --test-batch-size, --jobs)"
    )


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(one_line(f"lic-train: warning: {message}"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
