"""The training state: what a checkpoint holds and restores, in one place.

:meth:`TrainingState.to_dict` writes CompressAI's ``examples/train.py`` keys (``epoch``,
``state_dict``, ``loss``, ``optimizer``, ``aux_optimizer``, ``lr_scheduler``), so that CompressAI's
``update_model``/``eval_model`` read our checkpoints, then this trainer's: the step and timers, the
validation history, every random state of every rank, each rule's state under its name in the
chain (``sma``, ``stdet``; None when the run has no such rule), the configuration and the
architecture. :meth:`TrainingState.load` reads back exactly those keys.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lic_train.rules import Chain
from lic_train.trainer.config import FitConfig
from lic_train.trainer.models import describe

RULE_KEYS = ("sma", "stdet")  # always present in a checkpoint (None: the run has no such rule)
# Checkpoint key (CompressAI's examples/train.py names) -> the attribute saved by its state_dict.
OPTIMIZERS = (
    ("optimizer", "optimizer"),
    ("aux_optimizer", "aux_optimizer"),
    ("lr_scheduler", "scheduler"),
)
# The counters, saved and restored under their own names.
COUNTERS = ("step", "wall_time", "train_time", "best_loss", "final", "best")


def random_states(device: torch.device) -> dict:
    """Every random state this process draws from (torch, CUDA, numpy's legacy global, random)."""
    return {
        "torch": torch.get_rng_state(),
        # Only a CUDA run touches CUDA: a CPU run on a GPU machine must not initialise it.
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        # Libraries may draw from numpy's legacy global state; saved so that resume is exact.
        "numpy": np.random.get_state(),  # noqa: NPY002
        "random": random.getstate(),
    }


def set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    random.setstate(states["random"])


@dataclass
class TrainingState:
    """The objects a run trains and its counters.

    Attributes:
        model: the (unwrapped) model; optimizer, aux_optimizer, scheduler: as CompressAI's.
        rules: the update rules, in their order of operations.
        step: optimizer steps done. wall_time: seconds of the run so far (checkpoint writes
            excluded); train_time: seconds of the training steps alone.
        best_loss: the lowest validation loss of the evaluated readout at a checkpoint.
        final: the last validation of each readout; best: the lowest validation loss of each.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    aux_optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    rules: Chain
    step: int = 0
    wall_time: float = 0.0
    train_time: float = 0.0
    best_loss: float = math.inf
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)

    def to_dict(
        self, *, config: FitConfig, epoch: int, loss: float, world: int, random_states: list
    ) -> dict:
        """The checkpoint of this state (``random_states``: one entry per rank)."""
        return {
            "epoch": epoch,
            "state_dict": self.model.state_dict(),
            **{key: getattr(self, name).state_dict() for key, name in OPTIMIZERS},
            "loss": loss,
            **{name: getattr(self, name) for name in COUNTERS},
            "world_size": world,
            "random_states": random_states,
            **dict.fromkeys(RULE_KEYS),
            **self.rules.state_dict(),
            "config": config.to_dict(),
            "model": describe(self.model),
        }

    def load(self, saved: dict, *, rank: int = 0) -> None:
        """Restore a checkpoint of :meth:`to_dict` (the model's architecture checked already).
        The rules are restored right after the model and before the optimizer: fully embedded
        tensors leave the optimizer's param groups first."""
        self.model.load_state_dict(saved["state_dict"])
        self.rules.load_state_dict({name: saved.get(name) for name in self.rules})
        for key, name in OPTIMIZERS:
            getattr(self, name).load_state_dict(saved[key])
        for name in COUNTERS:
            if name in saved:  # a checkpoint of an older version may lack the newest ("best")
                setattr(self, name, saved[name])
        set_random_states(saved["random_states"][rank])
