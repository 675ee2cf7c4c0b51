"""lic_train.trainer.config: what needs no torch (the trainer's use of it: test_loop.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")

from lic_train.trainer import config


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 1), (3, 2), (5, 4), (64, 4)])
def test_default_workers_leave_one_core_and_stop_at_four(monkeypatch, cores, workers):
    monkeypatch.setattr(
        config.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False
    )
    assert config.default_workers() == workers


def test_a_configuration_with_a_bad_number_is_refused_without_torch():
    """The command line checks its flags through these classes before it imports torch."""
    script = (
        "import sys\n"
        "from lic_train.rules import SMAConfig, STDETConfig\n"
        "from lic_train.trainer.config import FitConfig\n"
        "from lic_train.experiments.methods import parse_method\n"
        "SMAConfig(k=5); STDETConfig(); parse_method('stdet+sma:k=10')\n"
        "try:\n"
        "    FitConfig(batch_size=0)\n"
        "except ValueError as error:\n"
        "    print(error)\n"
        "print(sorted(m for m in ('torch', 'compressai') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["batch_size must be an integer in [1, 2**53], got 0", "[]"]
