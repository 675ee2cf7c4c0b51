"""A run's configuration: everything a training run depends on, stored in every checkpoint so that
``--resume`` can refuse another configuration."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from lic_dynamics import validation
from lic_dynamics.validation import InvalidValue
from lic_train.rules import SMAConfig, STDETConfig

METRICS = ("mse", "ms-ssim")
LR_SCHEDULES = ("plateau", "multistep", "none")
DEVICES = ("auto", "cpu", "cuda")
# The per-step EMA of the weights (SMA with k = 1) that the seed paper's authors train with
# (torch_ema, decay 0.999): the strongest simple averaging baseline.
EMA_DECAY = 0.999
# The fields that may change when a run is resumed: its length, where it runs (the batches do not
# depend on the number of DataLoader workers) and the steps whose checkpoints it keeps.
RESUMABLE = ("steps", "device", "num_workers", "keep_checkpoints")
FLOAT32_MAX = 3.4028234663852886e38


def default_workers() -> int:
    """DataLoader workers when none are asked for: one per core this process may use beyond the
    one that trains, at most 4 (CompressAI's ``train.py`` default); 0 on a single core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(4, (cores or 1) - 1))


@dataclass(frozen=True)
class FitConfig:
    """Everything a run depends on; every field is validated on construction (an
    :class:`~lic_dynamics.validation.InvalidValue` names the field)."""

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
    lr_milestones: tuple[float, ...] = (0.9,)  # multistep: fractions of steps
    lr_gamma: float = 0.1  # multistep: the factor at each milestone
    warmup_steps: int = 0  # multistep and none: linear warm-up
    checkpoint: str | None = None  # the weights to start from (any CompressAI checkpoint)
    data: str | None = None
    test_data: str | None = None
    patch_size: tuple[int, int] = (256, 256)
    batch_size: int = 16
    test_batch_size: int = 64
    num_workers: int | None = None  # DataLoader workers; None: default_workers()
    steps: int = 1000
    validate_every: int = 100
    checkpoint_every: int | None = None  # steps; None: at every validation
    # Steps at which the run validates and keeps a copy of its checkpoint
    # (checkpoint_step{N}.pth.tar): the branch points of a budget sweep (loop.branch).
    keep_checkpoints: tuple[int, ...] = ()
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    sma: SMAConfig | None = None
    stdet: STDETConfig | None = None
    extra: dict = field(default_factory=dict)  # free-form labels (e.g. the compare preset)

    def __post_init__(self) -> None:
        # Finite in float32, the precision of the weights and of Adam's state.
        positive = {"low": 0, "high": FLOAT32_MAX, "low_open": True}
        for name in ("lmbda", "learning_rate", "aux_learning_rate"):
            value = validation.real(name, getattr(self, name), "(0, 3.4e38)", **positive)
            object.__setattr__(self, name, value)
        clip = validation.real(
            "clip_max_norm", self.clip_max_norm, "[0, inf) (0: no clipping)", low=0, high=math.inf,
            low_open=False,
        )  # fmt: skip
        object.__setattr__(self, "clip_max_norm", clip)
        for name, minimum in (
            ("batch_size", 1), ("test_batch_size", 1), ("steps", 1), ("validate_every", 1),
            ("log_every", 1), ("seed", 0), ("warmup_steps", 0),
        ):  # fmt: skip
            value = validation.integer(name, getattr(self, name), minimum=minimum)
            object.__setattr__(self, name, value)
        if self.checkpoint_every is not None:
            every = validation.integer("checkpoint_every", self.checkpoint_every, minimum=1)
            if every % self.validate_every:
                raise InvalidValue(
                    "checkpoint_every",
                    f"must be a multiple of validate_every ({self.validate_every}), got {every}",
                )
            object.__setattr__(self, "checkpoint_every", every)
        kept = self.keep_checkpoints
        if not isinstance(kept, tuple | list) or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in kept
        ) or list(kept) != sorted(set(kept)):  # fmt: skip
            raise InvalidValue(
                "keep_checkpoints", f"must be increasing steps >= 1, got {self.keep_checkpoints!r}"
            )
        object.__setattr__(self, "keep_checkpoints", tuple(kept))
        validation.choice("metric", self.metric, METRICS)
        validation.choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        self._check_schedule()
        if self.num_workers is not None:
            workers = validation.integer("num_workers", self.num_workers, minimum=0)
            object.__setattr__(self, "num_workers", workers)
        if self.device not in DEVICES:
            raise InvalidValue("device", f"must be auto, cpu or cuda, got {self.device!r}")
        patch = tuple(self.patch_size)
        if len(patch) != 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 64 or s % 64 for s in patch
        ):
            raise InvalidValue(
                "patch_size",
                "must be two integers, multiples of 64 (the models downsample by 64), "
                f"got {self.patch_size!r}",
            )
        object.__setattr__(self, "patch_size", patch)
        if self.metric == "ms-ssim" and min(patch) <= 160:
            raise InvalidValue(
                "patch_size",
                f"must exceed 160 on both sides for --metric ms-ssim (MS-SSIM's five scales need "
                f"it), got {patch}",
            )
        from lic_train.trainer.models import model_spec, quality_range  # imports CompressAI

        if self.quality is None and self.N is None and self.M is None:
            if quality_range(self.model) is not None:  # a zoo model with qualities
                object.__setattr__(self, "quality", 3)  # as CompressAI's train.py
        # The model's own checks (name, quality, N and M), without building it.
        model_spec(self.model, quality=self.quality, N=self.N, M=self.M)

    def _check_schedule(self) -> None:
        gamma = validation.real("lr_gamma", self.lr_gamma, "(0, 1]", low=0, high=1, high_open=False)
        object.__setattr__(self, "lr_gamma", gamma)
        milestones = tuple(
            validation.real("lr_milestones", m, "(0, 1) (fractions of the steps)", low=0, high=1)
            for m in (self.lr_milestones if isinstance(self.lr_milestones, tuple | list) else [])
        )
        if not isinstance(self.lr_milestones, tuple | list) or list(milestones) != sorted(
            set(milestones)
        ):
            raise InvalidValue(
                "lr_milestones",
                f"must be increasing fractions in (0, 1), got {self.lr_milestones!r}",
            )
        object.__setattr__(self, "lr_milestones", milestones)
        if self.lr_schedule == "plateau" and self.keep_checkpoints:
            raise InvalidValue(
                "keep_checkpoints",
                "must be empty with the plateau schedule (a kept checkpoint's extra validation "
                "would step it; budget sweeps train with multistep or none)",
            )
        if self.lr_schedule == "plateau" and self.warmup_steps:
            raise InvalidValue(
                "warmup_steps",
                f"must be 0 with the plateau schedule (warm up with multistep or none), got "
                f"{self.warmup_steps}",
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict) -> FitConfig:
        """The configuration :meth:`to_dict` wrote; ``ValueError`` naming a field this version
        does not know or one it needs (a checkpoint of another version)."""
        data = dict(data)
        unknown = sorted(set(data) - set(FitConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown configuration field {unknown[0]!r} (another lic-train version?)"
            )
        data.setdefault("keep_checkpoints", ())  # runs of earlier versions kept none
        missing = sorted(set(FitConfig.__dataclass_fields__) - set(data))
        if missing:  # a default would silently stand in for what the run really used
            raise ValueError(
                f"configuration field {missing[0]!r} missing (another lic-train version?)"
            )
        data["patch_size"] = tuple(data["patch_size"])
        for name in ("lr_milestones", "keep_checkpoints"):
            if name in data:
                data[name] = tuple(data[name])
        data["sma"] = SMAConfig(**data["sma"]) if data.get("sma") else None
        data["stdet"] = STDETConfig(**data["stdet"]) if data.get("stdet") else None
        return FitConfig(**data)

    def differences(self, other: dict) -> list[str]:
        """The fields, other than :data:`RESUMABLE`, in which ``other`` (a saved configuration,
        as :meth:`to_dict` writes it) differs from this one; sorted."""
        mine = {k: v for k, v in self.to_dict().items() if k not in RESUMABLE}
        theirs = {k: v for k, v in other.items() if k not in RESUMABLE}
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
