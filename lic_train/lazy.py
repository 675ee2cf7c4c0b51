"""A package's names imported on first use (PEP 562's module ``__getattr__``), so that importing
the package costs nothing: ``lic-train`` checks its flags, and refuses a bad one, before it imports
torch and CompressAI (seconds on a loaded machine).

Examples:
    >>> import lic_train.rules
    >>> lic_train.rules.SMAConfig(k=10).k
    10
    >>> lic_train.rules.SMAConfig.__module__  # a module that imports no torch
    'lic_train.rules.sma_config'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def exports(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module ``package``, whose name ``n`` is defined in the
    module ``homes[n]`` and imported from there on first use (then kept on ``package``)."""

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:  # a submodule or nothing: the import system takes it from here
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*homes, *vars(sys.modules[package])})

    return __getattr__, __dir__
