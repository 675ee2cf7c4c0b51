"""The chain of rules a run asks for: :func:`chain_of` puts SMA and STDET in their order of
operations, :func:`build_rules` builds them from their configurations."""

from __future__ import annotations

import torch
from torch import nn

from lic_train.rules.chain import Chain, UpdateRule
from lic_train.rules.sma import SMA, SMAConfig
from lic_train.rules.stdet import STDET, STDETConfig
from lic_train.rules.stdet.embedding import Retie


def chain_of(*, sma: SMA | None = None, stdet: STDET | None = None) -> Chain:
    """SMA and STDET in their order of operations. After the optimizer step:

    1. ``embedding``: STDET's embedded scalars back on their lines, before anything reads the
       weights (after backward: their gradients zeroed, before clipping);
    2. ``sma``: the SMA samples (embedded scalars included, on their lines);
    3. ``embedding_after_feedback``: with ``feedback=True`` the SMA reset the weights to the
       average, so the embedded scalars are put back on their lines once more (:class:`Retie`);
    4. ``stdet``: STDET observes its trajectory and embeds on schedule (after backward: it
       accumulates sensitivity).

    ``chain_of()`` is the empty chain: plain training.
    """
    rules: dict[str, UpdateRule] = {}
    if stdet is not None:
        rules["embedding"] = stdet.embedding
    if sma is not None:
        rules["sma"] = sma
        if stdet is not None and sma.feedback:
            rules["embedding_after_feedback"] = Retie(stdet.embedding)
    if stdet is not None:
        rules["stdet"] = stdet
    return Chain(**rules)


def build_rules(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    sma: SMAConfig | None = None,
    stdet: STDETConfig | None = None,
) -> Chain:
    """The rules a run configuration asks for, on ``model`` (a DDP wrapper is unwrapped) trained by
    ``optimizer``: :func:`chain_of` an :class:`SMA` and an :class:`STDET` (either may be None).
    STDET is given the SMA as its trajectory source (it observes the average when
    ``stdet.trajectory == "sma"``)."""
    averaging = SMA.from_config(model, sma) if sma is not None else None
    embedding = STDET(model, optimizer, stdet, trajectory=averaging) if stdet is not None else None
    return chain_of(sma=averaging, stdet=embedding)
