"""The training state: what a checkpoint holds and restores, in one place.

:meth:`TrainingState.to_dict` writes CompressAI's ``examples/train.py`` keys, as CompressAI means
them, so that ``update_model``, ``eval_model`` and ``train.py --checkpoint`` take our checkpoints:

* ``state_dict``: the weights we recommend, i.e. those of the evaluated readout: the SMA average
  once SMA has sampled, else the raw weights. The raw weights, needed to resume, are then under
  ``raw_state_dict`` (the average's tensors are shared with the ``sma`` state, so ``torch.save``
  stores them once).
* ``optimizer``, ``aux_optimizer``: in the order of ``compressai.optimizers.net_aux_optimizer``
  (parameters sorted by name); a tensor that STDET took out of the optimizer is listed without
  state, so the layout is the same whatever STDET embedded.
* ``epoch``: the last epoch finished (0-based; -1 before the first), from which ``train.py``
  continues at ``epoch + 1``. ``loss``: the evaluated readout's validation loss. ``lr_scheduler``.

Then this trainer's keys: the step and timers, the validation history, every random state of every
rank, each rule's state under its name in the chain (``sma``, ``stdet``; None when the run has no
such rule), the configuration and the architecture. Everything is a tensor, a number, a string,
or a list, tuple or dict of those: the checkpoint loads with ``torch.load(weights_only=True)``.
:meth:`TrainingState.load` reads back exactly those keys.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lic_train.rules import Chain
from lic_train.rules.parameters import is_quantiles, unwrap
from lic_train.rules.stdet import optimizer as packing
from lic_train.trainer.config import FitConfig
from lic_train.trainer.models import describe

RULE_KEYS = ("sma", "stdet")  # always present in a checkpoint (None: the run has no such rule)
# The counters, saved and restored under their own names.
COUNTERS = ("step", "wall_time", "train_time", "best_loss", "final", "best")


def random_states(device: torch.device) -> dict:
    """Every random state this process draws from (torch, CUDA, numpy's legacy global, random)."""
    return {
        "torch": torch.get_rng_state(),
        # Only a CUDA run touches CUDA: a CPU run on a GPU machine must not initialise it. Only
        # this rank's device: another machine may show another number of GPUs.
        "cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
        # Libraries may draw from numpy's legacy global state; saved so that resume is exact, as
        # a tensor and numbers (a numpy array would need unpickling code to load).
        "numpy": _numpy_state(),
        "random": random.getstate(),
    }


def _numpy_state() -> dict:
    name, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"][0])  # the current device: this rank's
    saved = states["numpy"]
    np.random.set_state((  # noqa: NPY002
        saved["name"], saved["keys"].numpy().astype(np.uint32), saved["position"],
        saved["has_gauss"], saved["cached_gaussian"],
    ))  # fmt: skip
    random.setstate(states["random"])


def layout(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The (network, auxiliary) parameters in ``net_aux_optimizer``'s order: sorted by name, the
    ``quantiles`` apart."""
    named = sorted(unwrap(model).named_parameters())
    return (
        [p for name, p in named if not is_quantiles(name)],
        [p for name, p in named if is_quantiles(name)],
    )


def optimizer_state(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> dict:
    """``optimizer.state_dict()`` in the layout of ``params`` (one param group holding all of
    them, in that order): a parameter that left the optimizer is listed without state, which
    torch's optimizers accept (they start its state afresh); the packed state of a tensor that
    STDET embedded in part is unpacked, zero for its embedded scalars."""
    saved = optimizer.state_dict()
    (group,) = saved["param_groups"]  # net_aux_optimizer makes one group per optimizer
    position = {id(p): i for i, p in enumerate(params)}
    held = optimizer.param_groups[0]["params"]
    index = [position[id(packing.owner(p))] for p in held]
    return {
        "state": {
            index[i]: {key: packing.unpacked(held[i], value) for key, value in state.items()}
            for i, state in saved["state"].items()
        },
        "param_groups": [{**group, "params": list(range(len(params)))}],
    }


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict, params: list[nn.Parameter]
) -> None:
    """Restore an :func:`optimizer_state` of ``params`` into ``optimizer``, which may hold fewer
    of them (those STDET took out lose their saved state) or stand-ins for them (packed again)."""
    (group,) = saved["param_groups"]
    if len(group["params"]) != len(params):
        raise ValueError(
            f"the saved optimizer holds {len(group['params'])} parameters, the model "
            f"{len(params)}: another architecture"
        )
    position = {id(p): i for i, p in enumerate(params)}
    held = optimizer.param_groups[0]["params"]
    current = {position[id(packing.owner(p))]: i for i, p in enumerate(held)}
    optimizer.load_state_dict({
        "state": {current[i]: state for i, state in saved["state"].items() if i in current},
        "param_groups": [{**group, "params": list(range(len(current)))}],
    })  # fmt: skip
    packing.pack_loaded(optimizer)


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
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
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
        """The checkpoint of this state (``epoch``: the last epoch finished, -1 before the first;
        ``random_states``: one entry per rank)."""
        net, aux = layout(self.model)
        rules = self.rules.state_dict()
        raw = self.model.state_dict()
        sma = rules.get("sma") or {}
        average = sma["average"] if sma.get("samples") else None
        return {
            "epoch": epoch,
            # The same tensors as the sma state's average: stored once.
            "state_dict": {**raw, **average} if average else raw,
            "loss": loss,
            "optimizer": optimizer_state(self.optimizer, net),
            "aux_optimizer": optimizer_state(self.aux_optimizer, aux),
            "lr_scheduler": self.scheduler.state_dict(),
            **({"raw_state_dict": raw} if average else {}),
            **{name: getattr(self, name) for name in COUNTERS},
            "world_size": world,
            "random_states": random_states,
            **dict.fromkeys(RULE_KEYS),
            **rules,
            "config": config.to_dict(),
            "model": describe(self.model),
        }

    def load(self, saved: dict, *, rank: int = 0) -> None:
        """Restore a checkpoint of :meth:`to_dict` (the model's architecture checked already).
        The rules are restored right after the model and before the optimizer: fully embedded
        tensors leave the optimizer's param groups first."""
        self.model.load_state_dict(saved.get("raw_state_dict", saved["state_dict"]))
        self.rules.load_state_dict({name: saved.get(name) for name in self.rules})
        net, aux = layout(self.model)
        load_optimizer_state(self.optimizer, saved["optimizer"], net)
        load_optimizer_state(self.aux_optimizer, saved["aux_optimizer"], aux)
        self.scheduler.load_state_dict(saved["lr_scheduler"])
        for name in COUNTERS:
            if name in saved:  # a checkpoint of an older version may lack the newest ("best")
                setattr(self, name, saved[name])
        set_random_states(saved["random_states"][rank])
