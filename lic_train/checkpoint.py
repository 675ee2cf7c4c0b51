"""Checkpoints and result files that a crash cannot leave half-written.

Every file is written to a temporary name in the same folder, flushed and ``fsync``-ed, then renamed
over the target (``os.replace`` is atomic on POSIX), and the folder is ``fsync``-ed so the rename
survives a power cut. A reader therefore sees either the previous file or the new one.

A checkpoint is CompressAI's ``examples/train.py`` dict (``epoch``, ``state_dict``, ``loss``,
``optimizer``, ``aux_optimizer``, ``lr_scheduler``) plus this trainer's keys, so that CompressAI's
``update_model``/``eval_model`` read it unchanged.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

COMPRESSAI_KEYS = ("epoch", "state_dict", "loss", "optimizer", "aux_optimizer", "lr_scheduler")


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` atomically."""
    write_atomic(path, lambda file: torch.save(checkpoint, file))


def write_json(data: object, path: str | Path) -> None:
    """Strict JSON (no NaN or infinity), indented, atomically."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda file: file.write(text.encode()))


def write_jsonl(records: list[dict], path: str | Path) -> None:
    """One strict JSON object per line, atomically (used to cut a log back on resume)."""
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records)
    write_atomic(path, lambda file: file.write(text.encode()))


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file, up to a last line cut by a crash ([] if no file)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


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
