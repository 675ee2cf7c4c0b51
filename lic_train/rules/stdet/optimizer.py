"""The two edits STDET makes to a ``torch.optim`` optimizer when it embeds scalars.

Both work on any optimizer whose per-parameter state holds tensors shaped like the parameter
(Adam's ``exp_avg``/``exp_avg_sq``, SGD's ``momentum_buffer``, ...).
"""

from __future__ import annotations

import torch

from lic_train.rules.stdet.embedding import put


def zero_state(optimizer: torch.optim.Optimizer, p: torch.Tensor, index: torch.Tensor) -> None:
    """Zero the optimizer state of the scalars ``index`` (flat, row-major) of ``p``: an embedded
    scalar starts no momentum of its own (an optimizer that folds weight decay into its state
    refills it, harmlessly: the scalar is recomputed after every step)."""
    for value in optimizer.state.get(p, {}).values():
        if torch.is_tensor(value) and value.shape == p.shape:
            put(value, index, 0)


def refill_state(
    optimizer: torch.optim.Optimizer, p: torch.Tensor, index: torch.Tensor, trained: torch.Tensor
) -> None:
    """Give the released scalars ``index`` of ``p`` a typical state: second moments (state keys
    with ``sq``: Adam's ``exp_avg_sq``, ``max_exp_avg_sq``) the median over the scalars that
    trained all along (``trained``, flat), everything else (momentum) zero. A zeroed second moment
    makes Adam's next steps on each released scalar 3-7 times the usual (with beta = (0.9,
    0.999): ``(1 - 0.9^k) / sqrt(1 - 0.999^k)`` for k steps), in the direction their gradients
    share (issue 15: a mass release with zeroed state made a new spike)."""
    for key, value in optimizer.state.get(p, {}).items():
        if torch.is_tensor(value) and value.shape == p.shape:
            fill = 0.0
            if "sq" in key and trained.numel():
                fill = float(value.reshape(-1).index_select(0, trained).median())
            put(value, index, fill)


def restore_parameter(
    optimizer: torch.optim.Optimizer, p: torch.nn.Parameter, order: list[list[torch.Tensor]]
) -> None:
    """Bring ``p`` back into autograd and into the param group it was first in, at its first
    place (``order``: each group's parameters as first given); its state starts afresh."""
    p.requires_grad_(True)
    for group, first in zip(optimizer.param_groups, order, strict=True):
        if any(q is p for q in first):
            present = {id(q) for q in group["params"]} | {id(p)}
            group["params"] = [q for q in first if id(q) in present]
            return
    raise ValueError("the parameter to restore was in none of the optimizer's param groups")


def remove_parameter(optimizer: torch.optim.Optimizer, p: torch.nn.Parameter) -> None:
    """Take ``p`` out of every param group and free its state; ``p`` leaves autograd
    (``requires_grad=False``), so its weight gradient is no longer computed either."""
    for group in optimizer.param_groups:
        group["params"] = [q for q in group["params"] if q is not p]
    optimizer.state.pop(p, None)
    p.requires_grad_(False)
    p.grad = None
