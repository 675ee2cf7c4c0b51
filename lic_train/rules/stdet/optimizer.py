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


def remove_parameter(optimizer: torch.optim.Optimizer, p: torch.nn.Parameter) -> None:
    """Take ``p`` out of every param group and free its state; ``p`` leaves autograd
    (``requires_grad=False``), so its weight gradient is no longer computed either."""
    for group in optimizer.param_groups:
        group["params"] = [q for q in group["params"] if q is not p]
    optimizer.state.pop(p, None)
    p.requires_grad_(False)
    p.grad = None
