"""Which parameters the update rules act on, in one place.

CompressAI models train two disjoint sets of parameters: the network, with the rate-distortion
loss, and the entropy bottleneck's ``quantiles`` (names ending in ``.quantiles``), with the auxiliary
loss (``compressai.optimizers.net_aux_optimizer`` splits them by that suffix). Buffers (the CDF
tables that ``update()`` resizes, GDN pedestals, ...) are never touched by SMA, modes or STDET.
"""

from __future__ import annotations

from torch import nn
from torch.nn.parallel import DistributedDataParallel

QUANTILES_SUFFIX = ".quantiles"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel``, so that names carry no
    ``module.`` prefix and states saved on rank 0 load into a single-process model."""
    if isinstance(model, DistributedDataParallel | nn.DataParallel):
        return model.module
    return model


def is_quantiles(name: str) -> bool:
    """True for the entropy bottleneck's ``quantiles`` (trained by the auxiliary loss)."""
    return name == "quantiles" or name.endswith(QUANTILES_SUFFIX)


def named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every parameter of the (unwrapped) model, in registration order."""
    return list(unwrap(model).named_parameters())


def network_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters trained by the rate-distortion loss: all but the ``quantiles``."""
    return [(name, p) for name, p in named_parameters(model) if not is_quantiles(name)]
