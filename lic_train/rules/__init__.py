"""The update rules: SMA, modes (CMD) and STDET for the parameters of any torch model, and the chain
that runs them at the two fixed points of a training step (:mod:`lic_train.rules.chain`).

This layer imports torch, scipy and :mod:`lic_dynamics` only: never the trainer, CompressAI or the
experiments (``tests/test_layers.py`` checks it). Modules:

* :mod:`.chain`: the :class:`UpdateRule` protocol and :class:`Chain`; :mod:`.build`: the chain a
  run asks for (:func:`chain_of`, :func:`build_rules`);
* :mod:`.sma`: :class:`SMA`; :mod:`.sma_config`: :class:`SMAConfig` (no torch);
* :mod:`.modes`: CMD's modes, references and streaming lines (:class:`Modes`);
* :mod:`.stdet`: :class:`STDET` and its pieces;
* :mod:`.parameters`: which parameters the rules act on; :mod:`.distributed`: rank 0 decides.

Each name below is imported on first use (:mod:`lic_train.lazy`): the configurations load without
torch.
"""

from lic_train.lazy import exports

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
__getattr__, __dir__ = exports(
    __name__,
    {
        "SMA": "lic_train.rules.sma",
        "STDET": "lic_train.rules.stdet",
        "Chain": "lic_train.rules.chain",
        "Modes": "lic_train.rules.modes",
        "SMAConfig": "lic_train.rules.sma_config",
        "STDETConfig": "lic_train.rules.stdet.config",
        "UpdateRule": "lic_train.rules.chain",
        "build_rules": "lic_train.rules.build",
        "chain_of": "lic_train.rules.build",
    },
)
