"""SMA, sampling-then-moving-average, for the parameters of a torch model (docs/rules.md).

After optimizer step ``n`` (counted from 1) with ``n >= start`` and ``(n - start) % k == 0`` the
parameters are *sampled*: ``avg <- beta_j * avg + (1 - beta_j) * theta`` for the j-th sample, with
``beta_1 = 0`` (the first sample initialises the average) and ``beta_j = beta`` after it. This is the
rule whose steady-state variance ``nqm.closed_form.sma_ratio`` gives (derivation:
``proofs/02-sma-ratio.md``). With ``feedback=True`` the fast weights are reset to the average after
each sample, which is Lookahead with ``alpha = 1 - beta`` (``proofs/04-lookahead.md``).

``bias_correction=True`` replaces ``beta_j`` by ``beta (1 - beta^(j-1)) / (1 - beta^j)``, so the
average is the normalised geometric mean ``sum_i beta^(j-i) theta_i / sum_i beta^(j-i)`` of the
samples so far (Adam's bias correction): early samples do not dominate a slow average (beta close to
1), the remedy EMA users know as decay warm-up. It tends to the plain rule as j grows.

``warmup=True`` is ``torch_ema``'s decay warm-up (``ExponentialMovingAverage(use_num_updates=True)``,
its default): ``beta_j = min(beta, j / (9 + j))`` for ``j >= 2``, so that a slow average (0.999) of a
short run forgets its initial weights: its horizon grows as about ``j / 9`` samples until it reaches
``1 / (1 - beta)``. (torch_ema's n-th update, the first after its copy of the initial weights, uses
``(1 + n) / (10 + n)``; here the first sample stands for that copy, so ``n = j - 1``: the same
rule one step later, since torch_ema copies the weights before the first step and SMA after it.)

Only parameters are averaged, never buffers: CompressAI's CDF tables change size on ``update()``,
which breaks ``AveragedModel``-style averaging of buffers. Evaluate the average on a copy
(:meth:`SMA.averaged_copy`) and call ``update(force=True)`` there.

:class:`SMA` is an :class:`~lic_train.rules.chain.UpdateRule` (it samples in ``after_step``) and a
trajectory source for STDET (:meth:`SMA.tensors`, :attr:`SMA.dtype`).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from lic_train.rules.parameters import named_parameters, unwrap
from lic_train.rules.sma_config import SMAConfig, check_hyperparameters


class SMA:
    """Sampled moving average of every parameter of ``model``; call :meth:`step` after each
    optimizer step, or put it in a :class:`~lic_train.rules.chain.Chain`, which calls it through
    :meth:`after_step` (not both).

    Args:
        model: the trained module (a ``DistributedDataParallel`` wrapper is unwrapped; its replicas
            are identical, so every rank holds the same average).
        k: sampling period in optimizer steps, >= 1.
        beta: decay per sample, in [0, 1).
        start: first optimizer step that may be sampled, >= 0.
        feedback: reset the fast weights to the average after each sample (Lookahead).
        bias_correction: normalised weights for the first samples (see the module docstring).
        warmup: torch_ema's decay warm-up, ``beta_j = min(beta, j / (9 + j))`` (module docstring).
        device: where the average lives; ``"cpu"`` saves accelerator memory (one copy of the
            parameters) at the cost of a transfer every k steps. Default: next to each parameter.
        dtype: dtype of the average (default: each parameter's). float64 keeps a slow average
            of float32 weights free of rounding drift.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        k: int = 5,
        beta: float = 0.9,
        start: int = 0,
        feedback: bool = False,
        bias_correction: bool = False,
        warmup: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.k, self.beta, self.start = check_hyperparameters(
            k=k, beta=beta, start=start, feedback=feedback, bias_correction=bias_correction,
            warmup=warmup,
        )  # fmt: skip
        self.feedback = feedback
        self.bias_correction = bias_correction
        self.warmup = warmup
        self.device = None if device is None else torch.device(device)
        self.dtype = dtype
        self._params = dict(named_parameters(model))
        self.steps = 0  # optimizer steps seen
        self.samples = 0
        self.average: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, model: nn.Module, config: SMAConfig, **options: object) -> SMA:
        """``SMA(model, k=config.k, beta=config.beta, feedback=config.feedback,
        warmup=config.warmup, **options)``."""
        return cls(
            model, k=config.k, beta=config.beta, feedback=config.feedback, warmup=config.warmup,
            **options,
        )  # fmt: skip

    def _decay(self) -> float:
        """beta_j for the sample about to be taken (j = self.samples + 1)."""
        j = self.samples + 1
        if j == 1:
            return 0.0
        if self.warmup:
            return min(self.beta, j / (9 + j))
        if not self.bias_correction or self.beta == 0.0:
            return self.beta
        log_beta = math.log(self.beta)  # 1 - beta^n as -expm1(n log beta): no cancellation
        return self.beta * math.expm1((j - 1) * log_beta) / math.expm1(j * log_beta)

    def due(self, step: int) -> bool:
        """Whether optimizer step ``step`` (counted from 1) is a sampling step."""
        return step >= self.start and (step - self.start) % self.k == 0

    @torch.no_grad()
    def step(self) -> bool:
        """Count one optimizer step; sample if it is due. Returns whether it sampled."""
        self.steps += 1
        if not self.due(self.steps):
            return False
        decay = self._decay()
        for name, p in self._params.items():
            if name not in self.average:
                self.average[name] = torch.empty_like(
                    p, device=self.device or p.device, dtype=self.dtype or p.dtype
                )
            avg = self.average[name]
            # Blocking: a non-blocking copy to the CPU may not have landed when lerp_ reads it.
            theta = p.detach().to(avg.device, avg.dtype)
            if decay == 0.0:
                avg.copy_(theta)
            else:
                avg.lerp_(theta, 1.0 - decay)
            if self.feedback:
                p.copy_(avg.to(p.device, p.dtype))
        self.samples += 1
        return True

    def after_backward(self) -> None:
        """Nothing: SMA reads the weights only after the optimizer step."""

    def after_step(self) -> None:
        """:meth:`step` (the :class:`~lic_train.rules.chain.UpdateRule` call)."""
        self.step()

    @property
    def ready(self) -> bool:
        """Whether at least one sample was taken (before that there is no average)."""
        return self.samples > 0

    def tensors(self, names: list[str]) -> list[torch.Tensor]:
        """The average of the named parameters, in that order (the raw parameters before the
        first sample)."""
        if not self.ready:
            return [self._params[n].detach() for n in names]
        return [self.average[n] for n in names]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the average into ``model``'s parameters (same names; buffers untouched)."""
        if not self.ready:
            raise RuntimeError("SMA has no average yet: no sample was taken")
        target = dict(named_parameters(model))
        missing = sorted(set(self.average) - set(target))
        if missing:
            raise ValueError(f"model has no parameter {missing[0]!r} of the average")
        for name, avg in self.average.items():
            target[name].copy_(avg.to(target[name].device, target[name].dtype))

    def averaged_copy(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` (unwrapped) holding the average: the readout for evaluation.

        Call ``update(force=True)`` on the copy before real entropy coding; the training model's
        CDF buffers are left alone.
        """
        clone = copy.deepcopy(unwrap(model))
        self.copy_to(clone)
        return clone

    def state_dict(self) -> dict:
        return {
            "k": self.k,
            "beta": self.beta,
            "start": self.start,
            "feedback": self.feedback,
            "bias_correction": self.bias_correction,
            "warmup": self.warmup,
            "steps": self.steps,
            "samples": self.samples,
            "average": {name: t.clone() for name, t in self.average.items()},
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the configuration must match this instance's."""
        if not state:
            raise ValueError("no saved SMA state to restore")
        for key in ("k", "beta", "start", "feedback", "bias_correction", "warmup"):
            # A flag that an earlier version did not save was off.
            saved = state.get(key, False) if key == "warmup" else state[key]
            if saved != getattr(self, key):
                raise ValueError(
                    f"SMA state has {key}={saved!r}, this SMA has {key}={getattr(self, key)!r}"
                )
        unknown = sorted(set(state["average"]) - set(self._params))
        if unknown:
            raise ValueError(f"SMA state averages {unknown[0]!r}, which the model does not have")
        missing = sorted(set(self._params) - set(state["average"]))
        if state["samples"] and missing:
            raise ValueError(f"SMA state has no average of the model's parameter {missing[0]!r}")
        self.steps = int(state["steps"])
        self.samples = int(state["samples"])
        self.average = {}
        for name, t in state["average"].items():
            p = self._params[name]
            self.average[name] = t.to(self.device or p.device, self.dtype or p.dtype).clone()

    def nbytes(self) -> int:
        """Memory held by the average, in bytes."""
        return sum(t.numel() * t.element_size() for t in self.average.values())
