"""Which scalars an STDET event embeds, and how: pure functions of the event's numbers.

Inputs are flat over the tracked scalars (N,): ``drift``, how far each line ``(a, b)`` moved since
the last event (``sqrt(da^2 + db^2)``, as in CMD); ``r2``, each line's coefficient of
determination; ``embedded``, the scalars embedded already; ``sensitivity``, the mean ``|theta * g|``.
Nothing here reads a model or changes state, so each rule can be tested on hand-made numbers.

Examples:
    >>> import torch
    >>> drift = torch.tensor([0.1, 0.5, 0.2, 0.05, 0.3])
    >>> r2 = torch.tensor([1.0, 1.0, 0.2, 1.0, 1.0])
    >>> embedded = torch.zeros(5, dtype=torch.bool)
    >>> sensitivity = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    >>> steady = steadiest_scalars(drift, r2, embedded, references=torch.tensor([0]), budget=2,
    ...                            min_r2=0.5, keep_sensitive=0.0, sensitivity=sensitivity)
    >>> sorted(steady.tolist())  # 0 is a reference, 2 fits badly: 3 and 4 drift least
    [3, 4]
    >>> kinds(steady, sensitivity, size=5, variant="sensitivity", quantile=0.5).tolist()
    [0, 0, 0, 1, 2]
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import NamedTuple

import torch

from lic_train.rules.stdet.config import DUMMY, TRUE


def steadiest_scalars(
    drift: torch.Tensor,
    r2: torch.Tensor,
    embedded: torch.Tensor,
    *,
    references: torch.Tensor,
    budget: int,
    min_r2: float,
    keep_sensitive: float,
    sensitivity: torch.Tensor,
    leverage: Leverage | None = None,
) -> torch.Tensor:
    """The ``budget`` steadiest eligible scalars (not embedded, not a reference, ``R^2 >=
    min_r2``, and within the ``leverage`` bound when one is given), less the most sensitive
    ``floor(keep_sensitive * n)`` of them. Flat indices."""
    eligible = ~embedded & (r2 >= min_r2)
    eligible[references] = False
    candidates = torch.nonzero(eligible).squeeze(1)
    if leverage is not None:
        candidates = leverage.within(candidates[torch.argsort(drift[candidates], stable=True)])
    n = min(budget, candidates.numel())
    steady = candidates[torch.topk(drift[candidates], n, largest=False, sorted=False).indices]
    keep = math.floor(keep_sensitive * n)
    if keep:
        steady = steady[
            torch.topk(sensitivity[steady], n - keep, largest=False, sorted=False).indices
        ]
    return steady


class Leverage(NamedTuple):
    """The bound on a reference's leverage: ``||a||_2`` over its embedded members at most
    ``bound``. ``a`` and ``mode`` (N,) are every scalar's slope and mode, ``embedded_sq`` (M,) the
    ``sum a^2`` each reference carries already."""

    a: torch.Tensor
    mode: torch.Tensor
    embedded_sq: torch.Tensor
    bound: float

    def within(self, ordered: torch.Tensor) -> torch.Tensor:
        """The scalars of ``ordered`` (flat indices, preferred first) that each reference can
        still take, in order: the longest prefix of each mode's scalars whose ``sum a^2``, added
        to the reference's, stays at most ``bound^2``.

        Examples:
            >>> a = torch.tensor([3.0, 4.0, 1.0, 2.0], dtype=torch.float64)
            >>> lever = Leverage(a, torch.tensor([0, 0, 0, 1]), torch.zeros(2, dtype=torch.float64), 5.0)
            >>> lever.within(torch.tensor([0, 1, 2, 3])).tolist()  # 9 + 16 = 25; + 1 is too much
            [0, 1, 3]
        """
        if ordered.numel() == 0:
            return ordered
        mode = self.mode[ordered].long()
        sq = self.a[ordered].to(torch.float64).square()
        # The running sum of a^2 inside each mode, in preference order: sort by mode (stable,
        # so the order inside a mode is kept), cumulate, subtract each mode's start.
        by_mode = torch.argsort(mode, stable=True)
        cumulative = sq[by_mode].cumsum(0)
        sorted_mode = mode[by_mode]
        starts = torch.searchsorted(sorted_mode, sorted_mode)  # first position of each mode
        before = torch.where(starts > 0, cumulative[(starts - 1).clamp(min=0)], 0.0)
        running = torch.empty_like(sq)
        running[by_mode] = cumulative - before
        room = self.bound**2 - self.embedded_sq.to(torch.float64)[mode]
        return ordered[running <= room]


def steadiest_tensors(
    drift: torch.Tensor,
    r2: torch.Tensor,
    embedded: torch.Tensor,
    *,
    offsets: Sequence[int],
    holding_references: Collection[int],
    budget: int,
    min_r2: float,
    keep_sensitive: float,
    sensitivity: torch.Tensor,
) -> torch.Tensor:
    """Whole tensors (tensor i holds flat indices ``offsets[i]:offsets[i+1]``), steadiest first by
    mean drift, that hold no reference, are not embedded yet, have a mean ``R^2 >= min_r2`` and fit
    in the budget; less the most sensitive ``floor(keep_sensitive * n)`` of them by mean
    sensitivity. Flat indices of their scalars."""
    tensors = []
    for i in range(len(offsets) - 1):
        lo, hi = offsets[i], offsets[i + 1]
        if i in holding_references or embedded[lo:hi].any() or r2[lo:hi].mean() < min_r2:
            continue
        tensors.append((drift[lo:hi].mean().item(), i))
    chosen, room = [], budget
    for _, i in sorted(tensors):
        size = offsets[i + 1] - offsets[i]
        if size <= room:
            chosen.append(i)
            room -= size
    keep = math.floor(keep_sensitive * len(chosen))
    if keep:
        by_sensitivity = sorted(
            chosen, key=lambda i: sensitivity[offsets[i] : offsets[i + 1]].mean().item()
        )
        chosen = by_sensitivity[: len(chosen) - keep]
    if not chosen:
        return torch.empty(0, dtype=torch.long, device=drift.device)
    return torch.cat(
        [torch.arange(offsets[i], offsets[i + 1], device=drift.device) for i in chosen]
    )


def kinds(
    steady: torch.Tensor, sensitivity: torch.Tensor, *, size: int, variant: str, quantile: float
) -> torch.Tensor:
    """The kind of each of ``size`` scalars at this event (uint8): ``TRUE`` or ``DUMMY`` for the
    ``steady`` ones, ``TRAINABLE`` (0) elsewhere. ``variant`` "true" or "dummy" gives all of them
    that kind; "sensitivity" embeds the ``round(quantile * n)`` least sensitive true and the rest
    dummy."""
    new_kind = torch.zeros(size, dtype=torch.uint8, device=steady.device)
    if steady.numel() == 0:
        return new_kind
    if variant == "true":
        new_kind[steady] = TRUE
    elif variant == "dummy":
        new_kind[steady] = DUMMY
    else:
        order = torch.argsort(sensitivity[steady], stable=True)
        n_true = round(quantile * order.numel())
        new_kind[steady[order[:n_true]]] = TRUE
        new_kind[steady[order[n_true:]]] = DUMMY
    return new_kind
