"""The ``Examples:`` in the docstrings of ``nqm``, ``lic_dynamics`` and ``lic_train`` run and print
what they show.

Every module of the packages is collected (``__main__`` modules are left out: importing one runs the
command line); ``lic_train`` only where torch is installed. The library modules below must have
examples, so that a module whose examples were deleted or never collected fails instead of passing
with nothing checked. This file imports no torch itself.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import lic_dynamics
import nqm

try:
    import lic_train
except ImportError:  # no torch: the nqm suite runs alone
    lic_train = None

PACKAGES = (nqm, lic_dynamics) + ((lic_train,) if lic_train is not None else ())
SKIPPED = {"nqm.__main__", "lic_train.__main__"}  # running one is running the CLI
WITH_EXAMPLES = {
    "nqm.problem",
    "nqm.rules",
    "nqm.closed_form",
    "nqm.moments",
    "nqm.montecarlo",
    "nqm.embedding",
    "nqm.verify",
    "nqm.scaling",
    "nqm.report",
    "nqm.resources",
    "nqm.cli",
    "lic_dynamics.validation",
    "lic_dynamics.cli",
    "lic_dynamics.files",
    *(
        {"lic_train.rules.chain", "lic_train.rules.stdet.selection",
         "lic_train.rules.stdet.embedding", "lic_train.rules.stdet.lines",
         "lic_train.rules.stdet.records", "lic_train.trainer.schedules",
         "lic_train.experiments.time_to_quality", "lic_train.experiments.acceleration",
         "lic_train.experiments.ttq_report"}
        if lic_train is not None else ()
    ),
}  # fmt: skip
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if info.name not in SKIPPED:
                names.append(info.name)
    return sorted(names)


MODULES = _module_names()


def test_every_module_with_examples_is_collected():
    assert set(MODULES) >= WITH_EXAMPLES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module: ModuleType = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=OPTIONS)
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed (output above)"
    if name in WITH_EXAMPLES:
        assert attempted > 0, f"{name} has no docstring examples"


NQM_LIBRARY = sorted(name for name in WITH_EXAMPLES if name.startswith("nqm."))


@pytest.mark.parametrize("name", NQM_LIBRARY)
def test_every_public_function_of_the_nqm_library_has_examples(name: str):
    module = importlib.import_module(name)
    missing = [
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and callable(value)
        and getattr(value, "__module__", None) == name
        and "Examples:" not in (value.__doc__ or "")
    ]
    assert missing == []
