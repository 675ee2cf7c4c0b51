"""The update rules: SMA, modes (CMD) and STDET for the parameters of any torch model, and the chain
that runs them at the two fixed points of a training step (:mod:`lic_train.rules.chain`).

This layer imports torch, scipy and :mod:`lic_dynamics` only: never the trainer, CompressAI or the
experiments (``tests/test_layers.py`` checks it). Modules:

* :mod:`.chain`: the :class:`UpdateRule` protocol and :class:`Chain`;
* :mod:`.sma`: :class:`SMA` and :class:`SMAConfig`;
* :mod:`.modes`: CMD's modes, references and streaming lines (:class:`Modes`);
* :mod:`.stdet`: :class:`STDET` and its pieces;
* :mod:`.parameters`: which parameters the rules act on; :mod:`.distributed`: rank 0 decides.
"""

from __future__ import annotations

import torch
from torch import nn

from lic_train.rules.chain import Chain, UpdateRule
from lic_train.rules.modes import Modes
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


__all__ = [
    "SMA",
    "STDET",
    "Chain",
    "Modes",
    "SMAConfig",
    "STDETConfig",
    "UpdateRule",
    "build_rules",
    "chain_of",
]
