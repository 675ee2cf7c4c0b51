"""The training loop: CompressAI's ``examples/train.py`` step, with SMA and STDET, resumable bit for bit.

One step (CompressAI's contract, ``shared/notes/compressai.md`` §2): zero both optimizers; forward;
``RateDistortionLoss``; backward; ``stdet.after_backward()``; clip the gradient norm; Adam step on the
network (STDET's post-step hook recomputes embedded scalars); ``sma.step()``; ``stdet.after_step()``;
the auxiliary loss and the second Adam on the ``quantiles``. Every ``validate_every`` steps both
readouts (raw weights, and the SMA average when SMA is on) are validated on centre crops of the test
images (estimated rate, ``eval()`` mode) and ``ReduceLROnPlateau`` steps on the validation loss;
every ``checkpoint_every`` steps (default: at every validation) and at the end a checkpoint is
written atomically (latest, and best by the loss of the evaluated readout: the SMA average when SMA
is on).

Determinism: crops are a function of (seed, epoch, index) (:class:`lic_train.data.PatchDataset`), the
sampler of (seed, epoch), and the checkpoint holds every random state (torch, CUDA, numpy, random;
of every rank), so a resumed run continues exactly where the checkpoint left it: on the CPU its final
weights equal an uninterrupted run's bit for bit.

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in ``DistributedDataParallel`` (NCCL on
GPUs, gloo on the CPU), each rank reads its share of every epoch through a ``DistributedSampler``,
and rank 0 writes metrics and checkpoints. The library never prints: progress goes to ``on_log``.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from lic_train import checkpoint, distributed
from lic_train.data import PatchDataset, fits, load_split
from lic_train.models import build_model, describe
from lic_train.parameters import is_quantiles
from lic_train.sma import SMA, check_hyperparameters
from lic_train.stdet import STDET, STDETConfig
from nqm import _checks

METRICS = ("mse", "ms-ssim")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stopped and its last good checkpoint is kept."""


@dataclass(frozen=True)
class SMAConfig:
    """SMA's knobs (see :class:`lic_train.sma.SMA`)."""

    k: int = 5
    beta: float = 0.9
    feedback: bool = False

    def __post_init__(self) -> None:
        check_hyperparameters(k=self.k, beta=self.beta, feedback=self.feedback)


@dataclass(frozen=True)
class FitConfig:
    """Everything a run depends on; stored in every checkpoint so that ``--resume`` can refuse a
    different configuration."""

    model: str = "bmshj2018-hyperprior"
    quality: int | None = None
    N: int | None = None
    M: int | None = None
    lmbda: float = 1e-2
    metric: str = "mse"
    learning_rate: float = 1e-4
    aux_learning_rate: float = 1e-3
    clip_max_norm: float = 1.0
    lr_schedule: str = "plateau"
    data: str | None = None
    patch_size: tuple[int, int] = (256, 256)
    batch_size: int = 16
    steps: int = 1000
    validate_every: int = 100
    checkpoint_every: int | None = None  # steps; None: at every validation
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    sma: SMAConfig | None = None
    stdet: STDETConfig | None = None
    extra: dict = field(default_factory=dict)  # free-form labels (e.g. the compare preset)

    def __post_init__(self) -> None:
        positive = {"low": 0, "high": math.inf, "low_open": True}
        for name in ("lmbda", "learning_rate", "aux_learning_rate"):
            value = _checks.real(name, getattr(self, name), "(0, inf)", **positive)
            object.__setattr__(self, name, value)
        clip = _checks.real(
            "clip_max_norm", self.clip_max_norm, "[0, inf) (0: no clipping)", low=0, high=math.inf,
            low_open=False,
        )  # fmt: skip
        object.__setattr__(self, "clip_max_norm", clip)
        for name, minimum in (
            ("batch_size", 1), ("steps", 1), ("validate_every", 1), ("log_every", 1), ("seed", 0),
        ):  # fmt: skip
            object.__setattr__(
                self, name, _checks.integer(name, getattr(self, name), minimum=minimum)
            )
        if self.checkpoint_every is not None:
            every = _checks.integer("checkpoint_every", self.checkpoint_every, minimum=1)
            if every % self.validate_every:
                raise ValueError(
                    f"checkpoint_every must be a multiple of validate_every ({self.validate_every}), "
                    f"got {every}"
                )
            object.__setattr__(self, "checkpoint_every", every)
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.lr_schedule not in ("plateau", "none"):
            raise ValueError(f"lr_schedule must be plateau or none, got {self.lr_schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        patch = tuple(self.patch_size)
        if len(patch) != 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 64 or s % 64 for s in patch
        ):
            raise ValueError(
                f"patch_size must be two integers, multiples of 64 (the models downsample by 64), "
                f"got {self.patch_size!r}"
            )
        object.__setattr__(self, "patch_size", patch)
        if self.metric == "ms-ssim" and min(patch) <= 160:
            raise ValueError(
                f"patch_size must exceed 160 on both sides for --metric ms-ssim (MS-SSIM's five "
                f"scales need it), got {patch}"
            )
        if self.quality is None and self.N is None and self.M is None:
            from lic_train.models import quality_range

            if quality_range(self.model) is not None:  # a zoo model with qualities
                object.__setattr__(self, "quality", 3)  # as CompressAI's train.py

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> FitConfig:
        data = dict(data)
        data["patch_size"] = tuple(data["patch_size"])
        data["sma"] = SMAConfig(**data["sma"]) if data.get("sma") else None
        data["stdet"] = STDETConfig(**data["stdet"]) if data.get("stdet") else None
        return FitConfig(**data)


@dataclass
class Summary:
    """What ``RUN/summary.json`` holds."""

    steps: int
    wall_time: float
    seconds_per_step: float  # wall time (validation and checkpoints included) per step
    train_seconds_per_step: float  # the training step alone
    final: dict[str, dict[str, float]]  # the last validation (loss, bpp, psnr) of each readout
    best: dict[str, float]  # the lowest validation loss of each readout
    evaluated_readout: str  # "sma" with SMA, else "raw": the readout the best checkpoint follows
    trainable_fraction: float
    peak_memory_bytes: int
    memory_kind: str
    parameters: int
    out: str


@dataclass
class Trained:
    """What :func:`fit` returns: the summary and the trained objects (on this rank)."""

    summary: Summary
    model: nn.Module
    sma: SMA | None
    stdet: STDET | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device cuda: no CUDA device is available (use --device cpu or auto)")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def rate_distortion_loss(lmbda: float, metric: str) -> nn.Module:
    from compressai.losses import RateDistortionLoss

    return RateDistortionLoss(lmbda=lmbda, metric=metric)


def distortion_key(metric: str) -> str:
    # RateDistortionLoss returns mse_loss or, for MS-SSIM, ms_ssim_loss instead (compressai.md §2).
    return "mse_loss" if metric == "mse" else "ms_ssim_loss"


@torch.no_grad()
def validate(model: nn.Module, batches: list[torch.Tensor], lmbda: float, metric: str) -> dict:
    """Estimated RD loss, bpp and PSNR (dB, float images) of ``model`` in ``eval()`` mode over
    ``batches``, averaged per image."""
    criterion = rate_distortion_loss(lmbda, metric)
    was_training = model.training
    model.eval()
    totals = {"loss": 0.0, "bpp": 0.0, "psnr": 0.0, **({"ms-ssim": 0.0} if metric != "mse" else {})}
    count = 0
    for x in batches:
        out = model(x)
        losses = criterion(out, x)
        n = x.shape[0]
        mse = (out["x_hat"].clamp(0, 1) - x).pow(2).flatten(1).mean(1)
        totals["loss"] += losses["loss"].item() * n
        totals["bpp"] += losses["bpp_loss"].item() * n
        totals["psnr"] += (-10 * torch.log10(mse.clamp_min(1e-12))).sum().item()
        if metric != "mse":
            totals["ms-ssim"] += losses["ms_ssim_loss"].item() * n
        count += n
    model.train(was_training)
    return {key: value / count for key, value in totals.items()}


def _random_states(device: torch.device) -> dict:
    return {
        "torch": torch.get_rng_state(),
        # Only a CUDA run touches CUDA: a CPU run on a GPU machine must not initialise it.
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        # Libraries may draw from numpy's legacy global state; saved so that resume is exact.
        "numpy": np.random.get_state(),  # noqa: NPY002
        "random": random.getstate(),
    }


def _set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    random.setstate(states["random"])


def _gather(obj: object) -> list:
    """``obj`` of every rank, on every rank (a list of one without a process group)."""
    if not distributed.active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_memory(device: torch.device) -> int:
    """Start the peak-memory count of this run (several runs may share one process); returns the
    baseline in bytes (the RSS now, on the CPU; 0 on CUDA)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return 0
    try:  # Linux >= 4.0: writing 5 resets the peak RSS (VmHWM) of the process to its RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return 0
    return (_status_kib("VmRSS") or 0) * 1024


def _peak_memory(device: torch.device, baseline: int) -> tuple[int, str]:
    """Peak memory of the training loop, in bytes, and what was measured."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    peak = _status_kib("VmHWM")
    if peak is not None and baseline:
        return peak * 1024 - baseline, "peak RSS during training above the RSS before it"
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024, "peak RSS of the process (imports and data included)"


def fit(
    config: FitConfig,
    out: str | Path,
    *,
    resume: bool = False,
    on_log: Callable[[dict], None] | None = None,
) -> Trained:
    """Train as ``config`` says, writing ``out/metrics.jsonl``, ``out/tb/`` (TensorBoard),
    ``out/checkpoint.pth.tar`` (latest), ``out/checkpoint_best_loss.pth.tar`` and
    ``out/summary.json``. With ``resume`` continue from ``out/checkpoint.pth.tar``.

    Raises ``ValueError`` for bad input (one line) and :class:`NonFiniteLoss` when the training
    loss or a validation stops being finite (the last good checkpoint stays).
    """
    out = Path(out)
    on_log = on_log or (lambda _: None)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(config.device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = distributed.rank()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    latest, best_path = out / "checkpoint.pth.tar", out / "checkpoint_best_loss.pth.tar"

    saved = None
    if resume:
        saved = checkpoint.load(latest)
        free = ("steps", "device")  # may change on resume
        mine = {k: v for k, v in config.to_dict().items() if k not in free}
        theirs = {k: v for k, v in saved.get("config", {}).items() if k not in free}
        if mine != theirs:
            differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            raise ValueError(
                f"--resume {out}: the checkpoint was trained with another configuration "
                f"({', '.join(differ)} differ); only --steps, --epochs and --device may change"
            )
        if saved.get("world_size", 1) != world:
            raise ValueError(
                f"--resume {out}: the run was trained by {saved.get('world_size', 1)} processes, "
                f"not {world}; resume it with as many"
            )
        if saved["step"] > config.steps:
            raise ValueError(
                f"--steps {config.steps}: the checkpoint in {out} is already at step {saved['step']}"
            )

    # Model, optimizers, rules: the same initial weights on every rank.
    torch.manual_seed(config.seed)
    model = build_model(config.model, quality=config.quality, N=config.N, M=config.M).to(device)
    named = list(model.named_parameters())
    optimizer = torch.optim.Adam(
        [p for n, p in named if not is_quantiles(n)], lr=config.learning_rate
    )
    aux_optimizer = torch.optim.Adam(
        [p for n, p in named if is_quantiles(n)], lr=config.aux_learning_rate
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min")
    trained = model
    if world > 1:
        # The quantiles get their gradient from the auxiliary loss, outside DDP's forward; that
        # loss depends on no data, so every rank computes the same gradient and DDP must not sync
        # them. find_unused_parameters: tensors that STDET embeds whole stop receiving gradients.
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, _ in named if is_quantiles(n)]
        )
        trained = DistributedDataParallel(model, find_unused_parameters=True)
    sma = SMA(model, k=config.sma.k, beta=config.sma.beta, feedback=config.sma.feedback) if (
        config.sma
    ) else None  # fmt: skip
    stdet = STDET(trained, optimizer, config.stdet, sma=sma) if config.stdet else None
    criterion = rate_distortion_loss(config.lmbda, config.metric)

    # Data: crops as a function of (seed, epoch, index); each rank its share of every epoch.
    train_images, test_images = load_split(config.data, config.patch_size)
    per_epoch = batches_per_epoch(len(train_images), config.batch_size, world)
    repeats = max(1, math.ceil(config.batch_size * world / len(train_images)))
    train_set = PatchDataset(
        [image for _, image in train_images], config.patch_size, train=True, seed=config.seed,
        repeats=repeats,
    )  # fmt: skip
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=True
    )
    # Validation on centre crops of the patch size, as CompressAI's train.py; images too small to
    # be padded to it are evaluated only by ``lic-train eval`` (whole images).
    crops = [image for _, image in test_images if fits(image.shape, config.patch_size)]
    if not crops:
        raise ValueError(
            f"--patch-size {config.patch_size}: every test image is too small to validate on "
            "patches of this size"
        )
    test_set = PatchDataset(crops, config.patch_size, train=False)
    test = torch.stack([test_set[i] for i in range(len(test_set))]).to(device)
    test_batches = list(test.split(config.batch_size))

    start, wall, train_time, best_loss = 0, 0.0, 0.0, math.inf
    evaluated_readout = "sma" if sma is not None else "raw"  # selects the best checkpoint
    final: dict[str, dict[str, float]] = {}  # the last validation of each readout
    best: dict[str, float] = {}  # the lowest validation loss of each readout
    if saved is not None:
        checkpoint.check_architecture(saved["state_dict"], model, latest)
        model.load_state_dict(saved["state_dict"])
        if stdet is not None:
            stdet.load_state_dict(saved["stdet"])  # before the optimizer: its groups shrink
        optimizer.load_state_dict(saved["optimizer"])
        aux_optimizer.load_state_dict(saved["aux_optimizer"])
        scheduler.load_state_dict(saved["lr_scheduler"])
        if sma is not None:
            sma.load_state_dict(saved["sma"])
        start, wall, best_loss = saved["step"], saved["wall_time"], saved["best_loss"]
        train_time = saved["train_time"]
        final, best = saved["final"], saved.get("best", {})
        _set_random_states(saved["random_states"][rank])
    else:
        torch.manual_seed(config.seed + 1 + rank)  # the training noise differs between ranks

    metrics_path = out / "metrics.jsonl"
    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        records = checkpoint.read_jsonl(metrics_path) if saved is not None else []
        checkpoint.write_jsonl([r for r in records if r["step"] <= start], metrics_path)
        from torch.utils.tensorboard import SummaryWriter

        # The records of the checkpoint's own step were written before it: keep them.
        writer = SummaryWriter(out / "tb", purge_step=start + 1 if saved is not None else None)

    def log(record: dict) -> None:
        on_log(record)
        if rank != 0:
            return
        with metrics_path.open("a") as file:
            file.write(json.dumps(record, allow_nan=False) + "\n")
        prefix = record.get("split", "train")
        readout = record.get("readout")
        for key, value in record.items():
            if isinstance(value, float):
                tag = f"{prefix}/{readout}/{key}" if readout else f"{prefix}/{key}"
                writer.add_scalar(tag, value, record["step"])

    def readouts() -> dict[str, nn.Module]:
        models = {"raw": model}
        if sma is not None:  # before its first sample the average is the raw weights
            models["sma"] = sma.averaged_copy(model) if sma.ready else model
        return models

    def save_checkpoint(step: int, loss: float, path: Path) -> None:
        states = _gather(_random_states(device))
        if rank != 0:
            return
        checkpoint.save(
            {
                "epoch": step // per_epoch,
                "state_dict": model.state_dict(),
                "loss": loss,
                "optimizer": optimizer.state_dict(),
                "aux_optimizer": aux_optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(),
                "step": step,
                "wall_time": wall,
                "train_time": train_time,
                "best_loss": best_loss,
                "final": final,
                "best": best,
                "world_size": world,
                "random_states": states,
                "sma": None if sma is None else sma.state_dict(),
                "stdet": None if stdet is None else stdet.state_dict(),
                "config": config.to_dict(),
                "model": describe(model),
            },
            path,
        )

    memory_baseline = _reset_peak_memory(device)
    indices: list[int] = []
    epoch = -1
    tick = time.perf_counter()
    for step in range(start, config.steps):
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            indices = list(sampler)
        position = step % per_epoch
        chunk = indices[position * config.batch_size : (position + 1) * config.batch_size]
        x = torch.stack([train_set[i] for i in chunk]).to(device)

        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        aux_optimizer.zero_grad(set_to_none=True)
        losses = criterion(trained(x), x)
        losses["loss"].backward()
        if stdet is not None:
            stdet.after_backward()
        if config.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_max_norm)
        optimizer.step()
        if sma is not None:
            sma.step()
        if stdet is not None:
            stdet.after_step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - began

        loss, aux = losses["loss"].item(), aux_loss.item()
        if not (math.isfinite(loss) and math.isfinite(aux)):
            raise NonFiniteLoss(
                f"step {step + 1}: the loss is {loss} (aux loss {aux}); stopped. The last good "
                f"checkpoint is {latest if latest.exists() else 'not written yet'}"
            )
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            now = time.perf_counter()
            wall += now - tick
            tick = now
            log(
                {
                    "step": done,
                    "epoch": epoch,
                    "loss": loss,
                    "bpp": losses["bpp_loss"].item(),
                    config.metric: losses[distortion_key(config.metric)].item(),
                    **(
                        {"psnr": -10 * math.log10(max(losses["mse_loss"].item(), 1e-12))}
                        if config.metric == "mse"
                        else {}
                    ),
                    "aux_loss": aux,
                    "lr": optimizer.param_groups[0]["lr"],
                    "trainable": 1.0 if stdet is None else stdet.trainable_fraction(),
                    "wall_time": wall,
                }
            )
        if done % config.validate_every == 0 or done == config.steps:
            for name, readout in readouts().items():
                result = validate(readout, test_batches, config.lmbda, config.metric)
                if not all(math.isfinite(v) for v in result.values()):
                    raise NonFiniteLoss(
                        f"step {done}: the validation of the {name} weights is not finite "
                        f"({result}); stopped. The last good checkpoint is "
                        f"{latest if latest.exists() else 'not written yet'}"
                    )
                final[name] = result
                best[name] = min(best.get(name, math.inf), result["loss"])
                log({"step": done, "split": "val", "readout": name, **result})
            evaluated = final[evaluated_readout]
            if config.lr_schedule == "plateau":
                scheduler.step(final["raw"]["loss"])
            now = time.perf_counter()
            wall += now - tick
            tick = now
            every = config.checkpoint_every or config.validate_every
            if done % every == 0 or done == config.steps:
                improved = evaluated["loss"] < best_loss
                best_loss = min(best_loss, evaluated["loss"])
                # Best first: a crash between the two writes leaves a best file at least as good
                # as the latest one says, never an older one.
                if improved:
                    save_checkpoint(done, evaluated["loss"], best_path)
                save_checkpoint(done, evaluated["loss"], latest)
            tick = time.perf_counter()

    peak, kind = _peak_memory(device, memory_baseline)
    summary = Summary(
        steps=config.steps,
        wall_time=wall,
        seconds_per_step=wall / config.steps,
        train_seconds_per_step=train_time / config.steps,
        final=final,
        best=best,
        evaluated_readout=evaluated_readout,
        trainable_fraction=1.0 if stdet is None else stdet.trainable_fraction(),
        peak_memory_bytes=peak,
        memory_kind=kind,
        parameters=sum(p.numel() for p in model.parameters()),
        out=str(out),
    )
    if rank == 0:
        writer.close()
        checkpoint.write_json(asdict(summary), out / "summary.json")
    return Trained(summary, model, sma, stdet)


def batches_per_epoch(train_images: int, batch_size: int, world: int = 1) -> int:
    """Steps in one epoch: the training images are repeated until one epoch holds at least one
    global batch, and each rank takes ``len // world`` of them (DistributedSampler, drop_last)."""
    repeats = max(1, math.ceil(batch_size * world / train_images))
    return (train_images * repeats // world) // batch_size


def steps_for_epochs(config: FitConfig, epochs: int) -> int:
    """``epochs`` passes over the training images of ``config.data``, in optimizer steps."""
    epochs = _checks.integer("epochs", epochs, minimum=1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    train_images, _ = load_split(config.data, config.patch_size)
    return epochs * batches_per_epoch(len(train_images), config.batch_size, world)


def load_trained(target: str | Path, *, weights: str | None = None) -> tuple[str, nn.Module]:
    """The model of a run folder (its best checkpoint, else its latest) or of a checkpoint file,
    with the SMA average (``weights="sma"``, the default when the run has one) or the raw weights.
    Returns a name for reports (``ARCH-WEIGHTS``) and the model on the CPU."""
    target = Path(target)
    if target.is_dir():
        best = target / "checkpoint_best_loss.pth.tar"
        target = best if best.exists() else target / "checkpoint.pth.tar"
    saved = checkpoint.load(target)
    if "config" not in saved:
        raise ValueError(f"checkpoint {target}: not written by lic-train fit (no 'config' key)")
    config = FitConfig.from_dict(saved["config"])
    model = build_model(config.model, quality=config.quality, N=config.N, M=config.M)
    checkpoint.check_architecture(saved["state_dict"], model, target)
    model.load_state_dict(saved["state_dict"])
    has_average = bool(saved.get("sma") and saved["sma"]["samples"])
    weights = weights or ("sma" if has_average else "raw")
    if weights == "sma":
        if not has_average:
            raise ValueError(f"--weights sma: {target} holds no SMA average (train with --sma)")
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in saved["sma"]["average"].items():
                named[name].copy_(value)
    elif weights != "raw":
        raise ValueError(f"--weights must be sma or raw, got {weights!r}")
    return f"{config.model}-{weights}", model
