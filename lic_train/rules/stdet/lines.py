"""Which tracked scalars STDET has embedded, and the line each follows: the state an event changes.

Per tracked scalar (N of them, flat, in the order of the tracked parameters): its kind
(``TRAINABLE``, ``TRUE`` or ``DUMMY``), the line ``theta_i = a_i r + b_i`` it follows once embedded
(frozen at its event; a dummy's ``b_i = theta_i(t_e) - a_i r(t_e)``, so that its value does not
jump), and the event record its line was fitted at (:class:`~.records.EventRecords`). Embedding a
scalar and releasing it again are the only two changes; the embedding table (:mod:`.embedding`)
ties the model's weights to these lines.

Examples:
    >>> import torch
    >>> from lic_train.rules.stdet.config import DUMMY, TRUE
    >>> lines = FrozenLines(size=4, device="cpu")
    >>> record = lines.records.add(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([2.0]))
    >>> kind = torch.tensor([0, TRUE, DUMMY, 0], dtype=torch.uint8)
    >>> a, b = torch.full((4,), 0.5, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    >>> lines.embed(kind, a, b, record).tolist(), lines.count
    ([False, True, True, False], 2)
    >>> lines.release(torch.tensor([False, True, False, False])); lines.count, lines.a.tolist()
    (1, [0.0, 0.5, 0.5, 0.0])
"""

from __future__ import annotations

import torch

from lic_train.rules.stdet.config import DUMMY, TRAINABLE, TRUE
from lic_train.rules.stdet.records import EventRecords


class FrozenLines:
    """``kind`` (uint8 (N,)), ``a`` and ``b`` (float64 (N,): the frozen lines; a released scalar
    keeps its last line until it is embedded again), ``records`` and ``count``, the number of
    embedded scalars."""

    def __init__(self, size: int, device: torch.device | str) -> None:
        self.size = size
        self.device = torch.device(device)
        self.kind = torch.zeros(size, dtype=torch.uint8, device=self.device)
        self.a = torch.zeros(size, dtype=torch.float64, device=self.device)
        self.b = torch.zeros(size, dtype=torch.float64, device=self.device)
        self.records = EventRecords(size, self.device)
        self.count = 0

    @property
    def embedded(self) -> torch.Tensor:
        """Which scalars are embedded, bool (N,)."""
        return self.kind != TRAINABLE

    def embed(
        self, kind: torch.Tensor, a: torch.Tensor, b: torch.Tensor, record: int
    ) -> torch.Tensor:
        """Embed the scalars whose ``kind`` (N,) is not ``TRAINABLE``, of that kind, on the lines
        ``a``, ``b`` (N,), fitted at event ``record``; returns them as a mask (N,)."""
        chosen = kind != TRAINABLE
        self.a[chosen] = a[chosen]
        self.b[chosen] = b[chosen]
        self.kind[chosen] = kind[chosen]
        self.records.embed(chosen, record)
        self.count = int(self.embedded.sum())
        return chosen

    def release(self, released: torch.Tensor) -> None:
        """The ``released`` scalars (bool (N,)) train again."""
        self.kind[released] = TRAINABLE
        self.records.release(released)
        self.count = int(self.embedded.sum())

    def leverage_squared(self, mode: torch.Tensor, references: int) -> torch.Tensor:
        """``sum a_i^2`` over each reference's embedded members, float64 (M,): the square of the
        L2 distance they move per unit step of the reference (``mode``: each scalar's reference,
        (N,); ``references``: M)."""
        embedded = self.embedded
        out = torch.zeros(references, dtype=torch.float64, device=self.device)
        return out.index_add_(0, mode[embedded].long(), self.a[embedded].square())

    def counts(self) -> dict[str, int]:
        """Number of tracked scalars by kind: ``{"trainable": .., "true": .., "dummy": ..}``."""
        counts = torch.bincount(self.kind.long(), minlength=3).tolist()
        return {"trainable": counts[TRAINABLE], "true": counts[TRUE], "dummy": counts[DUMMY]}

    def state_dict(self) -> dict:
        return {
            "kind": self.kind.clone(),
            "frozen_a": self.a.clone(),
            "frozen_b": self.b.clone(),
            **self.records.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.kind = state["kind"].to(self.device).clone()
        self.a = state["frozen_a"].to(self.device).clone()
        self.b = state["frozen_b"].to(self.device).clone()
        self.records.load_state_dict(state)
        self.count = int(self.embedded.sum())

    def nbytes(self) -> int:
        own = sum(t.numel() * t.element_size() for t in (self.kind, self.a, self.b))
        return own + self.records.nbytes()
