"""The embedding table: embedded scalars follow their reference, ``theta_j = a_j r_m(j) + b_j``.

The torch twin of :class:`nqm.embedding.Tie` (whose moments ``proofs/07-embedding.md`` derives):
members tied to references by frozen lines. STDET decides *which* scalars are tied and with which
line; the table only enforces the tie, as an :class:`~lic_train.rules.chain.UpdateRule`:

* ``after_backward``: embedded scalars get a zero gradient, so clipping and the optimizer never
  see one; with ``route_gradients`` each reference first gets its mode's gradient,
  ``(g_r + sum_i a_i g_i) / (1 + sum_i a_i^2)`` over the members still in autograd: the chain rule
  of ``w_i = a_i r + b_i``, scaled as the least-squares fit of one step of ``r`` to the full
  gradient step on the mode (so a mode of 1e5 members does not dominate the clipping norm);
* ``after_step``: embedded scalars are recomputed from the current references, before anything
  else reads the weights (an SMA sample, a validation, a checkpoint).

Its state is STDET's (kinds, lines, modes), from which STDET rebuilds it: it saves nothing itself.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn


def put(tensor: torch.Tensor, index: torch.Tensor, values: torch.Tensor | float) -> None:
    """``tensor.reshape(-1)[index] = values`` in place (``values`` a tensor or one number), whatever
    the memory layout: a ``channels_last`` tensor has no flat view, so it goes through a row-major
    copy. ``index_copy_``/``index_fill_`` with int64 indices: the fastest scatter on the CPU."""

    def scatter(flat: torch.Tensor) -> None:
        if isinstance(values, torch.Tensor):
            flat.index_copy_(0, index, values)
        else:
            flat.index_fill_(0, index, values)

    if tensor.is_contiguous():
        scatter(tensor.view(-1))
    else:
        flat = tensor.reshape(-1)
        scatter(flat)
        tensor.copy_(flat.view(tensor.shape))


class Embedded(NamedTuple):
    """The embedded scalars of one tensor, on its device: ``theta[index] = a * r[mode] + b``.

    Device memory per embedded scalar: ``a`` and ``b`` in the parameter's dtype, an int32 mode
    (``index_select`` takes int32) and, unless the whole tensor is embedded (``index is None``), an
    int64 position (``index_copy_`` takes only int64, and it is twice as fast as ``index_put_``).
    """

    tensor: int
    index: torch.Tensor | None
    a: torch.Tensor
    b: torch.Tensor
    mode: torch.Tensor


class EmbeddingTable:
    """Scalars of ``params`` (flat indices into their concatenation, ``N`` in all) tied to reference
    scalars of the same parameters.

    Examples:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
        >>> table = EmbeddingTable([w])
        >>> table.set_references([0])  # one mode, whose reference is w[0]
        >>> whole = table.set(kind=torch.tensor([0, 1, 1]), a=torch.tensor([1.0, 2.0, -1.0]),
        ...                   b=torch.tensor([0.0, 0.5, 0.0]), mode=torch.tensor([0, 0, 0]))
        >>> with torch.no_grad():
        ...     w[0] = 10.0
        >>> table.after_step()
        >>> w.tolist()
        [10.0, 20.5, -10.0]
    """

    def __init__(self, params: Sequence[nn.Parameter], *, route_gradients: bool = False) -> None:
        self.params = list(params)
        self.route_gradients = route_gradients
        sizes = [p.numel() for p in self.params]
        self.offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
        self.entries: list[Embedded] = []
        self._reference_at: list[tuple[torch.Tensor, tuple[int, ...]]] = []
        self.steps = 0  # after_step calls: STDET checks that the table runs before it

    def tensor_of(self, flat: int) -> int:
        """The index of the parameter that holds flat index ``flat``."""
        return bisect.bisect_right(self.offsets, flat) - 1

    def set_references(self, flat: Sequence[int]) -> None:
        """The references, as flat indices (mode m's reference is ``flat[m]``)."""
        self._reference_at = []
        for index in flat:
            i = self.tensor_of(index)
            p = self.params[i]
            where = torch.unravel_index(torch.tensor(index - self.offsets[i]), p.shape)
            self._reference_at.append((p, tuple(int(w) for w in where)))

    def references(self) -> torch.Tensor:
        """Current values of the references (M,), on the first parameter's device, uncast."""
        device = self.params[0].device
        return torch.stack([p.detach()[where].to(device) for p, where in self._reference_at])

    def set(
        self, kind: torch.Tensor, a: torch.Tensor, b: torch.Tensor, mode: torch.Tensor
    ) -> list[int]:
        """Tie the scalars with ``kind != 0`` (N,) to reference ``mode`` (N,) by the lines ``a``,
        ``b`` (N,); returns the indices of the parameters now embedded whole."""
        self.entries = []
        whole = []
        for i, p in enumerate(self.params):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            local = torch.nonzero(kind[lo:hi]).squeeze(1)
            if local.numel() == 0:
                continue
            flat = local + lo
            is_whole = local.numel() == p.numel()
            self.entries.append(
                Embedded(
                    tensor=i,
                    index=None if is_whole else local.to(p.device),
                    a=a[flat].to(p.device, p.dtype),
                    b=b[flat].to(p.device, p.dtype),
                    mode=mode[flat].to(p.device, torch.int32),
                )
            )
            if is_whole:
                whole.append(i)
        return whole

    @torch.no_grad()
    def materialize(self) -> None:
        """``theta_j := a_j r_m(j) + b_j`` for every embedded scalar, from the current references."""
        if not self.entries:
            return
        r = self.references()
        converted: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        for e in self.entries:
            p = self.params[e.tensor]
            key = (p.device, p.dtype)
            if key not in converted:
                converted[key] = r.to(p.device, p.dtype)
            values = torch.addcmul(e.b, e.a, converted[key].index_select(0, e.mode))
            if e.index is None:
                p.copy_(values.view(p.shape))
            else:
                put(p, e.index, values)

    @torch.no_grad()
    def route(self) -> None:
        """Each reference's gradient becomes ``(g_r + sum_i a_i g_i) / (1 + sum_i a_i^2)`` over
        its embedded members that have a gradient (before they are zeroed)."""
        if not self.entries or not self._reference_at:
            return
        device = self.params[0].device
        total = torch.zeros(len(self._reference_at), device=device)
        squares = torch.zeros_like(total)  # sum a^2 of the members that gave a gradient now
        for e in self.entries:
            grad = self.params[e.tensor].grad
            if grad is None or e.index is None:
                continue
            g = grad.reshape(-1).index_select(0, e.index)
            mode = e.mode.to(device)
            total.index_add_(0, mode, (e.a * g).float().to(device))
            squares.index_add_(0, mode, e.a.float().square().to(device))
        for m, (p, where) in enumerate(self._reference_at):
            if p.grad is not None:
                g_r = p.grad[where]
                p.grad[where] = ((g_r + total[m].to(g_r)) / (1 + squares[m])).to(g_r)

    @torch.no_grad()
    def zero_gradients(self) -> None:
        """A zero gradient for every embedded scalar of a tensor still in autograd."""
        for e in self.entries:
            grad = self.params[e.tensor].grad
            if grad is not None and e.index is not None:
                put(grad, e.index, 0.0)

    # --- the UpdateRule protocol ---------------------------------------------------------------

    def after_backward(self) -> None:
        if self.route_gradients:
            self.route()
        self.zero_gradients()

    def after_step(self) -> None:
        self.steps += 1
        self.materialize()

    def state_dict(self) -> dict:
        return {}  # STDET's state holds the tie; STDET.load_state_dict rebuilds the table

    def load_state_dict(self, state: dict) -> None:
        pass

    def nbytes(self) -> int:
        """Device memory of the table, in bytes."""
        tensors = [t for e in self.entries for t in (e.index, e.a, e.b, e.mode) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


class Retie:
    """The table's ``after_step`` alone, for a second place in a chain: after a rule that reset
    the weights (an SMA with feedback), the embedded scalars go back on their lines. Their
    gradients were zeroed already, so ``after_backward`` does nothing."""

    def __init__(self, table: EmbeddingTable) -> None:
        self.table = table

    def after_backward(self) -> None:
        pass

    def after_step(self) -> None:
        self.table.materialize()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
