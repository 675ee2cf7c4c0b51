"""``torch.distributed`` for the rules and the trainer: identical decisions on every rank (rank 0
decides, the others receive), and what each rank needs to know of the others.

Without an initialised process group every function here is a no-op, so the same code runs in one
process and under ``torchrun``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``; 1 without it), known before
    the process group is initialised."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def gather(obj: object) -> list:
    """``obj`` of every rank, on every rank (a list of one without a process group)."""
    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_rank0(*tensors: torch.Tensor) -> None:
    """Overwrite each tensor, in place, with rank 0's copy.

    NCCL moves only CUDA tensors, so CPU bookkeeping travels through a CUDA staging copy there;
    gloo moves no int16 or bool, so those travel as int32.
    """
    if not active():
        return
    staging = dist.get_backend() == dist.Backend.NCCL
    for tensor in tensors:
        narrow = tensor.dtype in (torch.int16, torch.bool)
        if narrow or (staging and tensor.device.type != "cuda"):
            device = f"cuda:{torch.cuda.current_device()}" if staging else tensor.device
            moved = tensor.to(device, torch.int32 if narrow else tensor.dtype)
            dist.broadcast(moved, src=0)
            tensor.copy_(moved)
        else:
            dist.broadcast(tensor, src=0)
