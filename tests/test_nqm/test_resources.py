"""The cost of a command from its flags: the models against measured peaks, the refusal rule, the
wording of sizes and times, and the progress lines of a long run (on a clock the test drives)."""

from __future__ import annotations

import io
import os
import tracemalloc
import types

import pytest

from lic_dynamics.cli import UsageError
from nqm import resources, scaling
from nqm.cli import build_parser, simulate_result


@pytest.mark.parametrize(
    ("dim", "chains", "steps", "points"),
    [
        (20_000, 2, 5, 2),  # the exact moments' arrays dominate
        (2_000, 1_000, 3, 2),  # a full chunk of chains (2^20 numbers)
        (2_000, 2, 400, 400),  # many reported steps, each a row of d means and squares
        (3, 5_000, 50, 1_000_000),  # a million points over 50 steps: every step, no grid
    ],
)
def test_simulate_memory_estimate_bounds_the_measured_peak(dim, chains, steps, points):
    """The estimate is at least the peak of numpy's allocations (tracemalloc sees them) and not
    wildly more, so that a refusal is for a run that would really not fit."""
    argv = ["simulate", "--rule", "sma", "--mu", "0.5", "--lr", "0.5", "--dim", str(dim),
            "--chains", str(chains), "--steps", str(steps), "--points", str(points)]  # fmt: skip
    args = build_parser().parse_args(argv)
    tracemalloc.start()
    try:
        simulate_result(args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = resources.simulate_cost(dim, steps, chains, points).bytes
    assert peak <= estimate <= 4 * peak + 2**20, (peak, estimate)


def test_scaling_memory_estimate_bounds_the_measured_peak():
    """One rule of ten grid points, one worker: its 170 ladders are what the estimate counts."""
    tracemalloc.start()
    try:
        scaling.study(["ema"], [4], 0.01, 0.5, 300, None, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = scaling.cost(["ema"], 1, 300, None, 1).bytes - scaling.WORKER_BYTES
    assert peak <= estimate <= 3 * peak, (peak, estimate)


def test_simulate_time_estimate_grows_with_every_flag_that_adds_work():
    base = resources.simulate_cost(1000, 1000, 100, 20).seconds
    assert 1 < base < 10  # the default run: a few seconds, no line
    for bigger in ((10_000, 1000, 100, 20), (1000, 10_000, 100, 20), (1000, 1000, 1000, 20)):
        assert resources.simulate_cost(*bigger).seconds > 5 * base


def test_refuse_memory_first_then_time():
    named = "--dim 10"
    resources.refuse(
        "nqm x", resources.Cost(1e9, resources.YEAR), named, "--dim", memory=2**30
    )  # fits
    with pytest.raises(UsageError, match=r"^nqm x: error: --dim 10 needs about 1.9 GiB of memory; "
                       r"this machine has 1.0 GiB available \(lower --dim\)$"):  # fmt: skip
        resources.refuse(
            "nqm x", resources.Cost(2e9, 2 * resources.YEAR), named, "--dim", memory=2**30
        )
    with pytest.raises(UsageError, match=r"would take about 2.0 years here, and work over a year"):
        resources.refuse(
            "nqm x", resources.Cost(1e9, 2 * resources.YEAR), named, "--dim", memory=2**30
        )


def test_refuse_reads_the_machine_when_not_told(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 2**30)
    with pytest.raises(UsageError, match=r"1\.0 GiB available"):
        resources.refuse("nqm x", resources.Cost(2e9, 1.0), "--dim 10", "--dim")
    monkeypatch.setattr(
        resources, "available_memory", lambda: None
    )  # unknown: only time is checked
    resources.refuse("nqm x", resources.Cost(1e30, 1.0), "--dim 10", "--dim")


def test_available_memory_is_at_most_the_physical_memory():
    found = resources.available_memory()
    if not hasattr(os, "sysconf"):
        pytest.skip("no sysconf here")
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert found is not None and 0 < found <= physical


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (119, "119 s"), (120, "2.0 minutes"), (599.9, "10 minutes"),
     (600, "10 minutes"), (7200, "2.0 hours"), (3 * 86400, "3.0 days"),
     (400 * 86400, "1.1 years"), (1e20, "3.2e+12 years")],
)  # fmt: skip
def test_duration(seconds, text):
    assert resources.duration(seconds) == text


def test_name_flags_puts_the_most_unusual_first():
    flags = [("--dim", 1000, 1000), ("--steps", 10, 1000), ("--points", 10**9, 20)]
    assert resources.name_flags(flags) == "--points 1000000000 with --dim 1000 and --steps 10"
    assert resources.name_flags([("--dim", 5, 1000)]) == "--dim 5"


class Clock:
    """``time.monotonic`` that the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(resources, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_progress_says_the_estimate_then_a_line_a_minute(clock):
    stream = io.StringIO()
    progress = resources.Progress("nqm simulate", 600.0, "fewer --chains", stream=stream)
    progress.begin()
    for _ in range(200):  # the run goes exactly as estimated, a second per second
        clock.now += 1.0
        progress.advance(1.0)
    assert stream.getvalue().splitlines() == [
        "nqm simulate: this will take about 10 minutes (Ctrl-C stops; fewer --chains)",
        "nqm simulate: 10% done, about 9.0 minutes left (Ctrl-C stops; fewer --chains)",
        "nqm simulate: 20% done, about 8.0 minutes left (Ctrl-C stops; fewer --chains)",
        "nqm simulate: 30% done, about 7.0 minutes left (Ctrl-C stops; fewer --chains)",
    ]


def test_progress_speaks_when_a_short_estimate_proves_wrong(clock):
    """Estimated at 5 s (no line), measured at twenty times that: a line once a second has told,
    then a line a minute; none once the work is done."""
    stream = io.StringIO()
    progress = resources.Progress("nqm simulate", 5.0, "fewer --chains", stream=stream)
    progress.begin()
    assert stream.getvalue() == ""
    clock.now += 0.5
    progress.advance(0.025)  # half a second: too early to trust the rate
    assert stream.getvalue() == ""
    clock.now += 1.5
    progress.advance(0.075)  # 2 s for 0.1 of 5: 98 s left
    assert stream.getvalue() == (
        "nqm simulate: 2% done, about 98 s left (Ctrl-C stops; fewer --chains)\n"
    )
    clock.now += 30.0
    progress.advance(1.0)
    assert stream.getvalue().count("\n") == 1  # not a minute since
    clock.now += 3600.0
    progress.advance(10.0)  # past the estimate: done, silent
    assert stream.getvalue().count("\n") == 1


def test_a_short_run_is_silent(clock):
    stream = io.StringIO()
    progress = resources.Progress("nqm simulate", 3.0, "fewer --chains", stream=stream)
    progress.begin()
    for _ in range(30):
        clock.now += 0.1
        progress.advance(0.1)
    assert stream.getvalue() == ""
