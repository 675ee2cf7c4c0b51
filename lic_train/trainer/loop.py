"""The training loop: :func:`fit` runs :func:`~lic_train.trainer.step.train_step` for a run's
steps, validates, checkpoints and summarises; resumable bit for bit.

Every ``validate_every`` steps both readouts (raw weights, and the SMA average when SMA is on) are
validated on centre crops of the test images (estimated rate, ``eval()`` mode) and
``ReduceLROnPlateau`` steps on the raw validation loss; every ``checkpoint_every`` steps (default:
at every validation) and at the end a checkpoint is written atomically (latest, and best by the
loss of the evaluated readout: the SMA average when SMA is on).

Determinism: crops are a function of (seed, epoch, index) (:class:`lic_train.trainer.data.TrainBatches`),
and the checkpoint holds every random state of every rank (:mod:`lic_train.trainer.state`), so a
resumed run continues exactly where the checkpoint left it: on the CPU its final weights equal an
uninterrupted run's bit for bit.

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in ``DistributedDataParallel`` (NCCL on
GPUs, gloo on the CPU), each rank reads its share of every epoch, and rank 0 writes metrics and
checkpoints. The library never prints: progress goes to ``on_log``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from compressai.optimizers import net_aux_optimizer
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lic_dynamics import files, validation
from lic_dynamics.validation import InvalidValue
from lic_train.rules import SMA, STDET, build_rules, distributed
from lic_train.rules.distributed import gather, world_size
from lic_train.rules.parameters import is_quantiles
from lic_train.trainer import checkpoint
from lic_train.trainer.config import FitConfig, default_workers
from lic_train.trainer.data import (
    Images,
    TrainBatches,
    batches_per_epoch,
    find_images,
    report_skipped,
    training_images,
    validation_images,
    validation_loader,
)
from lic_train.trainer.memory import peak_memory, reset_peak_memory
from lic_train.trainer.models import build_model, current_names
from lic_train.trainer.schedules import (
    PER_STEP,
    build_scheduler,
    restart_rate,
    same_schedule_until,
)
from lic_train.trainer.state import TrainingState, random_states
from lic_train.trainer.step import distortion_key, rate_distortion_loss, train_step, validate

LATEST, BEST = checkpoint.LATEST, checkpoint.BEST


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite at optimizer step ``step``; the run stopped and its last
    good checkpoint is kept."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


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
    # STDET's health (STDET.health): the last record, and the worst (largest) value of each number
    # over the run; empty without STDET or before its fit.
    stdet_health: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Trained:
    """What :func:`fit` returns: the summary and the trained objects (on this rank)."""

    summary: Summary
    model: nn.Module
    sma: SMA | None
    stdet: STDET | None


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; ``cuda``: this rank's GPU (``LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InvalidValue("device", "cuda: no CUDA device is available (use cpu or auto)")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def steps_for_epochs(config: FitConfig, epochs: int) -> int:
    """``epochs`` passes over the training images of ``config.data``, in optimizer steps."""
    epochs = validation.integer("epochs", epochs, minimum=1)
    train_images, _ = find_images(config.data, config.test_data)
    count = len(training_images(train_images, config.patch_size, warn=False))
    per_epoch = batches_per_epoch(count, config.batch_size, world_size())
    return (
        validation.integer("epochs", epochs, minimum=1, maximum=validation.MAX_INTEGER // per_epoch)
        * per_epoch
    )


def resumable(out: Path) -> bool:
    """Whether ``out`` holds a checkpoint that ``--resume`` could continue from."""
    return (out / LATEST).exists() or (out / BEST).exists()


def resume_point(out: Path) -> tuple[Path, dict]:
    """The checkpoint a resumed run continues from: the latest, or the best one when that is
    further on (a write of the latest failed after the best was written, say on a full disk),
    and its content. A damaged one is refused with a warning when the other is intact;
    ``InvalidValue`` about ``resume`` when the run has none, or none intact."""
    found, damaged = [], []
    for path in (out / LATEST, out / BEST):
        if path.exists():
            try:
                found.append((path, checkpoint.load(path, parameter="resume")))
            except ValueError as error:
                damaged.append(error)
    if damaged and not found:
        raise damaged[0]
    for error in damaged:
        warnings.warn(f"{error}; resuming from {found[0][0].name}", stacklevel=2)
    if not found:
        raise InvalidValue(
            "resume",
            f"{out} holds no checkpoint ({LATEST} or {BEST}): not a run folder, or a run that "
            "stopped before its first checkpoint",
        )
    for path, saved in found:
        if not checkpoint.is_ours(saved):
            raise InvalidValue(
                "resume",
                f"{path} was not written by lic-train fit; to train from its weights, pass it "
                "with --checkpoint",
            )
    return max(found, key=lambda pair: pair[1]["step"])


def check_resume(config: FitConfig, out: Path, saved: dict | None = None) -> dict:
    """The checkpoint of the run in ``out`` to continue (``saved``, else :func:`resume_point`'s),
    if ``config`` may continue it: the same configuration but for
    :data:`~lic_train.trainer.config.RESUMABLE` fields, as many processes, not past
    ``config.steps``, and, for a multistep schedule, a length whose rate so far is the same
    (:func:`~lic_train.trainer.schedules.same_schedule_until`)."""
    if saved is None:
        _, saved = resume_point(out)
    differ = config.differences(saved["config"])
    if differ:
        raise InvalidValue(
            "resume",
            f"{out}: the checkpoint was trained with another configuration "
            f"({', '.join(differ)} differ); only its steps, device and workers may change",
        )
    if saved.get("world_size", 1) != world_size():
        raise InvalidValue(
            "resume",
            f"{out}: the run was trained by {saved.get('world_size', 1)} processes, not "
            f"{world_size()}; resume it with as many",
        )
    if config.lr_schedule == "multistep" and not same_schedule_until(
        saved["step"], steps=saved["config"]["steps"], other_steps=config.steps,
        milestones=config.lr_milestones,
    ):  # fmt: skip
        raise InvalidValue(
            "steps",
            f"{config.steps}: the multistep milestones of the run in {out} are fractions of its "
            f"{saved['config']['steps']} steps, and at step {saved['step']} another length would "
            "have decayed its rate at other steps; resume it with its own length",
        )
    if saved["step"] > config.steps:
        raise InvalidValue(
            "steps", f"{config.steps}: the checkpoint in {out} is already at step {saved['step']}"
        )
    return saved


def check_out(out: str | Path, parameter: str = "out") -> None:
    """Check, before any expensive work, that ``out`` is or can become a folder this process can
    write (:func:`lic_dynamics.files.check_folder`; ``InvalidValue`` about ``parameter``), and
    remove the temporary files a killed run left in it
    (:func:`lic_dynamics.files.remove_stale_temporaries`)."""
    files.check_folder(out, parameter)
    if Path(out).is_dir():
        files.remove_stale_temporaries(out)


def check_workers(workers: int | None) -> None:
    """``InvalidValue`` about ``num_workers`` beyond 8 per CPU core (at least 64): each is a
    process; a million would not start (the limit is this machine's, so it is checked here and
    not in the configuration, which a resume on another machine reads)."""
    limit = max(64, 8 * (os.cpu_count() or 1))
    if workers is not None and workers > limit:
        raise InvalidValue(
            "num_workers", f"must be at most {limit} here (8 per CPU core), got {workers}"
        )


def check_space(out: Path, state: TrainingState, parameter: str = "out") -> None:
    """``InvalidValue`` about ``parameter`` (the flag that named ``out``) when its disk has no
    room for one more checkpoint (the weights, Adam's two moments and, with SMA, the average: a
    lower bound of its size)."""
    weights = sum(t.numel() * t.element_size() for t in state.model.state_dict().values())
    needed = weights * (4 if "sma" in state.rules else 3)
    free = shutil.disk_usage(files.nearest_existing(out)).free
    if free < needed:
        raise InvalidValue(
            parameter,
            f"{out}: {free / 2**20:.1f} MiB free on its disk, and a checkpoint of this model "
            f"needs about {needed / 2**20:.1f} MiB",
        )


def build(
    config: FitConfig,
    device: torch.device,
    *,
    initial_weights: bool | dict[str, torch.Tensor] = True,
) -> tuple[TrainingState, nn.Module]:
    """A fresh training state (the same initial weights on every rank) and the module to train
    through (``DistributedDataParallel`` under ``torchrun``, else the model itself).
    ``initial_weights``: True to start from ``config.checkpoint`` (if any), the weights already
    read from it (:func:`initial_state_dict`), or False for a fresh initialisation."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, quality=config.quality, N=config.N, M=config.M)
    if initial_weights is True and config.checkpoint is not None:
        initial_weights = initial_state_dict(config.checkpoint)
    if isinstance(initial_weights, dict):
        load_initial_weights(model, initial_weights, config.checkpoint or "initial weights")
    model.to(device)
    named = list(model.named_parameters())
    # CompressAI's own split and order (parameters sorted by name), so that optimizer states
    # move between the two trainers.
    optimizers = net_aux_optimizer(model, {
        "net": {"type": "Adam", "lr": config.learning_rate},
        "aux": {"type": "Adam", "lr": config.aux_learning_rate},
    })  # fmt: skip
    optimizer, aux_optimizer = optimizers["net"], optimizers["aux"]
    trained = model
    if world_size() > 1:
        # The quantiles get their gradient from the auxiliary loss, outside DDP's forward; that
        # loss depends on no data, so every rank computes the same gradient and DDP must not sync
        # them. find_unused_parameters: tensors that STDET embeds whole stop receiving gradients.
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [n for n, _ in named if is_quantiles(n)]
        )
        trained = DistributedDataParallel(model, find_unused_parameters=config.stdet is not None)
    state = TrainingState(
        model=model,
        optimizer=optimizer,
        aux_optimizer=aux_optimizer,
        scheduler=build_scheduler(
            optimizer,
            schedule=config.lr_schedule,
            steps=config.steps,
            milestones=config.lr_milestones,
            gamma=config.lr_gamma,
            warmup=config.warmup_steps,
        ),
        rules=build_rules(trained, optimizer, sma=config.sma, stdet=config.stdet),
    )
    return state, trained


def initial_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The weights of any CompressAI checkpoint (``--checkpoint``): ours (the weights it
    recommends), one of CompressAI's ``train.py``, or a bare state dict. Errors are about the
    parameter ``checkpoint``."""
    return checkpoint.weights_of(checkpoint.load(path), path)


def load_initial_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str) -> None:
    """Start ``model`` from ``state_dict`` (read from ``path``), as CompressAI users fine-tune;
    the optimizers start afresh."""
    state_dict = current_names(state_dict, model)
    checkpoint.check_architecture(state_dict, model, path)
    model.load_state_dict(state_dict)


class MetricsLog:
    """``out/metrics.jsonl`` and TensorBoard (``out/tb``), written by rank 0; every record also
    goes to ``on_log``. On resume the records after the checkpoint's step are cut away."""

    def __init__(self, out: Path, start: int, resumed: bool, on_log: Callable[[dict], None]):
        self.path, self.on_log, self.writer = out / "metrics.jsonl", on_log, None
        if distributed.rank() != 0:
            return
        out.mkdir(parents=True, exist_ok=True)
        records = files.read_jsonl(self.path) if resumed else []
        files.write_jsonl([r for r in records if r["step"] <= start], self.path)
        from torch.utils.tensorboard import SummaryWriter

        # The records of the checkpoint's own step were written before it: keep them.
        self.writer = SummaryWriter(out / "tb", purge_step=start + 1 if resumed else None)

    def write(self, record: dict) -> None:
        self.on_log(record)
        if self.writer is None:
            return
        files.append_text(json.dumps(record, allow_nan=False) + "\n", self.path)
        prefix, readout = record.get("split", "train"), record.get("readout")
        for key, value in record.items():
            if isinstance(value, float):
                tag = f"{prefix}/{readout}/{key}" if readout else f"{prefix}/{key}"
                self.writer.add_scalar(tag, value, record["step"])

    def configuration(self, config: FitConfig) -> None:
        """The run's configuration, as TensorBoard text (a JSON block)."""
        if self.writer is not None:
            text = json.dumps(config.to_dict(), indent=2, allow_nan=False)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "))

    @torch.no_grad()
    def reconstruction(self, readout: str, model: nn.Module, image: torch.Tensor, step: int):
        """The ``readout``'s reconstruction of ``image`` (1, C, H, W), in TensorBoard."""
        if self.writer is None:
            return
        was_training = model.training
        model.eval()
        x_hat = model(image)["x_hat"].clamp(0, 1)
        model.train(was_training)
        self.writer.add_image(f"val/{readout}/reconstruction", x_hat[0].cpu(), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def readouts(state: TrainingState) -> dict[str, nn.Module]:
    """The weights to validate: the raw ones, and the SMA average when SMA runs (before its first
    sample the average is the raw weights)."""
    sma = state.rules.get("sma")
    models = {"raw": state.model}
    if sma is not None:
        models["sma"] = sma.averaged_copy(state.model) if sma.ready else state.model
    return models


def evaluated_readout(state: TrainingState) -> str:
    """The readout the best checkpoint follows and the summary reports: the SMA average if any."""
    return "sma" if "sma" in state.rules else "raw"


def trainable_fraction(state: TrainingState) -> float:
    stdet = state.rules.get("stdet")
    return 1.0 if stdet is None else stdet.trainable_fraction()


def fit(
    config: FitConfig,
    out: str | Path,
    *,
    resume: bool | dict = False,
    on_log: Callable[[dict], None] | None = None,
) -> Trained:
    """Train as ``config`` says, writing ``out/metrics.jsonl``, ``out/tb/`` (TensorBoard),
    ``out/checkpoint.pth.tar`` (latest), ``out/checkpoint_best_loss.pth.tar`` and
    ``out/summary.json``. With ``resume`` continue the run in ``out`` from its checkpoint
    (:func:`resume_point`; pass the checkpoint itself when it was read already).

    Raises ``ValueError`` for bad input (one line), also when another process writes in ``out``
    (:class:`lic_dynamics.files.FolderLock`, held from the first write to the end), and
    :class:`NonFiniteLoss` when the training loss or a validation stops being finite (the last
    good checkpoint stays).
    """
    out, device = Path(out), resolve_device(config.device)
    rank = start_processes(device)
    saved, train, test = checked_inputs(config, out, resume, rank)
    # A resumed run takes its weights from its checkpoint, not from --checkpoint again.
    initial = saved is None and config.checkpoint is not None
    state, trained = build(
        config, device, initial_weights=initial_state_dict(config.checkpoint) if initial else False
    )
    if rank == 0:
        check_space(out, state, "resume" if saved is not None else "out")
    # One writer per run folder: taken once the inputs are checked, before anything is written
    # (rank 0 writes for all ranks).
    lock = files.FolderLock(out, "resume" if resume else "out") if rank == 0 else nullcontext()
    with lock:
        created = rank == 0 and lock.created
        return _train(state, trained, config, out, saved, (train, test), on_log, device, rank,
                      created=created)  # fmt: skip


def _train(
    state: TrainingState,
    trained: nn.Module,
    config: FitConfig,
    out: Path,
    saved: dict | None,
    images: tuple[Images, Images],
    on_log: Callable[[dict], None] | None,
    device: torch.device,
    rank: int,
    *,
    created: bool,
) -> Trained:
    """:func:`fit` once its inputs are checked, its model built and its folder locked
    (``created``: by this run): the data, the steps, the summary."""
    train, test = images
    batches, test = load_data(config, train, test, device, rank)
    if saved is not None:
        restore(state, saved, config, out, batches, device, rank)
    else:
        torch.manual_seed(config.seed + 1 + rank)  # the training noise differs between ranks

    log, training_batches = None, None
    try:
        log = MetricsLog(out, state.step, saved is not None, on_log or (lambda _: None))
        log.configuration(config)
        memory_baseline = reset_peak_memory(device)
        since = time.perf_counter()
        training_batches = batches.from_step(state.step)
        train_steps(state, trained, config, batches, training_batches, test, log, out, device,
                    resumed=saved is not None, since=since)  # fmt: skip
    except BaseException as error:
        # A new run stopped before it has a checkpoint cannot be resumed: its log and TensorBoard
        # files would only be strays. A diverged run keeps them: they show how it diverged.
        if created and not isinstance(error, NonFiniteLoss) and not resumable(out):
            if log is not None:
                log.close()
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:  # also when stopped by a non-finite loss or an interrupt
        if training_batches is not None:
            training_batches.close()  # stops the DataLoader's workers
        if log is not None:
            log.close()  # flushes TensorBoard

    summary = summarise(state, config, out, *peak_memory(device, memory_baseline))
    if rank == 0:
        files.write_json(asdict(summary), out / "summary.json")
    return Trained(summary, state.model, state.rules.get("sma"), state.rules.get("stdet"))


def restore(
    state: TrainingState,
    saved: dict,
    config: FitConfig,
    out: Path,
    batches: TrainBatches,
    device: torch.device,
    rank: int,
) -> None:
    """Continue from the checkpoint ``saved``: its weights, optimizers, rules and random states."""
    checkpoint.check_architecture(saved["state_dict"], state.model, out, parameter="resume")
    state.load(saved, rank=rank)
    if config.lr_schedule in PER_STEP:
        restart_rate(state.scheduler)
    if state.step == config.steps:
        # No step is left to write the latest checkpoint, and it may lag: killed between the
        # last step's best and latest writes, the run resumed from the best. Rewrite it.
        save_checkpoints(state, config, out, batches.per_epoch, device)


def train_steps(
    state: TrainingState,
    trained: nn.Module,
    config: FitConfig,
    batches: TrainBatches,
    training_batches: Iterator[torch.Tensor],
    test: Validation,
    log: MetricsLog,
    out: Path,
    device: torch.device,
    *,
    resumed: bool,
    since: float,
) -> None:
    """The steps from ``state.step`` to ``config.steps``, reading ``training_batches`` (from
    ``batches.from_step(state.step)``): each a :func:`train_step`, then the training record every
    ``log_every`` steps, validation and checkpoints on their schedule, and STDET's health at each of
    its events and with each validation. The run's wall time counts from ``since``
    (``time.perf_counter()``), checkpoint writes left out."""
    criterion = rate_distortion_loss(config.lmbda, config.metric)
    per_step_schedule = config.lr_schedule in PER_STEP
    stdet = state.rules.get("stdet")
    # On resume the health of the checkpoint's step is in the log already.
    events_logged = stdet.events if stdet is not None and resumed else None
    tick = since
    for step, batch in zip(range(state.step, config.steps), training_batches, strict=False):
        x = batch.to(device, non_blocking=True)
        began = time.perf_counter()
        losses, aux_loss = train_step(
            trained, x, criterion, state.optimizer, state.aux_optimizer, state.rules,
            clip_max_norm=config.clip_max_norm,
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        state.train_time += time.perf_counter() - began
        if per_step_schedule:
            state.scheduler.step()
        state.step = done = step + 1
        check_finite(done, losses["loss"].item(), aux_loss.item(), out)
        last = done == config.steps
        if done % config.log_every == 0 or last:
            now = time.perf_counter()
            state.wall_time, tick = state.wall_time + now - tick, now
            log.write(train_record(state, config, losses, aux_loss, batches.epoch_of(step)))
        keep = done in config.keep_checkpoints
        if done % config.validate_every == 0 or last or keep:
            validate_readouts(state, config, test, log, out)
            state.wall_time += time.perf_counter() - tick
            if done % (config.checkpoint_every or config.validate_every) == 0 or last or keep:
                save_checkpoints(state, config, out, batches.per_epoch, device, keep=keep)
            tick = time.perf_counter()  # checkpoint writes are not the run's time
            events_logged = None  # the health goes with every validation
        if stdet is not None and stdet.events != events_logged:
            # A step that made the weights non-finite shows in the next loss; JSON has null.
            health = {k: v if math.isfinite(v) else None for k, v in stdet.health().items()}
            if health:
                log.write({"step": done, "split": "stdet", "events": stdet.events, **health})
            events_logged = stdet.events


def checked_inputs(
    config: FitConfig, out: Path, resume: bool | dict, rank: int
) -> tuple[dict | None, Images, Images]:
    """Every check before the expensive work (the model built, an image decoded): the run folder,
    the workers, the checkpoint to resume from (read, if not given), the data (listed, test
    headers read). Returns that checkpoint (None for a new run) and the training and test images
    that fit the patch."""
    if rank == 0:
        check_out(out)
    check_workers(config.num_workers)
    saved = None
    if resume is not False:
        saved = check_resume(config, out, resume if isinstance(resume, dict) else None)
    train, test = find_images(config.data, config.test_data)
    test = validation_images(test, config.patch_size)
    return saved, training_images(train, config.patch_size), test


def start_processes(device: torch.device) -> int:
    """Join the process group under ``torchrun`` (NCCL on GPUs, gloo on the CPU); this rank."""
    if world_size() > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return distributed.rank()


@dataclass
class Validation:
    """The validation data: centre crops of the test images, read afresh at every validation,
    and the first test crop, whose reconstructions TensorBoard shows."""

    loader: torch.utils.data.DataLoader
    first: torch.Tensor  # (1, C, H, W), on the device
    device: torch.device
    reported: set[str]

    def batches(self):
        for batch in self.loader:
            report_skipped(batch.skipped, self.reported)
            yield batch.patch.to(self.device, non_blocking=True)


def load_data(
    config: FitConfig, train: Images, test: Images, device: torch.device, rank: int
) -> tuple[TrainBatches, Validation]:
    """This rank's training batches of ``train`` and the validation data of ``test`` (the images
    :func:`~lic_train.trainer.data.training_images` and
    :func:`~lic_train.trainer.data.validation_images` keep). Nothing is decoded but the first
    training item, read here so that a data set without one readable image fails at once."""
    workers = config.num_workers
    if workers is None:  # images already in memory (the built-in ones) need no decoding workers
        in_memory = all(isinstance(source, torch.Tensor) for source in train.sources)
        workers = 0 if in_memory else default_workers()
    pin = device.type == "cuda"
    batches = TrainBatches(
        train, config.patch_size, batch_size=config.batch_size, seed=config.seed,
        world=world_size(), rank=rank, num_workers=workers, pin_memory=pin,
    )  # fmt: skip
    report_skipped(batches.dataset[0].skipped, batches.reported)
    # Validation reads in this process: the training workers stay alive mid-epoch, and a second
    # set of worker processes would double the loader's memory for a small test set.
    loader = validation_loader(
        test, config.patch_size, batch_size=config.test_batch_size, pin_memory=pin
    )  # fmt: skip
    first = loader.dataset[0]
    reported: set[str] = set()
    report_skipped(first.skipped, reported)
    return batches, Validation(loader, first.patch[None].to(device), device, reported)


def check_finite(step: int, loss: float, aux: float, out: Path) -> None:
    if not (math.isfinite(loss) and math.isfinite(aux)):
        raise NonFiniteLoss(
            f"step {step}: the loss is {loss} (aux loss {aux}); stopped. The last good "
            f"checkpoint is {_last_good(out)}",
            step=step,
        )


def train_record(
    state: TrainingState, config: FitConfig, losses: dict, aux_loss: torch.Tensor, epoch: int
) -> dict:
    """The training record of the step just done (``metrics.jsonl``, TensorBoard, ``on_log``)."""
    psnr = {}
    if config.metric == "mse":
        psnr["psnr"] = -10 * math.log10(max(losses["mse_loss"].item(), 1e-12))
    return {
        "step": state.step,
        "epoch": epoch,
        "loss": losses["loss"].item(),
        "bpp": losses["bpp_loss"].item(),
        config.metric: losses[distortion_key(config.metric)].item(),
        **psnr,
        "aux_loss": aux_loss.item(),
        "lr": state.optimizer.param_groups[0]["lr"],
        "trainable": trainable_fraction(state),
        "wall_time": state.wall_time,
    }


def validate_readouts(
    state: TrainingState, config: FitConfig, test: Validation, log: MetricsLog, out: Path
) -> None:
    """Validate every readout, record its last and best loss, show its reconstruction of the
    first test crop, and step the plateau schedule on the raw weights' loss."""
    for name, readout in readouts(state).items():
        result = validate(readout, test.batches(), config.lmbda, config.metric)
        # Rank 0's numbers on every rank, so that every decision made from them (the best
        # checkpoint, the plateau schedule) is the same on all ranks.
        result = gather(result)[0]
        log.reconstruction(name, readout, test.first, state.step)
        if not all(math.isfinite(v) for v in result.values()):
            raise NonFiniteLoss(
                f"step {state.step}: the validation of the {name} weights is not finite "
                f"({result}); stopped. The last good checkpoint is {_last_good(out)}",
                step=state.step,
            )
        state.final[name] = result
        state.best[name] = min(state.best.get(name, math.inf), result["loss"])
        log.write({"step": state.step, "split": "val", "readout": name, **result})
    if config.lr_schedule == "plateau":
        state.scheduler.step(state.final["raw"]["loss"])


def save_checkpoints(
    state: TrainingState, config: FitConfig, out: Path, per_epoch: int, device: torch.device,
    *, keep: bool = False,
) -> None:  # fmt: skip
    """The latest checkpoint, and the best one first when the evaluated readout's loss improved
    on it: a crash between the two writes leaves a best file at least as good as the latest one
    says, never an older one. With ``keep`` also a copy that stays (:func:`kept_checkpoint`).
    Every rank's random state is gathered; rank 0 writes."""
    loss = state.final[evaluated_readout(state)]["loss"]
    improved = loss < state.best_loss
    state.best_loss = min(state.best_loss, loss)
    states = gather(random_states(device))
    kept = (kept_checkpoint(out, state.step),) if keep else ()
    for path in ((out / BEST,) if improved else ()) + kept + (out / LATEST,):
        if distributed.rank() == 0:
            checkpoint.save(
                # CompressAI's epoch: the last one finished (train.py continues at epoch + 1).
                state.to_dict(config=config, epoch=state.step // per_epoch - 1, loss=loss,
                              world=world_size(), random_states=states),
                path,
            )  # fmt: skip


def kept_checkpoint(out: str | Path, step: int) -> Path:
    """The checkpoint that the run in ``out`` keeps at ``step`` (``config.keep_checkpoints``)."""
    return Path(out) / f"checkpoint_step{step}.pth.tar"


def branch(run: str | Path, step: int, out: str | Path) -> None:
    """Start the run folder ``out`` as a copy of the run in ``run`` at ``step``: the checkpoint
    kept there (:func:`kept_checkpoint`) becomes ``out``'s latest, with the run's
    ``metrics.jsonl`` (the resume keeps its records up to ``step``). ``fit(config, out,
    resume=True)`` then continues it with ``config``'s length, as long as the learning rate so
    far is the same (:func:`check_resume`). This is how a budget sweep trains a model for every
    budget from one run (warmup-stable-decay: Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
    Beyond Fixed Training Durations"): the run at a constant rate is the trunk, and each budget
    branches off it where its own decay begins. ``InvalidValue`` about ``out`` when it is not
    empty; about ``run`` when it kept no checkpoint at ``step``."""
    run, out = Path(run), Path(out)
    source = kept_checkpoint(run, step)
    if not source.is_file():
        raise InvalidValue("run", f"{run} kept no checkpoint at step {step} ({source.name})")
    if out.exists() and any(out.iterdir()):
        raise InvalidValue("out", f"{out} is not empty; a branch starts a new run folder")
    out.mkdir(parents=True, exist_ok=True)
    # fit's resume cuts the log to the checkpoint's step.
    for name, target in ((source.name, LATEST), ("metrics.jsonl", "metrics.jsonl")):
        with (run / name).open("rb") as file:
            files.write_atomic(out / target, lambda copy, f=file: shutil.copyfileobj(f, copy))


def summarise(
    state: TrainingState, config: FitConfig, out: Path, peak: int, memory_kind: str
) -> Summary:
    return Summary(
        steps=config.steps,
        wall_time=state.wall_time,
        seconds_per_step=state.wall_time / config.steps,
        train_seconds_per_step=state.train_time / config.steps,
        final=state.final,
        best=state.best,
        evaluated_readout=evaluated_readout(state),
        trainable_fraction=trainable_fraction(state),
        peak_memory_bytes=peak,
        memory_kind=memory_kind,
        parameters=sum(p.numel() for p in state.model.parameters()),
        out=str(out),
        stdet_health=stdet_health(out) if "stdet" in state.rules else {},
    )


def stdet_health(out: Path) -> dict[str, dict[str, float]]:
    """The last STDET health record of the run in ``out`` (``metrics.jsonl``) and the largest
    value of each of its numbers over the run; empty when there is none (rank 0 only)."""
    path = out / "metrics.jsonl"
    records = (
        [r for r in files.read_jsonl(path) if r.get("split") == "stdet"] if path.exists() else []
    )
    if not records:
        return {}
    keys = [k for k in records[-1] if k not in ("step", "split", "events")]
    worst = {k: max((r[k] for r in records if r.get(k) is not None), default=None) for k in keys}
    return {"last": {k: records[-1][k] for k in keys}, "worst": worst}


def _last_good(out: Path) -> str:
    latest = out / LATEST
    return str(latest) if latest.exists() else "not written yet"
