"""Checkpoints: written so that a crash cannot leave them half-written
(:mod:`lic_dynamics.files`), read without running any code, refused when damaged, interchangeable
with CompressAI.

Every file :func:`save` writes carries the SHA-256 :func:`digest` of its whole content under
``checksum`` (CompressAI's tools ignore the key); :func:`load` recomputes it and refuses a file whose
content changed after it was written (a flipped bit, a bad copy), and a ``lic-train fit`` checkpoint
that has none. A file from elsewhere, without the key, loads unverified.

A checkpoint of ``lic-train fit`` is CompressAI's ``examples/train.py`` dict (``epoch``,
``state_dict``, ``loss``, ``optimizer``, ``aux_optimizer``, ``lr_scheduler``, as CompressAI means
them: :mod:`lic_train.trainer.state`) plus this trainer's keys. The files CompressAI's tools take
are read here too: a ``train.py`` checkpoint, a dict under ``network``, ``state_dict`` or
``model_state_dict`` (as ``compressai.utils.eval_model`` reads), or a bare state dict
(``update_model``'s output).

A file's declared sizes are checked before they are trusted:
:func:`lic_train.trainer.layout.read_layout` reads its structure, tensor shapes and dtypes without
reading or allocating any tensor data, and refuses a storage larger than the bytes the file holds
for it, a tensor that views more elements than its storage holds (a stride-0 or overlapping view),
and a pickle that names anything but tensors and plain data. A checkpoint of ours is then compared
with the architecture its configuration builds on the ``meta`` device
(:func:`lic_train.trainer.models.build_model` with ``shapes_only``); only then are its tensors
read, its checksum computed and a model built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lic_dynamics.files import check_folder, write_atomic
from lic_dynamics.validation import InvalidValue
from lic_train.trainer.config import FitConfig
from lic_train.trainer.layout import read_layout, refused

COMPRESSAI_KEYS = ("epoch", "state_dict", "loss", "optimizer", "aux_optimizer", "lr_scheduler")
WEIGHTS_KEYS = ("network", "state_dict", "model_state_dict")  # eval_model's, in its order
WEIGHTS = ("sma", "raw")
# A run folder's checkpoints (CompressAI's train.py names): the latest, and the best.
LATEST, BEST = "checkpoint.pth.tar", "checkpoint_best_loss.pth.tar"
CHECKSUM = "checksum"  # the key of the content's digest, the file's last entry


def digest(content: Any) -> str:
    """The SHA-256 (hex) of ``content``: tensors (dtype, shape and bytes), numbers, strings and
    containers, in their order (a dict's keys included), each tagged with its type, so that two
    contents digest alike only if they load alike.

    Examples:
        >>> digest({"w": torch.zeros(2)}) == digest({"w": torch.zeros(2)})
        True
        >>> digest({"w": torch.zeros(2)}) == digest({"w": torch.tensor([0.0, 1e-45])})
        False
    """
    hasher = hashlib.sha256()
    _feed(hasher, content)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)};".encode())
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, list | tuple):
        hasher.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed(hasher, item)
    else:  # None, bool, int, float (repr is exact), str, torch.Size, dtype
        text = repr(value)
        hasher.update(f"{type(value).__name__} {len(text)} {text};".encode())


def save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` atomically (:func:`lic_dynamics.files.write_atomic`), the :func:`digest`
    of ``checkpoint`` added as its last entry, ``checksum``."""
    content = {key: value for key, value in checkpoint.items() if key != CHECKSUM}
    signed = {**content, CHECKSUM: digest(content)}
    write_atomic(path, lambda file: torch.save(signed, file))


def load(
    path: str | Path,
    *,
    parameter: str = "checkpoint",
    check: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """A checkpoint file, on the CPU, read with ``torch.load(weights_only=True)``: tensors,
    numbers, strings and containers only, so that a file from elsewhere never runs code.

    Before any tensor is read, :func:`read_layout` checks the sizes the file declares, a
    checkpoint of ours is checked against the architecture its configuration builds (on the
    ``meta`` device), and ``check`` (if given) is called with the layout (tensors on the ``meta``
    device) to refuse a file by raising. A file :func:`save` wrote is returned without its
    ``checksum`` once that matches the content. Raises ``ValueError`` (one line naming the file)
    when it is missing, truncated, not a torch file, would need code to load, declares more than
    it holds, is not a dict, is damaged (the checksum differs, or a ``lic-train fit`` checkpoint
    has none) or holds weights its own configuration does not build.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidValue(parameter, f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise InvalidValue(parameter, f"{path}: no such file")
    layout = read_layout(path, parameter=parameter, checksum_key=CHECKSUM)
    if is_ours(layout):
        check_own_architecture(layout, path, parameter=parameter)
    if check is not None:
        check(layout)
    with refused(path, parameter):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return verified(checkpoint, path, parameter=parameter)


def verified(
    checkpoint: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> dict[str, Any]:
    """``checkpoint`` without its ``checksum``, if that is its content's :func:`digest`; a file
    without one only if it is not ours (ours always have one: a missing one was damaged)."""
    content = {key: value for key, value in checkpoint.items() if key != CHECKSUM}
    if CHECKSUM not in checkpoint:
        if is_ours(checkpoint):
            raise InvalidValue(
                parameter,
                f"{path}: damaged or written by an older lic-train (it has no checksum); refused",
            )
        return content
    try:
        intact = checkpoint[CHECKSUM] == digest(content)
    except Exception:  # a damaged entry that is not a tensor, number, string or container
        intact = False
    if not intact:
        raise InvalidValue(
            parameter,
            f"{path}: damaged, its content no longer matches the checksum it was "
            "written with; refused",
        )
    return content


def is_ours(saved: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint was written by ``lic-train fit`` (other trainers may save a
    ``config`` too: ours also has its step, random states and architecture)."""
    return isinstance(saved.get("config"), dict) and {"step", "random_states", "model"} <= set(
        saved
    )


def saved_config(
    saved: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> FitConfig:
    """The configuration of one of our checkpoints; ``ValueError`` when this version cannot read
    it (a field missing or unknown, a bad value)."""
    try:
        return FitConfig.from_dict(saved["config"])
    except (TypeError, KeyError, ValueError) as error:
        raise InvalidValue(
            parameter, f"{path}: its configuration does not load ({error})"
        ) from None


def weights_of(
    saved: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint, as ``eval_model`` finds them: under ``network``,
    ``state_dict`` or ``model_state_dict``, else the dict itself when every value is a tensor; a
    ``module.`` prefix (DataParallel) is removed. ``ValueError`` when there are none."""
    found = next((saved[key] for key in WEIGHTS_KEYS if isinstance(saved.get(key), dict)), saved)
    if not found or not all(isinstance(v, torch.Tensor) for v in found.values()):
        raise InvalidValue(
            parameter,
            f"{path}: holds no model weights (no {', '.join(WEIGHTS_KEYS)} key, and "
            "not a state dict of tensors)",
        )
    return {name.removeprefix("module."): t for name, t in found.items()}


def check_architecture(
    state_dict: dict[str, torch.Tensor],
    model: torch.nn.Module,
    path: str | Path,
    *,
    parameter: str = "checkpoint",
) -> None:
    """Raise ``ValueError`` naming the first entry that differs between the checkpoint and the
    model: a missing or unexpected key, or a parameter of another shape (another architecture, or
    other N/M). CDF buffers may differ in size: CompressAI's loader resizes them. Only names and
    shapes are read: either side may be on the ``meta`` device."""
    difference = _difference(state_dict, model)
    if difference:
        raise InvalidValue(parameter, f"{path}: another architecture ({difference})")


def _difference(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> str | None:
    """The first entry in which ``state_dict`` and ``model`` differ, in words; None if none."""
    found = {name.removeprefix("module."): t for name, t in state_dict.items()}
    keys = set(model.state_dict())
    missing, unexpected = sorted(keys - set(found)), sorted(set(found) - keys)
    if missing:
        return f"no entry {missing[0]!r}"
    if unexpected:
        return f"unexpected {unexpected[0]!r}"
    for name, p in model.named_parameters():
        held, expected = tuple(found[name].shape), tuple(p.shape)
        if held != expected:
            return f"{name!r} has shape {held}, the model expects {expected}"
    return None


def check_own_architecture(
    saved: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> None:
    """Refuse a checkpoint of ours whose weights (``state_dict``, ``raw_state_dict``) are not of
    the architecture its own configuration builds, comparing shapes with a model built on the
    ``meta`` device (no memory): a configuration edited to N = 100000 is refused before a model
    of that size is built. Only names and shapes are read (``saved`` may be a layout)."""
    from lic_train.trainer.models import build_model  # imports CompressAI

    config = saved_config(saved, path, parameter=parameter)
    described = config.model + (
        f", quality {config.quality}" if config.quality is not None else ""
    ) + (f", N={config.N}, M={config.M}" if config.N is not None else "")  # fmt: skip
    try:
        shaped = build_model(
            config.model, quality=config.quality, N=config.N, M=config.M, shapes_only=True
        )
    except Exception as error:  # a configuration the model's own code refuses
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidValue(
            parameter, f"{path}: its configuration ({described}) builds no model ({reason})"
        ) from None
    for key in ("state_dict", "raw_state_dict"):
        if key not in saved and key == "raw_state_dict":
            continue  # a run without an average has one set of weights
        weights = saved.get(key)
        if not isinstance(weights, dict) or not all(
            isinstance(t, torch.Tensor) for t in weights.values()
        ):
            raise InvalidValue(parameter, f"{path}: its {key} is not a state dict of tensors")
        difference = _difference(weights, shaped)
        if difference:
            raise InvalidValue(
                parameter,
                f"{path}: its {key} is another architecture than its own configuration "
                f"({described}) builds ({difference}); damaged or edited, refused",
            )


def run_checkpoint(target: str | Path) -> Path:
    """A checkpoint file, or a run folder's best checkpoint (else its latest); ``InvalidValue``
    about ``target`` for an empty path (which ``Path`` would read as the current folder)."""
    if not str(target).strip():
        raise InvalidValue("target", "'': an empty path (give a run folder or a checkpoint file)")
    target = Path(target)
    if target.is_dir():
        best = target / BEST
        return best if best.exists() else target / LATEST
    return target


def chosen_weights(saved: dict, weights: str | None, path: Path) -> tuple[str, dict]:
    """The weights of a ``lic-train fit`` checkpoint: ``sma`` (the average, the default when the
    run has one) or ``raw``; returns the choice and the state dict."""
    has_average = "raw_state_dict" in saved
    weights = weights or ("sma" if has_average else "raw")
    if weights not in WEIGHTS:
        raise InvalidValue("weights", f"must be sma or raw, got {weights!r}")
    if weights == "sma" and not has_average:
        raise InvalidValue(
            "weights", f"sma: {path} holds no SMA average (train with --sma or --ema)"
        )
    return weights, saved["raw_state_dict"] if weights == "raw" and has_average else saved[
        "state_dict"
    ]


def model_for(
    state_dict: dict[str, torch.Tensor],
    path: str | Path,
    *,
    model: str | None,
    parameter: str = "checkpoint",
    shapes_only: bool = False,
) -> nn.Module:
    """The model of a checkpoint not written by ``lic-train fit``: architecture ``model`` (a
    CompressAI name), its widths read off the weights by CompressAI's ``from_state_dict``. The
    weights are compared with the model built on the ``meta`` device first (``state_dict`` may
    be a layout's): a model of the size the file chose is built for real (unless
    ``shapes_only``) only once every parameter has the shape the file holds."""
    from lic_train.trainer.models import current_names, from_weights  # imports CompressAI

    if model is None:
        raise InvalidValue(
            "model",
            f"missing: {path} was not written by lic-train fit, so it does not say its "
            "architecture; give it (e.g. bmshj2018-hyperprior)",
        )
    try:
        shaped = from_weights(model, state_dict, shapes_only=True)
    except InvalidValue as error:
        if error.parameter == "name":  # the name given (--model), not the file
            raise
        raise InvalidValue(parameter, f"{path}: not {model} weights ({error})") from None
    except Exception as error:  # widths the model's own code refuses
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidValue(parameter, f"{path}: not {model} weights ({reason})") from None
    check_architecture(current_names(state_dict, shaped), shaped, path, parameter=parameter)
    return shaped if shapes_only else from_weights(model, state_dict)


def load_trained(
    target: str | Path, *, weights: str | None = None, model: str | None = None
) -> tuple[str, nn.Module]:
    """The model of a run folder (its best checkpoint, else its latest) or of a checkpoint file.

    A ``lic-train fit`` checkpoint gives the SMA average (``weights="sma"``, the default when the
    run has one) or the raw weights; any other CompressAI checkpoint gives its weights, in the
    architecture ``model``. Returns a name for reports (``ARCH-WEIGHTS``) and the model on the CPU.
    Errors about the file name the parameter ``target``; every check of the architecture is made
    before the file's tensors are read and before the model is built.
    """
    from lic_train.trainer.models import build_model  # imports CompressAI

    path, where = run_checkpoint(target), {"parameter": "target"}

    def fits(layout: dict[str, Any]) -> None:
        if is_ours(layout):
            config = saved_config(layout, path, **where)
            if model is not None and model != config.model:
                raise InvalidValue("model", f"{model}: {path} holds a {config.model} model")
            chosen_weights(layout, weights, path)
        elif weights == "sma":
            raise InvalidValue("weights", f"sma: {path} was not written by lic-train fit")
        else:
            model_for(weights_of(layout, path, **where), path, model=model, shapes_only=True,
                      **where)  # fmt: skip

    saved = load(path, check=fits, **where)
    if not is_ours(saved):
        state_dict = weights_of(saved, path, **where)
        built = model_for(state_dict, path, model=model, **where)
        built.load_state_dict(state_dict)  # CompressAI's loader renames older names itself
        return f"{model}-checkpoint", built
    config = saved_config(saved, path, **where)
    weights, state_dict = chosen_weights(saved, weights, path)
    built = build_model(config.model, quality=config.quality, N=config.N, M=config.M)
    check_architecture(state_dict, built, path, **where)
    built.load_state_dict(state_dict)
    return f"{config.model}-{weights}", built


def export(target: str | Path, out: str | Path, *, weights: str | None = None) -> tuple[str, dict]:
    """Write the ``weights`` (``sma`` or ``raw``; default: the recommended ones) of a run or
    ``lic-train fit`` checkpoint to ``out`` as CompressAI's ``examples/train.py`` writes its
    checkpoints (:data:`COMPRESSAI_KEYS` only): ``eval_model -p``, ``update_model`` and
    ``train.py --checkpoint`` take it. ``loss`` is the validation loss of those weights. The
    source's weights are checked against the architecture its configuration builds
    (:func:`load`), so the file written holds weights of that architecture; a source edited to
    say other widths is refused. Returns the choice and the dict written."""
    path, out = run_checkpoint(target), Path(out)
    if out.is_dir():
        raise InvalidValue(
            "out", f"{out}: a folder; give the file to write (e.g. {out / 'model.pth.tar'})"
        )
    if out.exists() and (out.resolve() == path.resolve() or out.name in (LATEST, BEST)):
        raise InvalidValue(
            "out", f"{out}: a run's own checkpoint (its resume needs it); write another file"
        )
    try:
        check_folder(out.parent, "out")  # before reading a large checkpoint
    except InvalidValue as error:
        raise InvalidValue("out", f"{out}: cannot be written there ({error.detail})") from None

    def choosable(layout: dict[str, Any]) -> None:  # before the tensors are read
        if not is_ours(layout):
            raise InvalidValue(
                "target", f"{path}: not written by lic-train fit (nothing to choose from)"
            )
        chosen_weights(layout, weights, path)

    saved = load(path, parameter="target", check=choosable)
    weights, state_dict = chosen_weights(saved, weights, path)
    final = saved.get("final", {}).get(weights, {})
    exported = {
        **{key: saved[key] for key in COMPRESSAI_KEYS},
        "state_dict": state_dict,
        "loss": final.get("loss", saved["loss"]),
    }
    save(exported, out)  # a full disk: an OSError naming the file (not the input's fault)
    return weights, exported
