"""STDET's health: the numbers that show an embedding going bad before the loss does.

Measured on the hyperprior of the time-to-quality benchmark (docs/results/stdet-stability.md): in
a run that blew up, the embedded scalars' drift rose from 0.16 to 0.45 of their norm and the
extrapolation from 5 to 14 widths while the validation loss still fell. All functions read the
frozen lines (:class:`~.lines.FrozenLines`), the modes (:class:`~lic_train.rules.modes.Modes`) and
the references' current raw values; none changes anything.
"""

from __future__ import annotations

import torch

from lic_train.rules.modes import STILL, Modes
from lic_train.rules.stdet.lines import FrozenLines

FAR = 1e6  # the extrapolation reported beyond a range of width 0 (finite, for JSON)


def extrapolation(lines: FrozenLines, modes: Modes, references: torch.Tensor) -> torch.Tensor:
    """How far each embedded scalar's reference now lies outside the range its line was fitted on
    (observed reference values up to the embedding event), in widths of that range:
    ``max(low - r, r - high, 0) / (high - low)``; float64 (N,), 0 for trainable scalars; ``FAR``
    (1e6) where the range had width 0 and the reference left it.

    ``references``: the references' raw values now, float64 (M,) (what the embedded scalars
    follow). The range is of what CMD observed: with ``trajectory="sma"`` the SMA average, which
    lags a drifting reference, so the extrapolation then reads a little high."""
    out = torch.zeros(lines.size, dtype=torch.float64, device=lines.device)
    if lines.count == 0:
        return out
    where, now, _, (low, high) = _at_embedding(lines, modes, references)
    out[where] = _widths_beyond(now, low, high)
    return out


def health(lines: FrozenLines, modes: Modes, references: torch.Tensor) -> dict[str, float]:
    """The health of an embedding, once ``modes`` are fitted. All floats:

    * ``embedded``: share of the tracked scalars embedded;
    * ``still_references``: references whose observed range is still (at most
      :data:`~lic_train.rules.modes.STILL` of their magnitude): lines fitted on them are
      meaningless;
    * ``members_max``: the largest share of the tracked scalars embedded on one reference;
    * ``leverage_max``: the largest ``||a||_2`` over one reference's embedded members, the L2
      distance they move per unit step of the reference;
    * ``extrapolation_max``: the largest :func:`extrapolation`;
    * ``embedded_drift``: ``||w_E - w_E(t_e)|| / ||w_E(t_e)||``, how far the embedded scalars
      moved since their embedding, relative to their values then (0: none embedded).

    ``references`` as for :func:`extrapolation`.
    """
    m = modes.reference.numel()
    members = torch.bincount(modes.mode[lines.embedded].long(), minlength=m)
    leverage = lines.leverage_squared(modes.mode, m)
    width = modes.high - modes.low
    scale = torch.maximum(modes.high.abs(), modes.low.abs())
    out = {
        "embedded": lines.count / lines.size,
        "still_references": float(int((width <= STILL * scale).sum())),
        "members_max": int(members.max()) / lines.size,
        "leverage_max": float(leverage.max().sqrt()),
        "extrapolation_max": 0.0,
        "embedded_drift": 0.0,
    }
    if lines.count:
        where, now, then, (low, high) = _at_embedding(lines, modes, references)
        out["extrapolation_max"] = float(_widths_beyond(now, low, high).max())
        value_then = torch.addcmul(lines.b[where], lines.a[where], then)
        moved = lines.a[where] * (now - then)
        out["embedded_drift"] = float(moved.norm() / value_then.norm().clamp(min=1e-30))
    return out


def _at_embedding(
    lines: FrozenLines, modes: Modes, references: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every embedded scalar (flat indices ``where``): its reference's raw value now, and at
    its event, and the range its line was fitted on then (low, high); float64."""
    where = torch.nonzero(lines.embedded).squeeze(1)
    mode = modes.mode[where].long()
    then, low, high = lines.records.at(where, mode)
    return where, references[mode], then, torch.stack([low, high])


def _widths_beyond(now: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``max(low - now, now - high, 0) / (high - low)`` elementwise, ``FAR`` where the range has
    width 0 and ``now`` left it (capped at ``FAR``)."""
    beyond = torch.maximum(low - now, now - high).clamp_(min=0.0)
    width = high - low
    ratio = torch.where(width > 0, beyond / torch.where(width > 0, width, 1.0), beyond * FAR)
    return ratio.clamp_(max=FAR)
