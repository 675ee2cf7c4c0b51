"""Learning-rate schedules of the trainer: the ones LIC papers train with.

* ``plateau``: CompressAI's ``examples/train.py``, ``ReduceLROnPlateau(optimizer, "min")`` (torch's
  defaults: x0.1 after 10 validations without improvement), stepped on the raw weights'
  validation loss at every validation (CompressAI's epoch).
* ``multistep``: x``gamma`` (0.1) at given fractions of the run's steps, as TCM, MLIC and ELIC
  train (x0.1 at about 90%), optionally after a linear warm-up; stepped after every optimizer step.
* ``none``: a constant rate (after the optional warm-up).
"""

from __future__ import annotations

import functools

import torch

PER_STEP = ("multistep", "none")  # stepped after each optimizer step; plateau: at validations


def lr_factor(
    step: int, *, steps: int, milestones: tuple[float, ...], gamma: float, warmup: int
) -> float:
    """The learning rate of optimizer step ``step`` (counted from 0) over the base rate.

    ``min(1, (step + 1) / warmup) * gamma ** #{m in milestones : step >= round(m * steps)}``: a
    linear warm-up over the first ``warmup`` steps (none when 0), then x``gamma`` at each
    milestone, a fraction of the run's ``steps``.

    Example:
        >>> [lr_factor(s, steps=10, milestones=(0.8,), gamma=0.1, warmup=2) for s in (0, 1, 7, 8)]
        [0.5, 1.0, 1.0, 0.1]
    """
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return warm * gamma ** sum(step >= round(m * steps) for m in milestones)


def same_schedule_until(
    step: int, *, steps: int, other_steps: int, milestones: tuple[float, ...]
) -> bool:
    """Whether a multistep run of ``steps`` steps and one of ``other_steps`` steps train with the
    same learning rate at every step before ``step`` (counted from 0): true when each milestone
    falls at ``step`` or later in both, or on the same step in both. Then a checkpoint after
    ``step`` steps of one may continue as the other (the branches of a budget sweep,
    :func:`lic_train.trainer.loop.branch`).

    Example:
        >>> same_schedule_until(900, steps=1000, other_steps=2000, milestones=(0.9,))
        True
        >>> same_schedule_until(901, steps=1000, other_steps=2000, milestones=(0.9,))
        False
    """
    return all(
        min(round(m * steps), round(m * other_steps)) >= step
        or round(m * steps) == round(m * other_steps)
        for m in milestones
    )


def restart_rate(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set the optimizer's rate to the one ``scheduler`` gives its current step: after a resume
    with another length (:func:`same_schedule_until`) the checkpoint holds the rate of the old
    length's next step, which may be the step where the new length decays."""
    step = scheduler.last_epoch
    for group, base, factor in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * factor(step)
    scheduler._last_lr = [
        group["lr"] for group in scheduler.optimizer.param_groups
    ]  # get_last_lr()


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, schedule: str, steps: int, milestones: tuple[float, ...],
    gamma: float, warmup: int,
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:  # fmt: skip
    """The scheduler of ``schedule`` (plateau, multistep or none; the configuration checked these
    arguments): ``ReduceLROnPlateau`` or a ``LambdaLR`` of :func:`lr_factor`."""
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min")
    if schedule == "none":
        milestones = ()
    factor = functools.partial(
        lr_factor, steps=steps, milestones=milestones, gamma=gamma, warmup=warmup
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
