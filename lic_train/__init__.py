"""lic_train: SMA, modes (CMD) and STDET for torch and CompressAI models, and a trainer built on them.

Install with the ``train`` extra (``pip install -e ".[train]"``). Three layers, imports going one way
(``tests/test_layers.py`` checks it):

* :mod:`lic_train.rules`: the update rules, for any torch model and ``torch.optim`` optimizer;
  the training loop calls them at two fixed points through a :class:`~lic_train.rules.Chain`;
* :mod:`lic_train.trainer`: CompressAI models, data, the training step and loop, validation, real
  bit streams and checkpoints (imports the rules, never the experiments);
* :mod:`lic_train.experiments`: ``lic-train compare``: presets, method specs, the run pool, the
  statistics and the report (imports both);

and :mod:`lic_train.cli` on top. :mod:`lic_train.testing` holds the torch NQM on which the tests check
the rules against :mod:`nqm`.
"""

import importlib.util
import warnings

# CompressAI calls torch.jit.script, deprecated since torch 2.14, when it is imported: a warning
# about CompressAI's internals that no user of ours can act on. Filtered here, before any module
# imports CompressAI, so that it holds in every process (the CLI, compare's workers).
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

if importlib.util.find_spec("torch") is None:  # pragma: no cover - depends on the environment
    raise ImportError('lic_train needs torch: install the train extra, pip install -e ".[train]"')

from lic_train.lazy import exports  # noqa: E402  (after the filter above)

__all__ = ["SMA", "STDET", "Chain", "Modes", "SMAConfig", "STDETConfig", "build_rules", "chain_of"]
# Imported on first use (lic_train.lazy): ``import lic_train`` imports no torch.
__getattr__, __dir__ = exports(__name__, dict.fromkeys(__all__, "lic_train.rules"))
