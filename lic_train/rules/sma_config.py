"""SMA's knobs as a run configuration stores them, and their check: no torch, so that a command
line can refuse a bad ``--sma-k`` before it imports torch (the rule itself: :mod:`.sma`)."""

from __future__ import annotations

from dataclasses import dataclass

from lic_dynamics import validation


def check_hyperparameters(
    *,
    k: object,
    beta: object,
    start: object = 0,
    feedback: object = False,
    bias_correction: object = False,
    warmup: object = False,
) -> tuple[int, float, int]:
    """``(k, beta, start)`` checked (k >= 1, beta in [0, 1), start >= 0, flags bool, not both
    ``bias_correction`` and ``warmup``); raises ``ValueError`` naming the first bad one."""
    validation.flag("feedback", feedback)
    validation.flag("bias_correction", bias_correction)
    validation.flag("warmup", warmup)
    if bias_correction and warmup:
        raise ValueError("bias_correction and warmup: give one (both tame the first samples)")
    return (
        validation.integer("k", k, minimum=1),
        validation.real("beta", beta, "[0, 1)", low=0, high=1, low_open=False),
        validation.integer("start", start, minimum=0),
    )


@dataclass(frozen=True)
class SMAConfig:
    """SMA's knobs as a run configuration stores them (see :class:`SMA`); validated on
    construction."""

    k: int = 5
    beta: float = 0.9
    feedback: bool = False
    warmup: bool = False  # torch_ema's decay warm-up (see the module docstring)

    def __post_init__(self) -> None:
        check_hyperparameters(k=self.k, beta=self.beta, feedback=self.feedback, warmup=self.warmup)
