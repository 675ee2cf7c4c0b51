"""Peak memory on the CPU counts what training allocates, whatever the process freed before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = """
import torch
from lic_train.trainer.memory import peak_memory, reset_peak_memory
cpu = torch.device("cpu")
chunks = [torch.ones(16384) for _ in range(2000)]  # 2000 x 64 KiB from the C heap
keep = torch.ones(16)  # allocated above them: the heap's top cannot shrink on its own
del chunks  # freed, but still resident
baseline = reset_peak_memory(cpu)
again = [torch.ones(16384) for _ in range(2000)]  # "training" reuses the freed memory
print(peak_memory(cpu, baseline)[0])
"""


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK) or sys.platform != "linux",
    reason="needs Linux's resettable peak RSS",
)
def test_memory_freed_before_training_does_not_hide_the_training_peak():
    # A fresh process: the heap holds exactly what the script did.
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent)  # fmt: skip
    assert done.returncode == 0, done.stderr
    allocated = 2000 * 16384 * 4
    assert int(done.stdout.split()[-1]) > 0.8 * allocated
