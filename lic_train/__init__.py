"""lic_train: SMA, modes (CMD) and STDET for torch and CompressAI models (the trainer builds on them).

Install with the ``train`` extra (``pip install -e ".[train]"``). The components act on any
``torch.optim`` optimizer; the training loop calls them at fixed points (see :mod:`lic_train.stdet`).
Their dynamics are the ones :mod:`nqm` analyses; ``tests/test_quadratic.py`` and
``tests/test_stdet.py`` check them against it on the torch NQM (:mod:`lic_train.quadratic`).
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'lic_train needs torch: install the train extra, pip install -e ".[train]"'
    ) from error

from lic_train.modes import Modes
from lic_train.quadratic import NoisyQuadratic
from lic_train.sma import SMA
from lic_train.stdet import STDET, STDETConfig

__all__ = ["SMA", "STDET", "Modes", "NoisyQuadratic", "STDETConfig"]
