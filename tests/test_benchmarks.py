"""The benchmark scripts run (their --quick smoke mode) and print their tables: they must not rot.
They measure ratios; the numbers themselves are not asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_nqm_throughput_runs():
    out = run("nqm_throughput.py")
    assert "Mcoord-steps/s" in out and "SMA" in out


def test_step_overhead_runs():
    pytest.importorskip("torch")
    out = run("step_overhead.py")
    for name in ("adam", "sma", "stdet", "stdet-whole", "stdet-tensor"):
        assert f"\n{name} " in out
    assert "optim state B" in out
