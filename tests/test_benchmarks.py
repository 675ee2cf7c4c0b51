"""The benchmark scripts run (their --quick smoke mode) and print their tables: they must not rot.
They measure ratios; the numbers themselves are not asserted here."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("script", ["convergence.py", "ablations.py", "stdet_stability.py"])
def test_training_benchmarks_run_and_publish_their_files(script, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("skimage")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--device", "cpu",
         "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| adam |" in done.stdout and "| stdet |" in done.stdout
    for name in ("report.md", "results.json", "loss_vs_step.png", "trainable_vs_step.png"):
        assert (tmp_path / "results" / name).stat().st_size > 0
    report = (tmp_path / "results" / "report.md").read_text()
    assert "| method | largest rise (%) |" in report  # spikes and STDET's health
    (tmp_path / "results" / "report.md").unlink()
    again = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--report-only",
         "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "results" / "report.md").read_text() == report


def test_time_to_quality_runs_publishes_and_rebuilds_its_report(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("skimage")
    flags = ["--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    script = str(ROOT / "benchmarks" / "time_to_quality.py")
    done = subprocess.run([sys.executable, script, "--quick", *flags], capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "## Acceleration factors" in done.stdout and "| ema |" in done.stdout
    for name in ("report.md", "results.json", "quality_vs_budget.png", "acceleration.png",
                 "rd_curves.png"):  # fmt: skip
        assert (tmp_path / "results" / name).stat().st_size > 0
    report = (tmp_path / "results" / "report.md").read_text()
    assert "## Spikes and STDET's health" in report
    (tmp_path / "results" / "report.md").unlink()
    again = subprocess.run([sys.executable, script, "--report-only", *flags], capture_output=True,
                           text=True, timeout=300, check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "results" / "report.md").read_text() == report
    sizes = subprocess.run([sys.executable, script, "--scales", "--quick", *flags],
                           capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert sizes.returncode == 0, sizes.stderr
    assert "| 32, 48 | 128 | 8 |" in sizes.stdout
    table = json.loads((tmp_path / "work" / "scales.json").read_text())
    assert table["rows"][0]["seconds_per_step"] > 0


def test_a_quick_run_leaves_the_published_results_alone():
    pytest.importorskip("torch")
    pytest.importorskip("skimage")
    published = ROOT / "benchmarks" / "results" / "ablation" / "results.json"
    before = published.read_bytes()
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ablations.py"), "--quick", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert published.read_bytes() == before
    quick = ROOT / "runs" / "benchmarks" / "ablation-quick"
    assert (quick / "published" / "report.md").stat().st_size > 0


def test_trainer_throughput_runs_and_writes_its_files(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("skimage")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "trainer_throughput.py"), "--quick",
         "--work", str(tmp_path / "work"), "--out", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("compressai", "lic-train", "lic-train-small", "lic-train / compressai"):
        assert f"\n{name} " in done.stdout
    assert "peak RSS MB" in done.stdout
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert [run["returncode"] for run in results["runs"]] == [0] * 5
    assert (tmp_path / "results" / "report.md").stat().st_size > 0


def test_checkpoint_bitflips_runs():
    pytest.importorskip("torch")
    result = json.loads(run("checkpoint_bitflips.py"))
    assert result["flips"] == 50 and result["different"] == 0
