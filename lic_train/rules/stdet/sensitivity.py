"""Sensitivity of each tracked scalar: the running mean of ``|theta_i * g_i|``, the first-order
Taylor saliency (the loss change if the scalar were set to zero), from the gradients the training
step already computed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Sensitivity:
    """``|theta * g|`` summed per scalar of ``params`` over the observed steps since :meth:`reset`.

    The sums are float32 next to each parameter (one more copy of the weights' size on their
    device, never transferred except when read).
    """

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.params = list(params)
        self.sums = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]
        self.count = 0

    @torch.no_grad()
    def accumulate(self) -> None:
        """Add ``|theta * g|`` of every parameter that has a gradient now."""
        for p, acc in zip(self.params, self.sums, strict=True):
            if p.grad is not None:
                acc.add_((p.detach() * p.grad).abs_())
        self.count += 1

    def mean(self, device: torch.device) -> torch.Tensor:
        """Mean ``|theta * g|`` per scalar, float64 (N,) on ``device`` (zeros before any step)."""
        flat = torch.cat([acc.reshape(-1).to(device, torch.float64) for acc in self.sums])
        return flat / max(self.count, 1)

    def reset(self) -> None:
        for acc in self.sums:
            acc.zero_()
        self.count = 0

    def state_dict(self) -> dict:
        return {"sensitivity_sum": [acc.clone() for acc in self.sums],
                "sensitivity_count": self.count}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.sums = [
            t.to(p.device).clone()
            for t, p in zip(state["sensitivity_sum"], self.params, strict=True)
        ]
        self.count = int(state["sensitivity_count"])

    def nbytes(self) -> int:
        return sum(acc.numel() * acc.element_size() for acc in self.sums)
