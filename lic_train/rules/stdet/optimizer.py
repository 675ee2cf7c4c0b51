"""What STDET does to a ``torch.optim`` optimizer: the optimizer keeps state only for the scalars
that still train.

A tensor none of whose scalars is embedded stays in the optimizer as it is. A tensor embedded
whole leaves the optimizer and autograd (``requires_grad=False``): its weight gradient is no longer
computed and its state is freed. A tensor embedded in part is represented in the optimizer by a
*proxy*: a 1-D parameter of its trainable scalars (in row-major order, picked by a boolean mask of
one byte per scalar of the tensor), whose state is packed to those scalars. The proxy holds no
values between steps: just before ``optimizer.step()`` (a step pre-hook) it gathers the tensor's
trainable values and their gradients, and just after (a post-hook) the new values go back into
the tensor and the proxy's copies are dropped, with the tensor's full gradient. So Adam keeps two
moments per trainable scalar only, where zeroing embedded entries in place kept them for all.

Works with any optimizer whose per-parameter state holds tensors shaped like the parameter
(Adam's ``exp_avg``/``exp_avg_sq``, SGD's ``momentum_buffer``, ...) and scalars (``step``),
element-wise: the packed run is the unpacked one, bit for bit (tested).

A checkpoint stores the optimizer in the model's layout (:func:`owner`, :func:`unpacked`), with
zero state for embedded scalars, so that CompressAI's tools read it like any other;
:func:`pack_loaded` packs it again after ``optimizer.load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_OWNER, _MASK = "stdet_owner", "stdet_mask"  # attributes of a proxy


def owner(p: torch.Tensor) -> torch.Tensor:
    """The model's parameter that ``p`` (a parameter of the optimizer) stands for: itself, or the
    tensor a proxy packs."""
    return getattr(p, _OWNER, p)


def mask_of(p: torch.Tensor) -> torch.Tensor | None:
    """A proxy's mask of trainable scalars (flat, bool, on the tensor's device); None otherwise."""
    return getattr(p, _MASK, None)


def unpacked(p: torch.Tensor, value: object) -> object:
    """A state entry of the optimizer's parameter ``p`` in its owner's shape: a proxy's packed
    tensor scattered into zeros (embedded scalars have no state); anything else unchanged."""
    mask = mask_of(p)
    if (
        mask is None
        or not torch.is_tensor(value)
        or value.dim() != 1
        or value.numel() != int(mask.sum())
    ):
        return value
    full = torch.zeros(mask.numel(), dtype=value.dtype, device=value.device)
    full.masked_scatter_(mask, value)
    return full.view(owner(p).shape)


def pack_loaded(optimizer: torch.optim.Optimizer) -> None:
    """After ``optimizer.load_state_dict`` of a state in the model's layout: pack the state of
    every proxy to its trainable scalars."""
    for group in optimizer.param_groups:
        for q in group["params"]:
            mask = mask_of(q)
            state = optimizer.state.get(q)
            if mask is None or not state:
                continue
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == owner(q).shape:
                    state[key] = value.reshape(-1)[mask.to(value.device)].clone()


class Packing:
    """Keeps ``optimizer``'s parameters and state in step with what STDET embeds.

    Args:
        optimizer: the optimizer of the tracked parameters.
        params: the tracked parameters; their first order in each param group is kept whenever a
            tensor leaves the optimizer or comes back (so that a resumed run's
            ``optimizer.state_dict()`` lines up with the saved one).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter]) -> None:
        self.optimizer = optimizer
        self.params = list(params)
        self.order = [list(group["params"]) for group in optimizer.param_groups]
        self.group_of = {id(p): g for g, first in enumerate(self.order) for p in first}
        missing = sum(id(p) not in self.group_of for p in self.params)
        if missing:
            raise ValueError(
                f"{missing} of the tracked parameters are in none of the optimizer's param "
                "groups: give STDET the optimizer that trains them"
            )
        self.proxies: dict[int, nn.Parameter] = {}  # id(tensor) -> its proxy
        self.position = {id(p): i for i, p in enumerate(self.params)}
        # Trainable scalars of each tracked tensor as the optimizer holds it (all, at first).
        self.held = [p.numel() for p in self.params]
        optimizer.register_step_pre_hook(lambda *_: self._gather())
        optimizer.register_step_post_hook(lambda *_: self._scatter())

    def hold(
        self, trainable: torch.Tensor, offsets: Sequence[int], released: torch.Tensor | None
    ) -> None:
        """Have the optimizer hold the ``trainable`` scalars (flat bool (N,) over the tracked
        parameters, tensor i at ``offsets[i]:offsets[i + 1]``): :meth:`set` for every tensor whose
        set changed, or that has ``released`` scalars (flat bool (N,) or None)."""
        for i, p in enumerate(self.params):
            lo, hi = offsets[i], offsets[i + 1]
            count = int(trainable[lo:hi].sum())
            given_back = None if released is None else released[lo:hi]
            if count != self.held[i] or (given_back is not None and bool(given_back.any())):
                self.set(p, trainable[lo:hi], given_back)

    @property
    def removed(self) -> set[int]:
        """The tracked tensors out of the optimizer and autograd (none of their scalars trains)."""
        return {i for i, held in enumerate(self.held) if held == 0}

    def set(self, p: nn.Parameter, trainable: torch.Tensor, released: torch.Tensor | None) -> None:
        """``p``'s scalars that train from now on (``trainable``: flat bool mask): all of them,
        ``p`` itself in the optimizer; none, ``p`` out of it and of autograd; some, a proxy. The
        state of scalars that trained before is kept; ``released`` ones (flat bool mask) get a
        typical one (:func:`refill`); any other new one starts at zero."""
        if id(p) not in self.group_of:
            raise ValueError("the parameter is in none of the optimizer's param groups")
        if id(p) in self.position:
            self.held[self.position[id(p)]] = int(trainable.sum())
        group = self.optimizer.param_groups[self.group_of[id(p)]]
        current = next((q for q in group["params"] if owner(q) is p), None)
        state = {}
        if current is not None:
            state = {
                k: unpacked(current, v) for k, v in self.optimizer.state.pop(current, {}).items()
            }
        trainable = trainable.to(p.device)
        if released is not None and bool(released.any()):
            refill(state, p, released.to(p.device), trained=trainable & ~released.to(p.device))
        self.proxies.pop(id(p), None)
        if bool(trainable.all()):
            entry = p
        elif not bool(trainable.any()):
            entry = None
        else:
            entry = nn.Parameter(torch.empty(0, dtype=p.dtype, device=p.device))
            setattr(entry, _OWNER, p)
            setattr(entry, _MASK, trainable.clone())
            self.proxies[id(p)] = entry
            state = {
                k: v.reshape(-1)[trainable].clone() if torch.is_tensor(v) and v.shape == p.shape
                else v
                for k, v in state.items()
            }  # fmt: skip
        if entry is not None and state:
            self.optimizer.state[entry] = state
        p.requires_grad_(entry is not None)
        # The optimizer's zero_grad no longer reaches p once a proxy stands for it: a gradient
        # left from this step would be added to the next one.
        p.grad = None
        members = {id(owner(q)): q for q in group["params"] if owner(q) is not p}
        if entry is not None:
            members[id(p)] = entry
        group["params"] = [
            members[id(q)] for q in self.order[self.group_of[id(p)]] if id(q) in members
        ]

    @torch.no_grad()
    def _gather(self) -> None:
        for q in self.proxies.values():
            p, mask = owner(q), mask_of(q)
            q.data = p.detach().reshape(-1)[mask]
            q.grad = None if p.grad is None else p.grad.reshape(-1)[mask]

    @torch.no_grad()
    def _scatter(self) -> None:
        for q in self.proxies.values():
            p, mask = owner(q), mask_of(q)
            if p.is_contiguous():
                p.detach().view(-1).masked_scatter_(mask, q.data)
            else:
                flat = p.detach().reshape(-1).masked_scatter_(mask, q.data)
                p.detach().copy_(flat.view(p.shape))
            q.data = torch.empty(0, dtype=p.dtype, device=p.device)
            q.grad = p.grad = None  # the full gradient is no longer needed

    def nbytes(self) -> int:
        """Memory of the proxies' masks, in bytes (their state is the optimizer's)."""
        return sum(mask_of(q).numel() for q in self.proxies.values())


def refill(state: dict, p: torch.Tensor, released: torch.Tensor, trained: torch.Tensor) -> None:
    """Give the ``released`` scalars of ``p`` (flat bool mask) a typical state, in place in
    ``state`` (entries in ``p``'s shape): second moments (keys with ``sq``: Adam's ``exp_avg_sq``,
    ``max_exp_avg_sq``) the median over the ``trained`` scalars (flat bool mask), everything else
    (momentum) zero. A zero second moment makes Adam's next steps on each released scalar 3-7
    times the usual (with betas (0.9, 0.999): ``(1 - 0.9^k) / sqrt(1 - 0.999^k)`` after k steps),
    in the direction their gradients share (seen while the release rule was developed, in runs
    not published: a mass release with zeroed state made a new spike)."""
    for key, value in state.items():
        if torch.is_tensor(value) and value.shape == p.shape:
            flat = value.reshape(-1)
            fill = 0.0
            if "sq" in key and bool(trained.any()):
                fill = float(flat[trained].median())
            flat[released] = fill
            if not value.is_contiguous():
                value.copy_(flat.view(value.shape))
