"""Where each embedded scalar's line was fitted: what STDET's health and its release rule measure
from.

At every event STDET adds a *record*: the references' raw values then and the range ``[low,
high]`` CMD had observed each of them in, the range the lines of the scalars embedded at that
event were fitted on. Each embedded scalar points at its record. Records no embedded scalar points
at any more are dropped, so at most one record per event that still has members is kept.

Examples:
    >>> import torch
    >>> records = EventRecords(size=4, device="cpu")
    >>> first = records.add(torch.tensor([1.0]), low=torch.tensor([0.0]), high=torch.tensor([2.0]))
    >>> records.embed(torch.tensor([False, True, True, False]), first)
    >>> then, low, high = records.at(torch.tensor([1, 2]), mode=torch.tensor([0, 0]))
    >>> then.tolist(), low.tolist(), high.tolist()
    ([1.0, 1.0], [0.0, 0.0], [2.0, 2.0])
    >>> records.release(torch.tensor([False, True, True, False]))
    >>> records.forget_unused(); len(records.reference)  # nothing points at the record any more
    0
"""

from __future__ import annotations

import torch

_KEYS = ("reference", "low", "high")


class EventRecords:
    """Per record: ``reference``, ``low``, ``high`` (float64 (M,) each); per tracked scalar:
    ``of_scalar`` (int32 (N,), the record it was embedded at, -1 when trainable)."""

    def __init__(self, size: int, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.of_scalar = torch.full((size,), -1, dtype=torch.int32, device=self.device)
        self.reference: list[torch.Tensor] = []
        self.low: list[torch.Tensor] = []
        self.high: list[torch.Tensor] = []

    def add(self, reference: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> int:
        """A new record (copies of the tensors); returns its index."""
        self.reference.append(reference.to(self.device, torch.float64).clone())
        self.low.append(low.to(self.device, torch.float64).clone())
        self.high.append(high.to(self.device, torch.float64).clone())
        return len(self.reference) - 1

    def embed(self, chosen: torch.Tensor, record: int) -> None:
        """The ``chosen`` scalars (bool (N,)) were embedded at ``record``."""
        self.of_scalar[chosen] = record

    def release(self, released: torch.Tensor) -> None:
        """The ``released`` scalars (bool (N,)) train again."""
        self.of_scalar[released] = -1

    def forget_unused(self) -> None:
        """Drop the records no scalar points at, renumbering the others."""
        used = torch.unique(self.of_scalar[self.of_scalar >= 0]).long()
        if used.numel() == len(self.reference):
            return
        renumber = torch.full((len(self.reference),), -1, dtype=torch.int32, device=self.device)
        renumber[used] = torch.arange(used.numel(), dtype=torch.int32, device=self.device)
        embedded = self.of_scalar >= 0
        self.of_scalar[embedded] = renumber[self.of_scalar[embedded].long()]
        for key in _KEYS:
            history = getattr(self, key)
            setattr(self, key, [history[i] for i in used.tolist()])

    def at(
        self, where: torch.Tensor, mode: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the embedded scalars ``where`` (flat indices) with references ``mode``: the
        reference's value at their embedding and the range their line was fitted on (low,
        high); float64."""
        record = self.of_scalar[where].long()
        mode = mode.long()
        then, low, high = (torch.stack(getattr(self, key))[record, mode] for key in _KEYS)
        return then, low, high

    def state_dict(self) -> dict:
        return {
            "embedded_event": self.of_scalar.clone(),
            **{f"event_{key}": [t.clone() for t in getattr(self, key)] for key in _KEYS},
        }

    def load_state_dict(self, state: dict) -> None:
        self.of_scalar = state["embedded_event"].to(self.device, torch.int32).clone()
        for key in _KEYS:
            tensors = state[f"event_{key}"]
            setattr(self, key, [t.to(self.device, torch.float64).clone() for t in tensors])

    def nbytes(self) -> int:
        tensors = [self.of_scalar, *self.reference, *self.low, *self.high]
        return sum(t.numel() * t.element_size() for t in tensors)
