"""Checkpoints that a crash cannot leave half-written (:mod:`lic_dynamics.files`).

A checkpoint is CompressAI's ``examples/train.py`` dict (``epoch``, ``state_dict``, ``loss``,
``optimizer``, ``aux_optimizer``, ``lr_scheduler``) plus this trainer's keys, so that CompressAI's
``update_model``/``eval_model`` read it unchanged.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lic_dynamics.files import write_atomic
from lic_train.rules import SMA
from lic_train.trainer.config import FitConfig

COMPRESSAI_KEYS = ("epoch", "state_dict", "loss", "optimizer", "aux_optimizer", "lr_scheduler")


def save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` atomically (:func:`lic_dynamics.files.write_atomic`)."""
    write_atomic(path, lambda file: torch.save(checkpoint, file))


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save` (or CompressAI's train.py), on the CPU.

    Raises ``ValueError`` (one line naming the file) when it is missing, truncated, not a torch
    file or lacks CompressAI's keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"checkpoint {path}: truncated or not a torch checkpoint ({reason})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path}: not a training checkpoint (no 'state_dict' key)")
    return checkpoint


def check_architecture(
    state_dict: dict[str, torch.Tensor], model: torch.nn.Module, path: str | Path
) -> None:
    """Raise ``ValueError`` naming the first entry that differs between the checkpoint and the
    model: a missing or unexpected key, or a parameter of another shape (another architecture, or
    other N/M). CDF buffers may differ in size: CompressAI's loader resizes them."""
    found = {name.removeprefix("module."): t for name, t in state_dict.items()}
    keys = set(model.state_dict())
    missing, unexpected = sorted(keys - set(found)), sorted(set(found) - keys)
    if missing:
        raise ValueError(f"checkpoint {path}: another architecture (no entry {missing[0]!r})")
    if unexpected:
        raise ValueError(f"checkpoint {path}: another architecture (unexpected {unexpected[0]!r})")
    for name, p in model.named_parameters():
        if tuple(found[name].shape) != tuple(p.shape):
            raise ValueError(
                f"checkpoint {path}: another architecture ({name!r} has shape "
                f"{tuple(found[name].shape)}, the model expects {tuple(p.shape)})"
            )


def load_trained(target: str | Path, *, weights: str | None = None) -> tuple[str, nn.Module]:
    """The model of a run folder (its best checkpoint, else its latest) or of a checkpoint file,
    with the SMA average (``weights="sma"``, the default when the run has one) or the raw weights.
    Returns a name for reports (``ARCH-WEIGHTS``) and the model on the CPU."""
    from lic_train.trainer.models import build_model  # imports CompressAI

    target = Path(target)
    if target.is_dir():
        best = target / "checkpoint_best_loss.pth.tar"
        target = best if best.exists() else target / "checkpoint.pth.tar"
    saved = load(target)
    if "config" not in saved:
        raise ValueError(f"checkpoint {target}: not written by lic-train fit (no 'config' key)")
    config = FitConfig.from_dict(saved["config"])
    model = build_model(config.model, quality=config.quality, N=config.N, M=config.M)
    check_architecture(saved["state_dict"], model, target)
    model.load_state_dict(saved["state_dict"])
    has_average = bool(config.sma and saved.get("sma") and saved["sma"]["samples"])
    weights = weights or ("sma" if has_average else "raw")
    if weights == "sma":
        if not has_average:
            raise ValueError(f"--weights sma: {target} holds no SMA average (train with --sma)")
        sma = SMA.from_config(model, config.sma)
        sma.load_state_dict(saved["sma"])
        sma.copy_to(model)
    elif weights != "raw":
        raise ValueError(f"--weights must be sma or raw, got {weights!r}")
    return f"{config.model}-{weights}", model
